"""Engine: parallel branches and map items, their joins, failures and concurrency."""

from __future__ import annotations

from typing import Any

import pytest

from rustyflower.core.engine import (
    ActivityCompleted,
    ActivityFailed,
    AwaitEvent,
    CancelWork,
    Command,
    EventReceived,
    FinishFlow,
    RunActivity,
    StartTimer,
    TimerFired,
    advance,
    outstanding,
    start,
)
from rustyflower.core.errors import StaleEventError
from rustyflower.core.model import FlowDefinition
from rustyflower.core.snapshot.document import decode_snapshot, encode_snapshot
from tests.unit.engine_kit import NOW, at, finish, flow, rejected


def of(commands: tuple[Command, ...] | list[Command], kind: type) -> list[Any]:
    return [command for command in commands if isinstance(command, kind)]


def task(activity: str, **fields: Any) -> dict[str, Any]:
    return {"type": "task", "activity": activity, "end": True, **fields}


def branch(name: str, state: dict[str, Any]) -> dict[str, Any]:
    return {"start_at": name, "states": {name: state}}


# --- parallel ------------------------------------------------------------------------------


def parallel_flow(**fields: Any) -> FlowDefinition:
    states: dict[str, Any] = {
        "Par": {
            "type": "parallel",
            "next": "Done",
            "branches": [
                branch("T0", task("a")),
                branch("T1", task("b", timeout_seconds=9)),
                branch("W", {"type": "wait_for_event", "event": "e", "end": True}),
            ],
            **fields,
        },
        "Done": {"type": "succeed"},
    }
    if "catch" in fields:
        states["Caught"] = {"type": "succeed"}
    return flow(states, start_at="Par")


def test_parallel_starts_every_branch_on_the_same_input() -> None:
    transition = start(parallel_flow(), {"in": 1}, "i", NOW)
    calls = of(transition.commands, RunActivity)
    assert [(c.position, c.activity, c.input) for c in calls] == [
        ("Par[0]/T0", "a", {"in": 1}),
        ("Par[1]/T1", "b", {"in": 1}),
    ]
    assert of(transition.commands, AwaitEvent)[0].position == "Par[2]/W"
    assert transition.snapshot.positions == ["Par[0]/T0", "Par[1]/T1", "Par[2]/W"]
    assert sorted(map(repr, outstanding(transition.snapshot))) == sorted(
        map(repr, transition.commands)
    )


def test_parallel_results_keep_branch_order() -> None:
    transition = start(parallel_flow(result_path="$.out"), {"in": 1}, "i", NOW)
    calls = of(transition.commands, RunActivity)
    transition = advance(transition.snapshot, EventReceived("e", "third"), at(1))
    transition = advance(transition.snapshot, ActivityCompleted(calls[1].call_id, "second"), at(2))
    assert not transition.snapshot.finished
    transition = advance(transition.snapshot, ActivityCompleted(calls[0].call_id, "first"), at(3))
    assert finish(transition).output == {"in": 1, "out": ["first", "second", "third"]}
    assert "JoinCompleted" in [e.kind for e in transition.snapshot.state.history]


def test_first_branch_failure_cancels_the_others_and_fails_the_join() -> None:
    transition = start(parallel_flow(), {"in": 1}, "i", NOW)
    calls = of(transition.commands, RunActivity)
    timer = of(transition.commands, StartTimer)[0]
    wait = of(transition.commands, AwaitEvent)[0]
    failed = advance(transition.snapshot, ActivityFailed(calls[0].call_id, "Boom", "bad"), at(1))
    assert failed.commands == (
        CancelWork(work_id=calls[1].call_id, work_kind="run_activity"),
        CancelWork(work_id=timer.timer_id, work_kind="start_timer"),
        CancelWork(work_id=wait.wait_id, work_kind="await_event"),
        FinishFlow(status="failed", error="Boom", cause="bad"),
    )
    assert failed.snapshot.state.frames == {}
    assert failed.snapshot.state.tokens == {}


