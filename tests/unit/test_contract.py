"""The contract between runtimes (core/contract): written once, used everywhere.

The scan below reads every shipped module (its string constants, docstrings left out)
and refuses a copy of a contract string outside core/contract: a reserved ``States.*``
error name, a runner error name, a control event, a timer purpose, or a work id built or
taken apart by hand. Intrinsic functions (``States.Format(...)``) are ASL syntax, not
error names, and stay where the compiler writes them.
"""

from __future__ import annotations

import ast
import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from rustyflower.core.contract import (
    CONTROL_EVENTS,
    RESULT_KIND,
    RUNNER_ERRORS,
    TIMER_PURPOSES,
    Purpose,
    ReservedError,
    WorkId,
    error_matches,
    format_timer_id,
    format_work_id,
    idempotency_key,
    parse_work_id,
    work_number,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("core", "adapters", "functions_azure", "lambda_aws")
CONTRACT = ROOT / "core" / "contract"
ASL_NAMES = ROOT / "adapters" / "aws" / "names.py"
"""The compiler's own naming scheme (``Charge~resume``) also uses ``~``; it is not a work id."""

RESERVED_NAME = re.compile(r"\bStates\.[A-Za-z]+\b(?!\s*\()")
EXACT_VALUES = {
    *RUNNER_ERRORS,
    *CONTROL_EVENTS,
    RESULT_KIND,
    # "retry" and "wait" are ordinary words (and field names) too; the timeouts are not
    *(purpose for purpose in TIMER_PURPOSES if purpose.endswith("_timeout")),
}
SPLITTERS = frozenset({"partition", "rpartition", "split", "rsplit"})


def shipped_modules() -> Iterator[Path]:
    for folder in SHIPPED:
        yield from sorted((ROOT / folder).rglob("*.py"))


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body:
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    # an attribute docstring: a bare string right after an assignment
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            if not isinstance(block, list):
                continue
            for before, after in itertools.pairwise(block):
                if (
                    isinstance(before, ast.Assign | ast.AnnAssign)
                    and isinstance(after, ast.Expr)
                    and isinstance(after.value, ast.Constant)
                ):
                    found.add(id(after.value))
    return found


def stray_literals(path: Path) -> list[str]:
    """Where ``path`` spells a contract string itself (``file:line: text``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skip = _docstrings(tree)
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            text = node.value
            if RESERVED_NAME.search(text) or text in EXACT_VALUES:
                found.append(f"{where}:{node.lineno}: {text!r}")
        elif path != ASL_NAMES and _takes_apart_work_id(node):
            found.append(f"{where}:{node.lineno}: splits a work id on '~'")
        elif path != ASL_NAMES and _builds_work_id(node):
            found.append(f"{where}:{node.lineno}: builds a work id or idempotency key")
    return found


def _takes_apart_work_id(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in SPLITTERS
        and bool(node.args)
        and isinstance(node.args[0], ast.Constant)
        and node.args[0].value == "~"
    )


def _builds_work_id(node: ast.AST) -> bool:
    """``f"{position}~{number}"`` or ``f"{instance}:{position}:{attempt}:{tag}"``."""
    if not isinstance(node, ast.JoinedStr):
        return False
    texts = [part.value for part in node.values if isinstance(part, ast.Constant)]
    values = [part for part in node.values if isinstance(part, ast.FormattedValue)]
    return "~" in texts or (texts == [":", ":", ":"] and len(values) == 4)


def test_no_shipped_module_spells_a_contract_string_itself() -> None:
    strays = [
        stray
        for path in shipped_modules()
        if not path.is_relative_to(CONTRACT)
        for stray in stray_literals(path)
    ]
    assert strays == []


def test_the_scan_finds_what_it_looks_for(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""Docstrings may name States.Timeout."""\n'
        'A = "States.TaskFailed"\n'
        "B = \"States.Format('{}', $.x)\"\n"
        'C = "rustyflower.hold"\n'
        "D = 'id'.rpartition('~')\n"
        'E = f"{A}~{B}"\n'
        'F = f"{A}:{B}:{C}:{D}"\n'
        'G = "flow_timeout"\n',
        encoding="utf-8",
    )
    found = stray_literals(sample)
    lines = sorted(int(stray.split(":")[1]) for stray in found)
    assert lines == [2, 4, 5, 6, 7, 8]


# --- the contract itself -----------------------------------------------------------------


def test_work_ids_parse_back_into_their_parts() -> None:
    assert format_work_id("Fork[0]/Ship", 12) == "Fork[0]/Ship~12"
    assert parse_work_id("Fork[0]/Ship~12") == WorkId("Fork[0]/Ship", "12")
    timer = format_timer_id("Charge", 8, Purpose.TASK_TIMEOUT)
    assert timer == "Charge~8:task_timeout"
    assert parse_work_id(timer) == WorkId("Charge", "8", "task_timeout")
    assert format_timer_id("", 1, Purpose.FLOW_TIMEOUT) == "flow~1:flow_timeout"
    assert work_number("Ask~e2s14") is None  # a tag another runtime made up
    assert work_number("Ask~7") == 7


@pytest.mark.parametrize("text", ["", "Charge", "~3", "Charge~", "Charge~3:", "Charge~²"])
def test_what_is_not_a_work_id_has_no_number(text: str) -> None:
    assert work_number(text) is None


def test_an_idempotency_key_names_instance_position_attempt_and_call() -> None:
    assert idempotency_key("order-1", "Charge", 2, 7) == "order-1:Charge:2:7"


def test_a_call_at_a_state_entered_once_is_keyed_by_position_and_attempt() -> None:
    assert idempotency_key("order-1", "Ship[0]/Charge", 2, None) == "order-1:Ship[0]/Charge:2"


@pytest.mark.parametrize(
    ("errors", "error", "matched"),
    [
        (["CardDeclined"], "CardDeclined", True),
        (["CardDeclined"], "Other", False),
        ([ReservedError.ALL], "CardDeclined", True),
        ([ReservedError.ALL], ReservedError.TIMEOUT, True),
        ([ReservedError.ALL], ReservedError.RUNTIME, False),
        ([ReservedError.ALL], ReservedError.DATA_LIMIT_EXCEEDED, False),
        ([ReservedError.TASK_FAILED], "CardDeclined", True),
        ([ReservedError.TASK_FAILED], ReservedError.TASK_FAILED, True),
        ([ReservedError.TASK_FAILED], ReservedError.NO_CHOICE_MATCHED, True),
        ([ReservedError.TASK_FAILED], ReservedError.TIMEOUT, False),
        ([ReservedError.TASK_FAILED], ReservedError.RUNTIME, False),
        ([ReservedError.TASK_FAILED, ReservedError.TIMEOUT], ReservedError.TIMEOUT, True),
        ([ReservedError.RUNTIME], ReservedError.RUNTIME, True),
    ],
)
def test_errors_match_as_step_functions_matches_error_equals(
    errors: list[str], error: str, matched: bool
) -> None:
    assert error_matches(errors, error) is matched
