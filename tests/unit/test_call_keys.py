"""Idempotency keys that every runtime gives the same call, and the loops that need more.

A call at a state entered once per scope is keyed ``instance:position:attempt`` so that the
site and a cloud that continues from an older snapshot make the same call under the same
key; a state that can be entered again (a loop, a retried Parallel or Map around it) adds
the engine's call number. A child flow's instance id follows the same rule:
``parent/position@attempt`` for a sub_flow state entered once per scope, the call's work id
(``parent/position~n``) for one that can be entered again.
"""

from __future__ import annotations

from typing import Any

from rustyflower.core.contract import child_instance_id, parse_work_id
from rustyflower.core.engine import (
    ActivityCompleted,
    ActivityFailed,
    ChildFinished,
    RetryFailedRequested,
    RunActivity,
    StartChildFlow,
    StartTimer,
    TimerFired,
    advance,
    start,
)
from rustyflower.core.engine.structure import structure_of
from rustyflower.core.model import parse_definition
from rustyflower.core.model.reentry import reentered_states
from tests.unit.engine_kit import NOW, flow, of, one


def task(**fields: Any) -> dict[str, Any]:
    return {"type": "task", "activity": "work", **fields}


def test_a_chain_has_no_state_entered_twice() -> None:
    definition = flow({"A": task(next="B"), "B": task(next="C"), "C": task(end=True)})
    assert reentered_states(definition) == frozenset()


def test_a_choice_going_back_puts_the_states_between_on_a_loop() -> None:
    definition = flow(
        {
            "A": task(next="B"),
            "B": task(next="Again"),
            "Again": {
                "type": "choice",
                "choices": [{"when": {"variable": "$.more", "boolean_equals": True}, "next": "B"}],
                "default": "Done",
            },
            "Done": task(end=True),
        }
    )
    assert reentered_states(definition) == {"B", "Again"}


def test_a_catch_leading_back_and_a_self_loop_are_loops() -> None:
    definition = flow(
        {
            "A": task(next="B", catch=[{"next": "Fix"}]),
            "Fix": task(next="A"),
            "B": task(next="End", catch=[{"next": "B"}]),
            "End": {"type": "succeed"},
        }
    )
    assert reentered_states(definition) == {"A", "Fix", "B"}


def test_a_flow_on_error_target_that_leads_back_makes_every_state_it_reaches_a_loop() -> None:
    definition = parse_definition(
        {
            "name": "f",
            "start_at": "A",
            "on_error": [{"next": "Recover"}],
            "states": {
                "A": task(next="B"),
                "B": task(end=True),
                "Recover": task(next="B"),
            },
        }
    )
    # B fails -> Recover -> B again; A is never entered again
    assert reentered_states(definition) == {"B", "Recover"}


def test_ten_thousand_states_in_a_chain_are_analysed_without_recursion() -> None:
    states = {f"S{n}": task(next=f"S{n + 1}") for n in range(10_000)}
    states["S10000"] = task(end=True)
    assert reentered_states(flow(states, start_at="S0")) == frozenset()


def test_a_state_entered_once_is_keyed_by_position_and_attempt() -> None:
    definition = flow({"A": task(next="B"), "B": task(end=True)})
    first = start(definition, {}, "order-1", NOW)
    call = one(first.commands, RunActivity)
    second = advance(first.snapshot, ActivityCompleted(call.call_id, {}), NOW)
    assert call.idempotency_key == "order-1:A:1"
    assert one(second.commands, RunActivity).idempotency_key == "order-1:B:1"


def test_calls_of_map_items_are_keyed_by_their_item_position() -> None:
    definition = flow(
        {
            "A": {
                "type": "map",
                "items_path": "$.items",
                "iterator": {"start_at": "Each", "states": {"Each": task(end=True)}},
                "end": True,
            }
        }
    )
    keys = [
        c.idempotency_key
        for c in of(start(definition, {"items": [1, 2]}, "m", NOW).commands, RunActivity)
    ]
    assert keys == ["m:A[0]/Each:1", "m:A[1]/Each:1"]


