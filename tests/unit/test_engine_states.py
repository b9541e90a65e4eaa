"""Engine: pass, choice, wait, wait_for_event, sub_flow, succeed and fail states."""

from __future__ import annotations

import time
from typing import Any

import pytest

from rustyflower.core.engine import (
    ActivityCompleted,
    AwaitEvent,
    CancelWork,
    ChildFinished,
    EventReceived,
    FinishFlow,
    RunActivity,
    StartChildFlow,
    StartTimer,
    TimerFired,
    Transition,
    advance,
    outstanding,
    start,
)
from rustyflower.core.errors import (
    InstanceFinishedError,
    NoWaiterError,
    StaleEventError,
    UnknownCallError,
)
from rustyflower.core.snapshot.document import decode_snapshot, encode_snapshot
from tests.unit.engine_kit import NOW, at, finish, flow, of, one, rejected


def run(states: dict[str, Any], data: Any, **extra: Any) -> Transition:
    return start(flow(states, **extra), data, "i", NOW)


def output_of(states: dict[str, Any], data: Any) -> Any:
    done = finish(run(states, data))
    assert done.status == "succeeded", done
    return done.output


def failure_of(states: dict[str, Any], data: Any) -> tuple[str | None, str | None]:
    done = finish(run(states, data))
    assert done.status == "failed", done
    return done.error, done.cause


END = {"type": "succeed"}


# --- pass ----------------------------------------------------------------------------------


def test_pass_without_result_passes_its_input() -> None:
    assert output_of({"A": {"type": "pass", "end": True}}, {"a": 1}) == {"a": 1}


def test_pass_result_replaces_the_input() -> None:
    assert output_of({"A": {"type": "pass", "result": [1, 2], "end": True}}, {"a": 1}) == [1, 2]


def test_pass_result_placed_at_result_path() -> None:
    states = {"A": {"type": "pass", "result": {"b": 2}, "result_path": "$.x.y", "end": True}}
    assert output_of(states, {"a": 1}) == {"a": 1, "x": {"y": {"b": 2}}}


def test_pass_parameters_render_from_the_effective_input() -> None:
    states = {
        "A": {
            "type": "pass",
            "input_path": "$.order",
            "parameters": {"id.$": "$.id", "fixed": "yes", "all.$": "$"},
            "result_path": "$.shaped",
            "end": True,
        }
    }
    assert output_of(states, {"order": {"id": 7}}) == {
        "order": {"id": 7},
        "shaped": {"id": 7, "fixed": "yes", "all": {"id": 7}},
    }


def test_pass_result_path_null_keeps_the_input() -> None:
    states = {"A": {"type": "pass", "result": "ignored", "result_path": None, "end": True}}
    assert output_of(states, {"a": 1}) == {"a": 1}


def test_pass_output_path_selects_the_output() -> None:
    states = {"A": {"type": "pass", "result": {"k": [5]}, "output_path": "$.k[0]", "end": True}}
    assert output_of(states, {}) == 5


def test_pass_missing_input_path_is_states_runtime() -> None:
    error, cause = failure_of({"A": {"type": "pass", "input_path": "$.nope", "end": True}}, {})
    assert error == "States.Runtime"
    assert cause is not None and "input_path" in cause


def test_pass_does_not_change_the_input_value() -> None:
    data = {"a": {"b": 1}}
    states = {"A": {"type": "pass", "result": 2, "result_path": "$.a.c", "end": True}}
    assert output_of(states, data) == {"a": {"b": 1, "c": 2}}
    assert data == {"a": {"b": 1}}


# --- choice --------------------------------------------------------------------------------


def choice_flow(default: str | None = "Default") -> dict[str, Any]:
    states: dict[str, Any] = {
        "A": {
            "type": "choice",
            "choices": [
                {"when": {"variable": "$.n", "numeric_greater_than": 10}, "next": "Big"},
                {"when": {"variable": "$.n", "numeric_greater_than": 5}, "next": "Medium"},
                {
                    "when": {
                        "and": [
                            {"variable": "$.tag", "is_present": True},
                            {"variable": "$.tag", "string_equals": "x"},
                        ]
                    },
                    "next": "Tagged",
                },
            ],
        },
        "Big": {"type": "pass", "result": "big", "end": True},
        "Medium": {"type": "pass", "result": "medium", "end": True},
        "Tagged": {"type": "pass", "result": "tagged", "end": True},
    }
    if default is not None:
        states["A"]["default"] = default
        states[default] = {"type": "pass", "result": "default", "end": True}
    return states


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"n": 50}, "big"),  # both of the first two rules hold: the first wins
        ({"n": 7}, "medium"),
        ({"n": 1, "tag": "x"}, "tagged"),
        ({"n": 1}, "default"),
        ({"n": "50"}, "default"),  # a string is not a number: the rule is false
    ],
)
def test_choice_first_matching_rule_wins(data: dict[str, Any], expected: str) -> None:
    assert output_of(choice_flow(), data) == expected