def test_branch_failure_caught_at_the_parallel() -> None:
    transition = start(
        parallel_flow(catch=[{"next": "Caught", "result_path": "$.err"}]), {"in": 1}, "i", NOW
    )
    calls = of(transition.commands, RunActivity)
    failed = advance(transition.snapshot, ActivityFailed(calls[1].call_id, "Boom", "bad"), at(1))
    assert len(of(failed.commands, CancelWork)) == 3
    assert finish(failed) == FinishFlow(
        status="succeeded", output={"in": 1, "err": {"Error": "Boom", "Cause": "bad"}}
    )


def test_results_of_cancelled_branches_are_stale() -> None:
    definition = flow(
        {
            "Par": {
                "type": "parallel",
                "next": "Hold",
                "catch": [{"next": "Hold"}],
                "branches": [branch("T0", task("a")), branch("T1", task("b"))],
            },
            "Hold": {"type": "wait_for_event", "event": "go", "end": True},
        },
        start_at="Par",
    )
    transition = start(definition, {}, "i", NOW)
    calls = of(transition.commands, RunActivity)
    failed = advance(transition.snapshot, ActivityFailed(calls[0].call_id, "Boom"), at(1))
    assert failed.snapshot.positions == ["Hold"]
    rejected(failed.snapshot, ActivityCompleted(calls[1].call_id, 1), StaleEventError)


def test_branch_failure_retries_the_whole_parallel() -> None:
    transition = start(
        parallel_flow(retry=[{"errors": ["Boom"], "max_attempts": 1, "interval_seconds": 2}]),
        {"in": 1},
        "i",
        NOW,
    )
    calls = of(transition.commands, RunActivity)
    failed = advance(transition.snapshot, ActivityFailed(calls[0].call_id, "Boom"), at(1))
    timer = of(failed.commands, StartTimer)[-1]
    assert timer.purpose == "retry"
    assert timer.fire_at == "2024-01-01T00:00:03Z"
    again = advance(failed.snapshot, TimerFired(timer.timer_id), at(3))
    assert [c.position for c in of(again.commands, RunActivity)] == ["Par[0]/T0", "Par[1]/T1"]
    assert len(of(again.commands, AwaitEvent)) == 1


def test_parallel_result_selector_and_fail_state_in_a_branch() -> None:
    definition = flow(
        {
            "Par": {
                "type": "parallel",
                "end": True,
                "result_selector": {"first.$": "$[0]"},
                "branches": [
                    branch("P", {"type": "pass", "result": "p", "end": True}),
                    branch("S", {"type": "succeed"}),
                ],
            }
        },
        start_at="Par",
    )
    assert finish(start(definition, 0, "i", NOW)).output == {"first": "p"}
    failing = flow(
        {
            "Par": {
                "type": "parallel",
                "end": True,
                "branches": [
                    branch("T", task("a")),
                    branch("F", {"type": "fail", "error": "Nope", "cause": "c"}),
                ],
            }
        },
        start_at="Par",
    )
    transition = start(failing, 0, "i", NOW)
    assert transition.commands[-1] == FinishFlow(status="failed", error="Nope", cause="c")
    run_call = of(transition.commands, RunActivity)[0]
    assert CancelWork(work_id=run_call.call_id, work_kind="run_activity") in transition.commands


def test_nested_parallel_failure_cancels_inner_work() -> None:
    inner = {
        "type": "parallel",
        "end": True,
        "branches": [branch("X", task("x")), branch("Y", task("y"))],
    }
    definition = flow(
        {
            "Outer": {
                "type": "parallel",
                "end": True,
                "branches": [branch("Inner", inner), branch("Z", task("z"))],
            }
        },
        start_at="Outer",
    )
    transition = start(definition, {}, "i", NOW)
    calls = {c.position: c for c in of(transition.commands, RunActivity)}
    assert set(calls) == {"Outer[0]/Inner[0]/X", "Outer[0]/Inner[1]/Y", "Outer[1]/Z"}
    failed = advance(transition.snapshot, ActivityFailed(calls["Outer[1]/Z"].call_id, "E"), NOW)
    cancelled = {c.work_id for c in of(failed.commands, CancelWork)}
    assert cancelled == {calls["Outer[0]/Inner[0]/X"].call_id, calls["Outer[0]/Inner[1]/Y"].call_id}
    assert finish(failed).error == "E"
    assert failed.snapshot.state.frames == {}


