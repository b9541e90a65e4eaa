"""Idempotency keys that every runtime gives the same call, and the loops that need more.

A call at a state entered once per scope is keyed ``instance:position:attempt`` so that the
site and a cloud that continues from an older snapshot make the same call under the same
key; a state that can be entered again (a loop, a retried Parallel or Map around it) adds
the engine's call number.
"""

from __future__ import annotations

from typing import Any

from rustyflower.core.engine import (
    ActivityCompleted,
    ActivityFailed,
    RetryFailedRequested,
    RunActivity,
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