def test_choice_without_match_or_default_is_no_choice_matched() -> None:
    error, cause = failure_of(choice_flow(default=None), {"n": 1})
    assert error == "States.NoChoiceMatched"
    assert cause == "no rule of choice 'A' matched"


def test_choice_missing_variable_is_states_runtime() -> None:
    error, cause = failure_of(choice_flow(), {"tag": "x"})
    assert error == "States.Runtime"
    assert cause is not None and "$.n" in cause


def test_choice_passes_its_input_through_input_and_output_path() -> None:
    states = {
        "A": {
            "type": "choice",
            "input_path": "$.inner",
            "output_path": "$.v",
            "choices": [{"when": {"variable": "$.v", "is_null": False}, "next": "B"}],
        },
        "B": END,
    }
    assert output_of(states, {"inner": {"v": 3}}) == 3


def test_choice_loop_runs_until_the_condition_changes() -> None:
    states = {
        "A": {
            "type": "choice",
            "choices": [{"when": {"variable": "$.go", "boolean_equals": True}, "next": "Stop"}],
            "default": "Ask",
        },
        "Ask": {"type": "wait_for_event", "event": "more", "next": "A"},
        "Stop": END,
    }
    transition = run(states, {"go": False})
    transition = advance(transition.snapshot, EventReceived("more", {"go": False}), at(1))
    assert transition.snapshot.positions == ["Ask"]
    transition = advance(transition.snapshot, EventReceived("more", {"go": True}), at(2))
    assert finish(transition).output == {"go": True}


def test_endless_pass_choice_loop_fails_with_step_limit() -> None:
    states = {
        "A": {"type": "pass", "next": "C"},
        "C": {
            "type": "choice",
            "choices": [{"when": {"variable": "$.go", "boolean_equals": True}, "next": "A"}],
            "default": "E",
        },
        "E": END,
    }
    started = time.monotonic()
    transition = run(states, {"go": True})
    assert time.monotonic() - started < 30
    done = finish(transition)
    assert done.status == "failed"
    assert done.error == "States.Runtime"
    assert done.cause is not None and "endless loop" in done.cause
    assert "StepLimitExceeded" in [e.kind for e in transition.snapshot.state.history]


# --- wait ----------------------------------------------------------------------------------


def wait_flow(**fields: Any) -> dict[str, Any]:
    return {"A": {"type": "wait", "next": "B", **fields}, "B": END}


def test_wait_seconds_starts_a_timer_and_continues_when_it_fires() -> None:
    transition = run(wait_flow(seconds=90), {"a": 1})
    timer = one(transition.commands, StartTimer)
    assert timer.purpose == "wait"
    assert timer.fire_at == "2024-01-01T00:01:30Z"
    assert transition.commands == (timer,)
    done = advance(transition.snapshot, TimerFired(timer.timer_id), at(90))
    assert finish(done).output == {"a": 1}


def test_wait_zero_seconds_continues_at_once() -> None:
    assert finish(run(wait_flow(seconds=0), 1)).output == 1


def test_wait_timestamp_in_the_past_continues_at_once() -> None:
    transition = run(wait_flow(timestamp="2020-01-01T00:00:00Z"), 1)
    assert of(transition.commands, StartTimer) == []
    assert finish(transition).output == 1


def test_wait_timestamp_in_the_future() -> None:
    transition = run(wait_flow(timestamp="2024-01-02T02:00:00+02:00"), 1)
    assert one(transition.commands, StartTimer).fire_at == "2024-01-02T00:00:00Z"


def test_wait_seconds_path() -> None:
    transition = run(wait_flow(seconds_path="$.delay"), {"delay": 15})
    assert one(transition.commands, StartTimer).fire_at == "2024-01-01T00:00:15Z"


def test_wait_timestamp_path() -> None:
    transition = run(wait_flow(timestamp_path="$.until"), {"until": "2024-01-01T01:00:00Z"})
    assert one(transition.commands, StartTimer).fire_at == "2024-01-01T01:00:00Z"
    past = run(wait_flow(timestamp_path="$.until"), {"until": "2023-01-01T01:00:00Z"})
    assert finish(past).status == "succeeded"