def test_mid_parallel_snapshot_continues_after_a_round_trip() -> None:
    transition = start(parallel_flow(), {"in": 1}, "i", NOW)
    calls = of(transition.commands, RunActivity)
    transition = advance(transition.snapshot, ActivityCompleted(calls[0].call_id, "a"), at(1))
    moved = decode_snapshot(encode_snapshot(transition.snapshot))
    assert moved == transition.snapshot
    here = advance(transition.snapshot, ActivityCompleted(calls[1].call_id, "b"), at(2))
    there = advance(moved, ActivityCompleted(calls[1].call_id, "b"), at(2))
    assert here.commands == there.commands
    assert encode_snapshot(here.snapshot) == encode_snapshot(there.snapshot)


# --- map -----------------------------------------------------------------------------------


def map_flow(**fields: Any) -> FlowDefinition:
    states: dict[str, Any] = {
        "M": {
            "type": "map",
            "items_path": "$.xs",
            "iterator": branch("T", task("work")),
            "next": "Done",
            **fields,
        },
        "Done": {"type": "succeed"},
    }
    if "catch" in fields:
        states["Caught"] = {"type": "wait_for_event", "event": "go", "end": True}
    return flow(states, start_at="M")


def test_map_respects_max_concurrency_and_keeps_item_order() -> None:
    transition = start(map_flow(max_concurrency=2), {"xs": [1, 2, 3, 4, 5]}, "i", NOW)
    in_flight = {c.call_id: c for c in of(transition.commands, RunActivity)}
    assert [c.input for c in in_flight.values()] == [1, 2]
    seen = list(in_flight.values())
    step = 0
    while not transition.snapshot.finished:
        # complete the newest call first, so items finish out of order
        call = list(in_flight.values())[-1]
        del in_flight[call.call_id]
        step += 1
        transition = advance(
            transition.snapshot, ActivityCompleted(call.call_id, call.input * 10), at(step)
        )
        for started in of(transition.commands, RunActivity):
            in_flight[started.call_id] = started
            seen.append(started)
        assert len(in_flight) <= 2
        assert {c.call_id for c in of(outstanding(transition.snapshot), RunActivity)} == set(
            in_flight
        )
    assert sorted(c.input for c in seen) == [1, 2, 3, 4, 5]
    assert [c.position for c in seen] == [f"M[{n}]/T" for n in (0, 1, 2, 3, 4)]
    assert finish(transition).output == [10, 20, 30, 40, 50]


def test_map_without_max_concurrency_starts_every_item() -> None:
    transition = start(map_flow(), {"xs": list(range(7))}, "i", NOW)
    assert [c.input for c in of(transition.commands, RunActivity)] == list(range(7))


def test_map_of_an_empty_list_completes_at_once() -> None:
    transition = start(map_flow(result_path="$.out"), {"xs": []}, "i", NOW)
    assert finish(transition).output == {"xs": [], "out": []}


def test_map_item_selector_sees_index_value_and_the_state_input() -> None:
    definition = map_flow(
        item_selector={
            "index.$": "$$.Map.Item.Index",
            "value.$": "$$.Map.Item.Value",
            "tax.$": "$.tax",
        },
    )
    transition = start(definition, {"xs": ["a", "b"], "tax": 0.2}, "i", NOW)
    assert [c.input for c in of(transition.commands, RunActivity)] == [
        {"index": 0, "value": "a", "tax": 0.2},
        {"index": 1, "value": "b", "tax": 0.2},
    ]