def test_each_visit_of_a_looping_state_gets_its_own_key() -> None:
    definition = flow(
        {
            "A": task(next="Again", result_path="$.last"),
            "Again": {
                "type": "choice",
                "choices": [
                    {"when": {"variable": "$.last.more", "boolean_equals": True}, "next": "A"}
                ],
                "default": "Done",
            },
            "Done": {"type": "succeed"},
        }
    )
    first = start(definition, {}, "loop-1", NOW)
    call = one(first.commands, RunActivity)
    again = advance(first.snapshot, ActivityCompleted(call.call_id, {"more": True}), NOW)
    second = one(again.commands, RunActivity)
    assert call.idempotency_key.startswith("loop-1:A:1:")
    assert second.idempotency_key.startswith("loop-1:A:1:")
    assert second.idempotency_key != call.idempotency_key


def test_states_in_a_retried_parallel_are_keyed_by_call_number() -> None:
    definition = flow(
        {
            "P": {
                "type": "parallel",
                "branches": [{"start_at": "B", "states": {"B": task(end=True)}}],
                "retry": [{"errors": ["States.ALL"], "max_attempts": 2}],
                "end": True,
            }
        },
        start_at="P",
    )
    call = one(start(definition, {}, "par-1", NOW).commands, RunActivity)
    assert call.idempotency_key.startswith("par-1:P[0]/B:1:")
    assert structure_of(definition).repeatable("P[0]/B")
    assert not structure_of(definition).repeatable("P")


def test_an_operator_retry_makes_the_failed_call_again_under_a_new_key() -> None:
    """A provider that records failures under a key (some payment APIs) would answer the
    retried call with the recorded failure: the retry's calls carry their number."""
    definition = flow({"A": task(next="B"), "B": task(end=True)})
    first = start(definition, {}, "order-9", NOW)
    call = one(first.commands, RunActivity)
    failed = advance(first.snapshot, ActivityFailed(call.call_id, "Declined"), NOW)
    assert failed.snapshot.status == "failed" and failed.snapshot.state.retried == 0
    retried = advance(failed.snapshot, RetryFailedRequested(), NOW)
    again = one(retried.commands, RunActivity)
    assert retried.snapshot.state.retried == 1
    assert call.idempotency_key == "order-9:A:1"
    assert again.idempotency_key.startswith("order-9:A:1:")
    assert again.idempotency_key != call.idempotency_key
    after = advance(retried.snapshot, ActivityCompleted(again.call_id, {}), NOW)
    assert one(after.commands, RunActivity).idempotency_key.startswith("order-9:B:1:")


# --- child instance ids ---------------------------------------------------------------------


def sub_flow(**fields: Any) -> dict[str, Any]:
    return {"type": "sub_flow", "flow": "child", **fields}


def child_ids(definition: Any, data: Any, instance_id: str) -> list[str]:
    started = start(definition, data, instance_id, NOW)
    return [c.child_instance_id for c in of(started.commands, StartChildFlow)]


def test_a_child_of_a_state_entered_once_is_named_by_position_and_attempt() -> None:
    """The site and a cloud continuing from a snapshot taken before the child started
    name the child alike, so it is not started twice under two ids."""
    definition = flow({"A": task(next="Call"), "Call": sub_flow(end=True)})
    first = start(definition, {}, "order-1", NOW)
    call = one(first.commands, RunActivity)
    second = advance(first.snapshot, ActivityCompleted(call.call_id, {}), NOW)
    assert one(second.commands, StartChildFlow).child_instance_id == "order-1/Call@1"