@pytest.mark.parametrize("value", ["ten", -1, 1.5, True, None, [1]])
def test_wait_bad_seconds_path_value_is_states_runtime(value: Any) -> None:
    error, cause = failure_of(wait_flow(seconds_path="$.delay"), {"delay": value})
    assert error == "States.Runtime"
    assert cause is not None and "seconds_path" in cause


@pytest.mark.parametrize("value", ["tomorrow", "2024-01-01", 5, "2024-01-01T00:00:00"])
def test_wait_bad_timestamp_path_value_is_states_runtime(value: Any) -> None:
    error, _ = failure_of(wait_flow(timestamp_path="$.until"), {"until": value})
    assert error == "States.Runtime"


def test_wait_missing_seconds_path_is_states_runtime() -> None:
    assert failure_of(wait_flow(seconds_path="$.delay"), {})[0] == "States.Runtime"


def test_wait_applies_input_and_output_path() -> None:
    states = wait_flow(seconds=5, input_path="$.a", output_path="$.b")
    transition = run(states, {"a": {"b": 2}})
    timer = one(transition.commands, StartTimer)
    assert finish(advance(transition.snapshot, TimerFired(timer.timer_id), at(5))).output == 2


def test_wait_timer_fired_twice_is_stale() -> None:
    states = {
        "A": {"type": "wait", "seconds": 5, "next": "B"},
        "B": {"type": "wait", "seconds": 5, "end": True},
    }
    transition = run(states, {})
    timer = one(transition.commands, StartTimer)
    after = advance(transition.snapshot, TimerFired(timer.timer_id), at(5))
    rejected(after.snapshot, TimerFired(timer.timer_id), StaleEventError, at(6))


# --- wait_for_event ------------------------------------------------------------------------


def event_flow(**fields: Any) -> dict[str, Any]:
    states = {
        "A": {"type": "wait_for_event", "event": "approved", "next": "Done", **fields},
        "Done": END,
    }
    if "on_timeout" in fields or "catch" in fields:
        states["Late"] = {"type": "pass", "result": "late", "end": True}
    return states


def test_event_delivered_continues_with_its_data() -> None:
    states = event_flow(result_path="$.approval", timeout_seconds=60, on_timeout="Late")
    transition = run(states, {"order": 1})
    wait = one(transition.commands, AwaitEvent)
    timer = one(transition.commands, StartTimer)
    assert wait.event == "approved"
    assert wait.position == "A"
    assert timer.purpose == "event_timeout"
    assert timer.fire_at == "2024-01-01T00:01:00Z"
    done = advance(transition.snapshot, EventReceived("approved", {"by": "ann"}), at(10))
    assert CancelWork(work_id=timer.timer_id, work_kind="start_timer") in done.commands
    assert finish(done).output == {"order": 1, "approval": {"by": "ann"}}


def test_delivering_by_name_or_by_wait_id_gives_the_same_commands() -> None:
    transition = run(event_flow(timeout_seconds=60, on_timeout="Late"), {})
    wait = one(transition.commands, AwaitEvent)
    by_name = advance(transition.snapshot, EventReceived("approved", 1), at(1))
    by_id = advance(transition.snapshot, EventReceived("approved", 1, wait.wait_id), at(1))
    assert CancelWork(work_id=wait.wait_id, work_kind="await_event") not in by_name.commands
    assert by_name.commands == by_id.commands


def test_event_delivered_by_wait_id() -> None:
    transition = run(event_flow(result_selector={"ok.$": "$.ok"}), {})
    wait = one(transition.commands, AwaitEvent)
    done = advance(transition.snapshot, EventReceived("approved", {"ok": 1}, wait.wait_id), NOW)
    assert finish(done).output == {"ok": 1}


def test_event_timeout_goes_to_on_timeout() -> None:
    transition = run(event_flow(timeout_seconds=60, on_timeout="Late"), {"a": 1})
    wait = one(transition.commands, AwaitEvent)
    timer = one(transition.commands, StartTimer)
    done = advance(transition.snapshot, TimerFired(timer.timer_id), at(60))
    assert done.commands[0] == CancelWork(work_id=wait.wait_id, work_kind="await_event")
    assert finish(done).output == "late"
    assert "EventTimedOut" in [e.kind for e in done.snapshot.state.history]


def test_event_timeout_without_on_timeout_is_states_timeout() -> None:
    transition = run(event_flow(timeout_seconds=60), {})
    timer = one(transition.commands, StartTimer)
    done = advance(transition.snapshot, TimerFired(timer.timer_id), at(60))
    assert finish(done).error == "States.Timeout"