@pytest.mark.parametrize("items", [{"a": 1}, "abc", 3, None])
def test_map_items_path_not_an_array_is_states_runtime(items: Any) -> None:
    transition = start(map_flow(), {"xs": items}, "i", NOW)
    assert finish(transition).error == "States.Runtime"


def test_map_item_failure_cancels_running_items() -> None:
    transition = start(map_flow(max_concurrency=3), {"xs": [1, 2, 3, 4]}, "i", NOW)
    calls = of(transition.commands, RunActivity)
    failed = advance(transition.snapshot, ActivityFailed(calls[1].call_id, "Bad"), at(1))
    assert {c.work_id for c in of(failed.commands, CancelWork)} == {
        calls[0].call_id,
        calls[2].call_id,
    }
    assert of(failed.commands, RunActivity) == []
    assert finish(failed).error == "Bad"


def test_map_item_failure_caught_at_the_map() -> None:
    transition = start(map_flow(catch=[{"next": "Caught"}]), {"xs": [1, 2]}, "i", NOW)
    calls = of(transition.commands, RunActivity)
    failed = advance(transition.snapshot, ActivityFailed(calls[0].call_id, "Bad"), at(1))
    assert failed.snapshot.positions == ["Caught"]
    rejected(failed.snapshot, ActivityCompleted(calls[1].call_id, 1), StaleEventError)


def test_map_inside_parallel_positions() -> None:
    definition = flow(
        {
            "Par": {
                "type": "parallel",
                "end": True,
                "branches": [
                    branch(
                        "M",
                        {
                            "type": "map",
                            "end": True,
                            "iterator": branch("T", task("work")),
                        },
                    )
                ],
            }
        },
        start_at="Par",
    )
    transition = start(definition, [1, 2], "i", NOW)
    calls = of(transition.commands, RunActivity)
    assert [c.position for c in calls] == ["Par[0]/M[0]/T", "Par[0]/M[1]/T"]
    for call in calls:
        transition = advance(transition.snapshot, ActivityCompleted(call.call_id, call.input), NOW)
    assert finish(transition).output == [[1, 2]]


def test_mid_map_snapshot_round_trip() -> None:
    transition = start(map_flow(max_concurrency=1), {"xs": [1, 2, 3]}, "i", NOW)
    call = of(transition.commands, RunActivity)[0]
    transition = advance(transition.snapshot, ActivityCompleted(call.call_id, "one"), at(1))
    moved = decode_snapshot(encode_snapshot(transition.snapshot))
    assert moved == transition.snapshot
    assert moved.state.frames["M"].results == ("one", None, None)
    assert moved.state.frames["M"].next_item == 2


def selector_failing_map(**fields: Any) -> FlowDefinition:
    return map_flow(item_selector={"v.$": "$$.Map.Item.Value.id"}, **fields)


def test_map_item_selector_failure_without_handlers_fails_the_flow() -> None:
    transition = start(selector_failing_map(), {"xs": [{"id": 1}, {"no": 2}]}, "i", NOW)
    assert finish(transition).error == "States.ParameterPathFailure"
    assert outstanding(transition.snapshot) == []


def test_map_item_selector_failure_caught_stops_the_other_items() -> None:
    definition = selector_failing_map(catch=[{"next": "Caught"}])
    transition = start(definition, {"xs": [{"id": 1}, {"no": 2}]}, "i", NOW)
    assert transition.snapshot.positions == ["Caught"]
    assert of(outstanding(transition.snapshot), RunActivity) == []


def test_map_item_selector_failure_is_retried() -> None:
    definition = selector_failing_map(
        retry=[{"errors": ["States.ALL"], "max_attempts": 1, "interval_seconds": 1}]
    )
    transition = start(definition, {"xs": [{"no": 2}]}, "i", NOW)
    timer = of(transition.commands, StartTimer)[0]
    again = advance(transition.snapshot, TimerFired(timer.timer_id), at(1))
    assert again.snapshot.finished
    assert finish(again).error == "States.ParameterPathFailure"
