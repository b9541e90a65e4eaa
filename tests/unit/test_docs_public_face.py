"""README, docs and examples reach RustyFlower through its front door only.

Users copy what the documentation shows, so it shows the public face (``rustyflower``,
``rustyflower.client``, ``rustyflower.worker``, ``rustyflower.testing``) and the
``rustyflower`` command, never an internal module: ``rustyflower.core``,
``rustyflower.adapters``, nor the repository's folder names ``core`` and ``adapters``.
Python blocks of the Markdown files are parsed (they must be valid Python); every other
line is searched for import statements and ``python -m`` of an internal module.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INTERNAL = ("rustyflower.core", "rustyflower.adapters", "core", "adapters")
_NAMES = "|".join(re.escape(name) for name in INTERNAL)
INTERNAL_LINE = re.compile(
    rf"(?:\bfrom\s+(?:{_NAMES})(?:\.\w+)*\s+import\b"
    rf"|^\s*import\s+(?:{_NAMES})(?:\.\w+)*\s*(?:$|,|\bas\b)"
    rf"|\bpython3?\s+-m\s+(?:{_NAMES})(?:\.|\s|$))",
    re.MULTILINE,
)
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def markdown_files() -> list[Path]:
    found = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    found += [REPO / "bench" / "README.md", *sorted((REPO / "infra").rglob("README.md"))]
    return [path for path in found if path.is_file()]


def example_files() -> list[Path]:
    return sorted((REPO / "examples").rglob("*.py"))


def is_internal(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in INTERNAL)


def internal_imports(source: str, filename: str) -> Iterator[tuple[int, str]]:
    tree = ast.parse(source, filename=filename)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if is_internal(alias.name):
                    yield node.lineno, alias.name
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and node.module
            and is_internal(node.module)
        ):
            yield node.lineno, node.module


def markdown_violations(path: Path, root: Path = REPO) -> list[str]:
    text = path.read_text(encoding="utf-8")
    name = str(path.relative_to(root))
    found = []
    for block in FENCE.finditer(text):
        if block.group(1) in ("python", "py"):
            first_line = text.count("\n", 0, block.start(2)) + 1
            for line, module in internal_imports(block.group(2), name):
                found.append(f"{name}:{first_line + line - 1} imports {module}")
    for match in INTERNAL_LINE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        hit = f"{name}:{line}: {match.group(0).strip()}"
        if not any(entry.startswith(f"{name}:{line} ") for entry in found):
            found.append(hit)
    return found


@pytest.mark.parametrize("path", markdown_files(), ids=lambda path: str(path.relative_to(REPO)))
def test_the_docs_import_only_the_public_face(path: Path) -> None:
    assert markdown_violations(path) == []


@pytest.mark.parametrize("path", example_files(), ids=lambda path: str(path.relative_to(REPO)))
def test_the_examples_import_only_the_public_face(path: Path) -> None:
    name = str(path.relative_to(REPO))
    found = list(internal_imports(path.read_text(encoding="utf-8"), name))
    assert found == []


def test_the_check_finds_every_form(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "Prose: data flows from core to adapters, and back.\n"
        "```python\n"
        "import json\n"
        "from rustyflower.core.builder import Flow\n"
        "```\n"
        "```sh\n"
        "python -m adapters.cli.main --help\n"
        "```\n"
        "Inline: `from adapters.azure import DurableClient`.\n"
        "```py\n"
        "import core.engine as engine\n"
        "from rustyflower.client import Client\n"
        "```\n"
    )
    found = markdown_violations(page, tmp_path)
    assert found == [
        "page.md:4 imports rustyflower.core.builder",
        "page.md:11 imports core.engine",
        "page.md:7: python -m adapters.",
        "page.md:9: from adapters.azure import",
    ]