def test_children_in_parallel_branches_and_map_items_are_named_by_their_position() -> None:
    definition = flow(
        {
            "Fork": {
                "type": "parallel",
                "branches": [
                    {"start_at": "Left", "states": {"Left": sub_flow(end=True)}},
                    {
                        "start_at": "Each",
                        "states": {
                            "Each": {
                                "type": "map",
                                "items_path": "$.items",
                                "iterator": {
                                    "start_at": "Call",
                                    "states": {"Call": sub_flow(end=True)},
                                },
                                "end": True,
                            }
                        },
                    },
                ],
                "end": True,
            }
        },
        start_at="Fork",
    )
    assert child_ids(definition, {"items": [1, 2]}, "p") == [
        "p/Fork[0]/Left@1",
        "p/Fork[1]/Each[0]/Call@1",
        "p/Fork[1]/Each[1]/Call@1",
    ]


def test_each_attempt_of_a_retried_sub_flow_starts_a_new_child() -> None:
    """A failed child is not reused by the retry: attempt 2 is a child of its own."""
    definition = flow(
        {"Call": sub_flow(retry=[{"errors": ["Flaky"], "max_attempts": 2}], end=True)},
        start_at="Call",
    )
    first = start(definition, {}, "r", NOW)
    failed = one(first.commands, StartChildFlow)
    delayed = advance(first.snapshot, ChildFinished(failed.call_id, "failed", error="Flaky"), NOW)
    timer = one(delayed.commands, StartTimer)
    again = one(advance(delayed.snapshot, TimerFired(timer.timer_id), NOW).commands, StartChildFlow)
    assert (failed.child_instance_id, again.child_instance_id) == ("r/Call@1", "r/Call@2")


def test_a_child_of_a_looping_state_is_named_by_its_call() -> None:
    definition = flow(
        {
            "Call": sub_flow(next="Again", result_path="$.last"),
            "Again": {
                "type": "choice",
                "choices": [
                    {"when": {"variable": "$.last.more", "boolean_equals": True}, "next": "Call"}
                ],
                "default": "Done",
            },
            "Done": {"type": "succeed"},
        },
        start_at="Call",
    )
    first = start(definition, {}, "loop", NOW)
    command = one(first.commands, StartChildFlow)
    finished = ChildFinished(command.call_id, "succeeded", output={"more": True})
    second = one(advance(first.snapshot, finished, NOW).commands, StartChildFlow)
    assert command.child_instance_id == f"loop/{command.call_id}"
    assert second.child_instance_id == f"loop/{second.call_id}"
    assert parse_work_id(second.child_instance_id.partition("/")[2]).position == "Call"
    assert second.child_instance_id != command.child_instance_id


def test_a_child_in_a_retried_parallel_is_named_by_its_call() -> None:
    definition = flow(
        {
            "P": {
                "type": "parallel",
                "branches": [{"start_at": "B", "states": {"B": sub_flow(end=True)}}],
                "retry": [{"errors": ["States.ALL"], "max_attempts": 2}],
                "end": True,
            }
        },
        start_at="P",
    )
    command = one(start(definition, {}, "par", NOW).commands, StartChildFlow)
    assert command.child_instance_id == f"par/{command.call_id}"
    assert command.call_id.startswith("P[0]/B~")


def test_an_operator_retry_starts_the_failed_child_under_a_new_id() -> None:
    """The failed child exists under the positional id: the retry's child is numbered."""
    definition = flow({"Call": sub_flow(end=True)}, start_at="Call")
    first = start(definition, {}, "op", NOW)
    command = one(first.commands, StartChildFlow)
    failed = advance(first.snapshot, ChildFinished(command.call_id, "failed", error="No"), NOW)
    retried = advance(failed.snapshot, RetryFailedRequested(), NOW)
    again = one(retried.commands, StartChildFlow)
    assert command.child_instance_id == "op/Call@1"
    assert again.child_instance_id == f"op/{again.call_id}"


def test_the_two_forms_of_a_child_id_never_meet() -> None:
    assert child_instance_id("p", "Fork[0]/Call", 2, None) == "p/Fork[0]/Call@2"
    assert child_instance_id("p", "Fork[0]/Call", 2, "Fork[0]/Call~2") == "p/Fork[0]/Call~2"
    # a state may be named "Call@1": the attempt is the digits after the last "@"
    assert child_instance_id("p", "Call@1", 2, None) == "p/Call@1@2"
