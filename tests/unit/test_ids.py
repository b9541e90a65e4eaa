"""The instance-id rule (core.ids): one rule for the engine, snapshots and every front door.

The excluded characters are those the Step Functions API Reference lists as unprintable
for an execution name (StartExecution, ``name``: control characters U+0000-001F,
U+007F-009F, U+FFFE-FFFF, surrogates U+D800-DFFF).
"""

from __future__ import annotations

import json

import pytest

from rustyflower.core.engine import start
from rustyflower.core.errors import DefinitionError, MalformedSnapshotError
from rustyflower.core.ids import (
    MAX_INSTANCE_ID,
    InvalidInstanceIdError,
    check_instance_id,
    instance_id_problem,
)
from rustyflower.core.snapshot.document import decode_snapshot, encode_snapshot
from tests.unit.engine_kit import NOW, flow

GREETING = {"A": {"type": "pass", "end": True}}


@pytest.mark.parametrize(
    "value",
    [
        "order-42",
        "x" * MAX_INSTANCE_ID,
        "ünïcode ✓ with spaces",
        "parent/Call~1",  # a child flow's id
        "a:b#c?d[e]",  # mapped by the AWS and Azure adapters, allowed here
    ],
)
def test_ids_that_are_allowed(value: str) -> None:
    assert instance_id_problem(value) is None
    assert check_instance_id(value) == value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "not empty"),
        ("a\x1fb", "U+001F at position 2"),  # the Redis runner's separator: timers were lost
        ("a\nb", "U+000A"),
        ("\x7f", "U+007F"),
        ("a\x85", "U+0085"),
        ("a\ufffe", "U+FFFE"),
        ("a\udcff", "U+DCFF"),  # a byte that was not UTF-8, passed through by the shell
    ],
)
def test_ids_that_are_refused(value: str, expected: str) -> None:
    problem = instance_id_problem(value)
    assert problem is not None and expected in problem
    with pytest.raises(InvalidInstanceIdError, match="instance id"):
        check_instance_id(value)


def test_a_huge_id_is_refused_in_one_short_line() -> None:
    problem = instance_id_problem("x" * 100_000)
    assert problem is not None
    assert "100000 characters; at most 256" in problem
    assert len(problem) < 200 and "\n" not in problem


def test_the_engine_refuses_an_id_with_a_control_character() -> None:
    """Before: accepted, and the Redis runner then dropped the instance's timers."""
    with pytest.raises(InvalidInstanceIdError, match="U\\+001F"):
        start(flow(GREETING), {}, "bad\x1fid", NOW)
    with pytest.raises(ValueError, match="at most 256"):  # still a ValueError for old callers
        start(flow(GREETING), {}, "x" * 257, NOW)


def test_a_snapshot_with_a_bad_id_is_refused() -> None:
    data = encode_snapshot(start(flow(GREETING), {}, "good", NOW).snapshot)
    document = json.loads(data)
    document["instance_id"] = "bad\x1fid"
    with pytest.raises(MalformedSnapshotError, match="instance_id: instance id"):
        decode_snapshot(json.dumps(document).encode())


def test_state_names_exclude_the_same_characters() -> None:
    """A child flow's id holds state names: they must pass the id rule too."""
    for bad in ("A\x85", "A\x7f", "A\ufffe"):
        with pytest.raises(DefinitionError, match="control characters"):
            flow({bad: {"type": "pass", "end": True}}, start_at=bad)