def test_event_timeout_without_on_timeout_can_be_caught() -> None:
    states = event_flow(timeout_seconds=60, catch=[{"next": "Late"}])
    transition = run(states, {})
    timer = one(transition.commands, StartTimer)
    done = advance(transition.snapshot, TimerFired(timer.timer_id), at(60))
    assert finish(done).output == "late"


def test_event_nobody_waits_for_is_rejected() -> None:
    transition = run(event_flow(), {})
    rejected(transition.snapshot, EventReceived("rejected", 1), NoWaiterError)


def test_event_after_the_wait_ended_is_rejected() -> None:
    states = {
        "A": {"type": "wait_for_event", "event": "go", "next": "B"},
        "B": {"type": "task", "activity": "w", "end": True},
    }
    transition = run(states, {})
    wait = one(transition.commands, AwaitEvent)
    after = advance(transition.snapshot, EventReceived("go", 1), NOW)
    rejected(after.snapshot, EventReceived("go", 2), NoWaiterError)
    rejected(after.snapshot, EventReceived("go", 2, wait.wait_id), StaleEventError)
    rejected(after.snapshot, EventReceived("go", 2, "A~77"), UnknownCallError)


def test_event_with_a_wait_id_that_is_a_call_is_rejected() -> None:
    states = {"A": {"type": "task", "activity": "w", "end": True}}
    transition = run(states, {})
    call = one(transition.commands, RunActivity)
    rejected(transition.snapshot, EventReceived("go", 1, call.call_id), UnknownCallError)


def test_event_with_a_wait_id_must_have_the_awaited_name() -> None:
    transition = run(event_flow(), {})
    wait = one(transition.commands, AwaitEvent)
    rejected(transition.snapshot, EventReceived("rejected", 1, wait.wait_id), NoWaiterError)


def two_waiters() -> Transition:
    """Branch 1 waits for 'go' first; branch 0 starts waiting for 'go' later."""
    definition = flow(
        {
            "Par": {
                "type": "parallel",
                "end": True,
                "branches": [
                    {
                        "start_at": "T",
                        "states": {
                            "T": {"type": "task", "activity": "a", "next": "W0"},
                            "W0": {"type": "wait_for_event", "event": "go", "end": True},
                        },
                    },
                    {
                        "start_at": "W1",
                        "states": {"W1": {"type": "wait_for_event", "event": "go", "end": True}},
                    },
                ],
            }
        },
        start_at="Par",
    )
    transition = start(definition, {}, "i", NOW)
    call = one(transition.commands, RunActivity)
    return advance(transition.snapshot, ActivityCompleted(call.call_id, None), at(1))


def test_event_without_wait_id_goes_to_the_oldest_waiter() -> None:
    transition = two_waiters()
    delivered = advance(transition.snapshot, EventReceived("go", "x"), at(2))
    assert delivered.snapshot.positions == ["Par[0]/W0"]


def test_oldest_waiter_is_the_same_after_a_snapshot_round_trip() -> None:
    transition = two_waiters()
    moved = decode_snapshot(encode_snapshot(transition.snapshot))
    assert moved == transition.snapshot
    here = advance(transition.snapshot, EventReceived("go", "x"), at(2))
    there = advance(moved, EventReceived("go", "x"), at(2))
    assert here.snapshot.positions == there.snapshot.positions == ["Par[0]/W0"]


# --- sub_flow ------------------------------------------------------------------------------


def child_flow(**fields: Any) -> dict[str, Any]:
    states = {
        "A": {
            "type": "sub_flow",
            "flow": "invoice",
            "version": "2",
            "parameters": {"id.$": "$.order"},
            "result_path": "$.invoice",
            "next": "Done",
            **fields,
        },
        "Done": END,
    }
    if "catch" in fields:
        states["Handled"] = {"type": "pass", "end": True}
    return states


def test_sub_flow_starts_a_child() -> None:
    transition = run(child_flow(), {"order": 9})
    command = one(transition.commands, StartChildFlow)
    assert command == StartChildFlow(
        call_id=command.call_id,
        flow="invoice",
        version="2",
        input={"id": 9},
        child_instance_id="i/A@1",
        position="A",
    )
    assert outstanding(transition.snapshot) == [command]


def test_child_success_continues_with_its_output() -> None:
    transition = run(child_flow(), {"order": 9})
    call = one(transition.commands, StartChildFlow).call_id
    done = advance(transition.snapshot, ChildFinished(call, "succeeded", output={"n": 1}), NOW)
    assert finish(done).output == {"order": 9, "invoice": {"n": 1}}


