"""Small modules with one reason to change: a shipped module past LIMIT lines says why at
its top (a ``Why one module:`` paragraph in its docstring), and none passes CEILING."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("core", "adapters", "functions_azure", "lambda_aws")
LIMIT = 600
CEILING = 1000
MARKER = "Why one module:"
MIN_REASON = 60  # characters: a reason, not a placeholder


def _modules() -> list[Path]:
    return sorted(path for folder in SHIPPED for path in (ROOT / folder).rglob("*.py"))


def _reason(path: Path) -> str:
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    _, marker, rest = docstring.partition(MARKER)
    return rest.split("\n\n")[0].strip() if marker else ""


def test_the_scan_sees_the_shipped_code() -> None:
    assert len(_modules()) > 100


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_long_module_says_why_it_is_one(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= CEILING, f"{lines} lines: split it"
    if lines > LIMIT:
        reason = _reason(path)
        assert len(reason) >= MIN_REASON, (
            f"{lines} lines (over {LIMIT}): split it, or give the reason it is one module "
            f"in a '{MARKER}' paragraph of its docstring"
        )


def test_the_marker_is_read_from_the_docstring(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(f'"""Title.\n\n{MARKER} ' + "because " * 10 + '\n\nMore."""\n')
    assert _reason(module).startswith("because")
    module.write_text('"""Title."""\n# Why one module: a comment is not the docstring\n')
    assert _reason(module) == ""