@pytest.mark.parametrize(
    ("event_fields", "error", "cause"),
    [
        ({"status": "failed", "error": "Declined", "cause": "no"}, "Declined", "no"),
        ({"status": "failed"}, "States.TaskFailed", None),
        ({"status": "cancelled", "cause": "by ops"}, "SubFlowCancelled", "by ops"),
        ({"status": "cancelled", "error": "States.Cancelled"}, "States.Cancelled", None),
    ],
)
def test_child_failure_fails_the_state(
    event_fields: dict[str, Any], error: str, cause: str | None
) -> None:
    transition = run(child_flow(), {"order": 9})
    call = one(transition.commands, StartChildFlow).call_id
    done = advance(transition.snapshot, ChildFinished(call, **event_fields), NOW)
    assert finish(done) == FinishFlow(status="failed", error=error, cause=cause)


def test_child_failure_is_caught_and_retried() -> None:
    states = child_flow(
        retry=[{"errors": ["Flaky"], "max_attempts": 1, "interval_seconds": 4}],
        catch=[{"next": "Handled", "result_path": "$.error"}],
    )
    transition = run(states, {"order": 9})
    first = one(transition.commands, StartChildFlow)
    transition = advance(
        transition.snapshot, ChildFinished(first.call_id, "failed", error="Flaky"), NOW
    )
    timer = one(transition.commands, StartTimer)
    transition = advance(transition.snapshot, TimerFired(timer.timer_id), at(4))
    second = one(transition.commands, StartChildFlow)
    assert (first.child_instance_id, second.child_instance_id) == ("i/A@1", "i/A@2")
    done = advance(transition.snapshot, ChildFinished(second.call_id, "failed", error="Flaky"), NOW)
    assert finish(done).output == {"order": 9, "error": {"Error": "Flaky", "Cause": None}}


def test_child_timeout() -> None:
    transition = run(child_flow(timeout_seconds=30), {"order": 9})
    call = one(transition.commands, StartChildFlow)
    timer = one(transition.commands, StartTimer)
    assert timer.purpose == "child_timeout"
    done = advance(transition.snapshot, TimerFired(timer.timer_id), at(30))
    assert done.commands[0] == CancelWork(
        work_id=call.call_id, work_kind="start_child_flow", child_instance_id="i/A@1"
    )
    assert finish(done).error == "States.Timeout"
    rejected(done.snapshot, ChildFinished(call.call_id, "succeeded"), InstanceFinishedError)


def test_child_finished_for_an_activity_call_is_rejected() -> None:
    states = {"A": {"type": "task", "activity": "w", "end": True}}
    transition = run(states, {})
    call = one(transition.commands, RunActivity)
    rejected(transition.snapshot, ChildFinished(call.call_id, "succeeded"), UnknownCallError)


# --- succeed and fail ----------------------------------------------------------------------


def test_succeed_with_input_and_output_path() -> None:
    states = {"A": {"type": "succeed", "input_path": "$.a", "output_path": "$.b"}}
    assert output_of(states, {"a": {"b": [1]}}) == [1]


def test_fail_with_error_and_cause() -> None:
    states = {"A": {"type": "fail", "error": "Bad", "cause": "very"}}
    assert failure_of(states, {}) == ("Bad", "very")


def test_fail_with_error_path_and_cause_path() -> None:
    states = {"A": {"type": "fail", "error_path": "$.e.name", "cause_path": "$.e.why"}}
    assert failure_of(states, {"e": {"name": "Declined", "why": "card"}}) == ("Declined", "card")


def test_fail_paths_that_select_non_text_are_written_as_text() -> None:
    states = {"A": {"type": "fail", "error_path": "$.code", "cause_path": "$.none"}}
    assert failure_of(states, {"code": 42, "none": None}) == ("42", None)


def test_fail_without_error_is_states_failed() -> None:
    assert failure_of({"A": {"type": "fail"}}, {}) == ("States.Failed", None)


def test_fail_with_missing_error_path_is_states_runtime() -> None:
    states = {"A": {"type": "fail", "error_path": "$.e"}}
    assert failure_of(states, {})[0] == "States.Runtime"


def test_fail_state_is_not_caught_by_the_flow_on_error() -> None:
    # a Fail state ends the flow: on_error handles errors raised at states, not Fail.
    states = {
        "A": {
            "type": "choice",
            "choices": [{"when": {"variable": "$.ok", "is_present": True}, "next": "R"}],
            "default": "F",
        },
        "F": {"type": "fail", "error": "Bad"},
        "R": END,
    }
    transition = run(states, {}, on_error=[{"next": "R"}])
    assert finish(transition).error == "Bad"
