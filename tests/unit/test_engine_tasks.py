"""Engine: task states, their timeouts, retries, catches and the flow's on_error."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from rustyflower.core.engine import (
    ActivityCompleted,
    ActivityFailed,
    AwaitEvent,
    CancelWork,
    FinishFlow,
    RunActivity,
    StartTimer,
    TimerFired,
    Transition,
    advance,
    outstanding,
    retry_delay,
    start,
)
from rustyflower.core.engine.machine import jitter_fraction
from rustyflower.core.errors import StaleEventError
from rustyflower.core.model import FlowDefinition, Retry
from rustyflower.core.snapshot.document import encode_snapshot
from rustyflower.core.timeutil import parse_timestamp
from tests.unit.engine_kit import NOW, at, finish, flow, of, one, rejected


def fire_at(command: StartTimer) -> datetime:
    moment = parse_timestamp(command.fire_at)
    assert moment is not None
    return moment


def task(**fields: Any) -> dict[str, Any]:
    return {"type": "task", "activity": "work", "end": True, **fields}


# --- dispatch and completion -------------------------------------------------------------


def test_task_dispatches_one_run_activity() -> None:
    definition = flow({"A": task(input_path="$.order", parameters={"amount.$": "$.total"})})
    transition = start(definition, {"order": {"total": 12}}, "inst-1", NOW)
    command = one(transition.commands, RunActivity)
    assert command == RunActivity(
        call_id="A~1",
        activity="work",
        input={"amount": 12},
        position="A",
        attempt=1,
        idempotency_key="inst-1:A:1",
        timeout_seconds=None,
    )
    assert transition.commands == (command,)
    assert transition.snapshot.status == "running"
    assert transition.snapshot.positions == ["A"]
    assert outstanding(transition.snapshot) == [command]


def test_idempotency_key_names_instance_position_and_attempt() -> None:
    definition = flow({"A": task(retry=[{"errors": ["E"], "max_attempts": 2}])})
    first = start(definition, {}, "order-7", NOW)
    call = one(first.commands, RunActivity)
    failed = advance(first.snapshot, ActivityFailed(call.call_id, "E"), NOW)
    timer = one(failed.commands, StartTimer)
    again = one(advance(failed.snapshot, TimerFired(timer.timer_id), at(5)).commands, RunActivity)
    # a state entered once: its position and attempt are the key, on every runtime
    assert call.idempotency_key == "order-7:A:1"
    assert again.idempotency_key == "order-7:A:2"
    assert again.attempt == 2
    assert again.call_id != call.call_id
    assert again.input == call.input


def test_start_is_deterministic() -> None:
    definition = flow({"A": task(timeout_seconds=5)})
    one_run = start(definition, {"x": 1}, "i", NOW)
    other_run = start(definition, {"x": 1}, "i", NOW)
    assert one_run.commands == other_run.commands
    assert encode_snapshot(one_run.snapshot) == encode_snapshot(other_run.snapshot)


def test_completion_applies_result_selector_result_path_and_output_path() -> None:
    definition = flow(
        {
            "A": task(
                result_selector={"id.$": "$.payment_id"},
                result_path="$.payment",
                output_path="$.payment",
                end=False,
                next="B",
            ),
            "B": {"type": "succeed"},
        }
    )
    started = start(definition, {"order": 1}, "i", NOW)
    call = one(started.commands, RunActivity)
    done = advance(started.snapshot, ActivityCompleted(call.call_id, {"payment_id": "p1"}), at(1))
    assert finish(done) == FinishFlow(status="succeeded", output={"id": "p1"})
    assert done.snapshot.status == "succeeded"
    assert done.snapshot.state.output == {"id": "p1"}
    assert done.snapshot.state.finished_at == "2024-01-01T00:00:01Z"
    assert done.snapshot.positions == []
    assert outstanding(done.snapshot) == []


def test_result_path_on_a_scalar_input_is_a_result_path_match_failure() -> None:
    definition = flow({"A": task(result_path="$.r")})
    started = start(definition, 5, "i", NOW)
    call = one(started.commands, RunActivity)
    done = advance(started.snapshot, ActivityCompleted(call.call_id, 1), NOW)
    assert finish(done).error == "States.ResultPathMatchFailure"


def test_missing_parameter_path_is_a_parameter_path_failure() -> None:
    definition = flow({"A": task(parameters={"x.$": "$.missing"})})
    transition = start(definition, {}, "i", NOW)
    assert finish(transition).error == "States.ParameterPathFailure"
    assert of(transition.commands, RunActivity) == []


# --- timeouts ------------------------------------------------------------------------------


def test_timeout_starts_a_timer_that_completion_cancels() -> None:
    definition = flow({"A": task(timeout_seconds=30)})
    started = start(definition, {}, "i", NOW)
    call = one(started.commands, RunActivity)
    timer = one(started.commands, StartTimer)
    assert call.timeout_seconds == 30
    assert timer.purpose == "task_timeout"
    assert timer.position == "A"
    assert fire_at(timer) == at(30)
    done = advance(started.snapshot, ActivityCompleted(call.call_id, "ok"), at(3))
    assert done.commands == (
        CancelWork(work_id=timer.timer_id, work_kind="start_timer"),
        FinishFlow(status="succeeded", output="ok"),
    )


def test_timeout_fails_with_states_timeout_and_cancels_the_call() -> None:
    definition = flow({"A": task(timeout_seconds=30)})
    started = start(definition, {}, "i", NOW)
    call = one(started.commands, RunActivity)
    timer = one(started.commands, StartTimer)
    timed_out = advance(started.snapshot, TimerFired(timer.timer_id), at(30))
    assert timed_out.commands[0] == CancelWork(work_id=call.call_id, work_kind="run_activity")
    assert finish(timed_out).error == "States.Timeout"
    assert timed_out.snapshot.status == "failed"


def test_late_completion_after_a_timeout_is_stale() -> None:
    definition = flow(
        {
            "A": task(
                timeout_seconds=30,
                end=False,
                next="Done",
                catch=[{"errors": ["States.Timeout"], "next": "Approve"}],
            ),
            "Approve": {"type": "wait_for_event", "event": "ok", "next": "Done"},
            "Done": {"type": "succeed"},
        }
    )
    started = start(definition, {}, "i", NOW)
    call = one(started.commands, RunActivity)
    timer = one(started.commands, StartTimer)
    timed_out = advance(started.snapshot, TimerFired(timer.timer_id), at(30))
    assert timed_out.snapshot.status == "running"
    assert timed_out.snapshot.positions == ["Approve"]
    rejected(timed_out.snapshot, ActivityCompleted(call.call_id, "late"), StaleEventError, at(31))
    rejected(timed_out.snapshot, ActivityFailed(call.call_id, "E"), StaleEventError, at(31))
    rejected(timed_out.snapshot, TimerFired(timer.timer_id), StaleEventError, at(31))


def test_timeout_is_retried_like_any_error() -> None:
    definition = flow({"A": task(timeout_seconds=10, retry=[{"interval_seconds": 5}])})
    started = start(definition, {}, "i", NOW)
    timer = one(started.commands, StartTimer)
    timed_out = advance(started.snapshot, TimerFired(timer.timer_id), at(10))
    retry_timer = one(timed_out.commands, StartTimer)
    assert retry_timer.purpose == "retry"
    assert fire_at(retry_timer) == at(15)
    again = advance(timed_out.snapshot, TimerFired(retry_timer.timer_id), at(15))
    call = one(again.commands, RunActivity)
    assert call.attempt == 2
    assert fire_at(one(again.commands, StartTimer)) == at(25)


# --- retry ---------------------------------------------------------------------------------


def fail_repeatedly(
    definition: FlowDefinition, errors: list[str], instance_id: str = "i"
) -> tuple[list[float], Transition]:
    """Fail the task with each error in turn; return the retry delays and the last step."""
    transition = start(definition, {}, instance_id, NOW)
    now = NOW
    delays: list[float] = []
    for error in errors:
        call = one(transition.commands, RunActivity)
        transition = advance(transition.snapshot, ActivityFailed(call.call_id, error, "c"), now)
        timers = of(transition.commands, StartTimer)
        if transition.snapshot.finished or not timers:
            break
        timer = timers[-1]
        assert timer.purpose == "retry"
        delays.append((fire_at(timer) - now).total_seconds())
        now = fire_at(timer)
        transition = advance(transition.snapshot, TimerFired(timer.timer_id), now)
    return delays, transition


def test_retry_delays_grow_by_the_backoff_rate() -> None:
    policy = {"errors": ["E"], "interval_seconds": 2, "backoff_rate": 3.0, "max_attempts": 3}
    delays, last = fail_repeatedly(flow({"A": task(retry=[policy])}), ["E"] * 4)
    assert delays == [2.0, 6.0, 18.0]
    assert finish(last).error == "E"
    assert finish(last).cause == "c"


def test_retry_delay_is_capped_by_max_delay() -> None:
    policy = {
        "errors": ["E"],
        "interval_seconds": 10,
        "backoff_rate": 10.0,
        "max_attempts": 3,
        "max_delay_seconds": 50,
    }
    delays, _ = fail_repeatedly(flow({"A": task(retry=[policy])}), ["E"] * 4)
    assert delays == [10.0, 50.0, 50.0]


def test_retry_delay_function() -> None:
    policy = Retry(interval_seconds=3, backoff_rate=2.0, max_delay_seconds=20)
    assert [retry_delay(policy, n, 0.5) for n in range(4)] == [3.0, 6.0, 12.0, 20.0]
    jittered = Retry(interval_seconds=4, backoff_rate=2.0, jitter="full")
    assert retry_delay(jittered, 1, 0.25) == 2.0
    assert retry_delay(jittered, 1, 0.0) == 0.0


def test_full_jitter_is_deterministic_and_within_the_delay() -> None:
    policy = {
        "errors": ["E"],
        "interval_seconds": 100,
        "backoff_rate": 2.0,
        "max_attempts": 4,
        "jitter": "full",
    }
    definition = flow({"A": task(retry=[policy])})
    delays, _ = fail_repeatedly(definition, ["E"] * 4, "inst-j")
    assert delays == fail_repeatedly(definition, ["E"] * 4, "inst-j")[0]
    assert len(delays) == 4
    for retry_count, delay in enumerate(delays):
        full = 100 * 2.0**retry_count
        assert 0 <= delay <= full
        expected = full * jitter_fraction("inst-j", "A", retry_count + 1)
        assert delay == pytest.approx(expected, abs=1e-6)
    other, _ = fail_repeatedly(definition, ["E"] * 4, "inst-k")
    assert other != delays


def test_jitter_fraction_is_a_fraction() -> None:
    fractions = [jitter_fraction("i", "A", attempt) for attempt in range(50)]
    assert all(0 <= f < 1 for f in fractions)
    assert len(set(fractions)) == 50


def test_first_matching_retrier_decides_even_when_exhausted() -> None:
    definition = flow(
        {
            "A": task(
                retry=[
                    {"errors": ["E"], "max_attempts": 1, "interval_seconds": 1},
                    {"errors": ["States.ALL"], "max_attempts": 5, "interval_seconds": 7},
                ]
            )
        }
    )
    delays, last = fail_repeatedly(definition, ["E", "E"])
    assert delays == [1.0]
    assert finish(last).error == "E"


def test_retrier_with_zero_attempts_never_retries() -> None:
    definition = flow(
        {"A": task(retry=[{"errors": ["E"], "max_attempts": 0}, {"errors": ["States.ALL"]}])}
    )
    delays, last = fail_repeatedly(definition, ["E"])
    assert delays == []
    assert finish(last).error == "E"


def test_each_retrier_counts_its_own_attempts() -> None:
    definition = flow(
        {
            "A": task(
                retry=[
                    {"errors": ["E1"], "max_attempts": 1, "interval_seconds": 1},
                    {"errors": ["E2"], "max_attempts": 1, "interval_seconds": 2},
                ]
            )
        }
    )
    delays, last = fail_repeatedly(definition, ["E1", "E2", "E2"])
    assert delays == [1.0, 2.0]
    assert finish(last).error == "E2"


def test_later_retrier_matches_when_earlier_do_not() -> None:
    definition = flow(
        {
            "A": task(
                retry=[
                    {"errors": ["Other"], "max_attempts": 3, "interval_seconds": 9},
                    {"errors": ["States.ALL"], "max_attempts": 1, "interval_seconds": 4},
                ]
            )
        }
    )
    delays, last = fail_repeatedly(definition, ["Boom", "Boom"])
    assert delays == [4.0]
    assert finish(last).error == "Boom"


def test_states_all_does_not_match_states_runtime() -> None:
    definition = flow(
        {
            "A": task(
                input_path="$.missing",
                retry=[{"errors": ["States.ALL"]}],
                catch=[{"errors": ["States.ALL"], "next": "B"}],
            ),
            "B": {"type": "succeed"},
        }
    )
    transition = start(definition, {}, "i", NOW)
    assert of(transition.commands, StartTimer) == []
    assert finish(transition).error == "States.Runtime"


def test_states_runtime_reported_by_an_activity_is_not_retried_by_states_all() -> None:
    definition = flow({"A": task(retry=[{"errors": ["States.ALL"]}])})
    delays, last = fail_repeatedly(definition, ["States.Runtime"])
    assert delays == []
    assert finish(last).error == "States.Runtime"


def test_states_runtime_named_explicitly_is_caught() -> None:
    definition = flow(
        {
            "A": task(input_path="$.missing", catch=[{"errors": ["States.Runtime"], "next": "B"}]),
            "B": {"type": "succeed"},
        }
    )
    assert finish(start(definition, {}, "i", NOW)).status == "succeeded"


def test_flow_default_retry_applies_to_tasks_without_their_own() -> None:
    default = [{"errors": ["E"], "interval_seconds": 3, "max_attempts": 1}]
    definition = flow({"A": task()}, default_retry=default)
    assert fail_repeatedly(definition, ["E", "E"])[0] == [3.0]
    own = flow({"A": task(retry=[{"errors": ["X"]}])}, default_retry=default)
    assert fail_repeatedly(own, ["E"])[0] == []


def test_retry_history_records_the_decision() -> None:
    definition = flow({"A": task(retry=[{"errors": ["E"], "interval_seconds": 2}])})
    _, last = fail_repeatedly(definition, ["E"])
    kinds = [entry.kind for entry in last.snapshot.state.history]
    assert kinds == [
        "FlowStarted",
        "TaskScheduled",
        "TaskFailed",
        "RetryScheduled",
        "RetryStarted",
        "TaskScheduled",
    ]
    scheduled = last.snapshot.state.history[3]
    assert scheduled.detail == {"error": "E", "retry": 1, "delay_seconds": 2.0}


# --- catch ---------------------------------------------------------------------------------


def caught_flow(catch: list[dict[str, Any]], **fields: Any) -> FlowDefinition:
    targets = {handler["next"]: {"type": "succeed"} for handler in catch}
    return flow({"A": task(catch=catch, **fields), **targets})


def fail_once(definition: FlowDefinition, error: str, data: Any = None) -> Transition:
    started = start(definition, {"order": 1} if data is None else data, "i", NOW)
    call = one(started.commands, RunActivity)
    return advance(started.snapshot, ActivityFailed(call.call_id, error, "why"), at(1))


def test_catch_by_error_name_places_error_and_cause() -> None:
    definition = caught_flow(
        [
            {"errors": ["Declined"], "next": "Declined", "result_path": "$.error"},
            {"next": "Other"},
        ]
    )
    done = fail_once(definition, "Declined")
    assert finish(done) == FinishFlow(
        status="succeeded", output={"order": 1, "error": {"Error": "Declined", "Cause": "why"}}
    )
    assert [e.kind for e in done.snapshot.state.history][-3:] == [
        "TaskFailed",
        "ErrorCaught",
        "FlowSucceeded",
    ]
    caught = [e for e in done.snapshot.state.history if e.kind == "ErrorCaught"]
    assert caught[0].detail == {"error": "Declined", "next": "Declined"}


def test_catch_all_catches_any_error_and_the_first_match_wins() -> None:
    definition = caught_flow(
        [
            {"errors": ["Nope"], "next": "Declined"},
            {"errors": ["States.ALL"], "next": "Other"},
        ]
    )
    done = fail_once(definition, "Boom")
    assert done.snapshot.state.history[-2].detail == {"error": "Boom", "next": "Other"}
    assert finish(done).output == {"Error": "Boom", "Cause": "why"}  # result_path "$"


def test_catch_result_path_null_keeps_the_input() -> None:
    definition = caught_flow([{"next": "Declined", "result_path": None}])
    assert finish(fail_once(definition, "Boom")).output == {"order": 1}


def test_catch_result_path_on_the_raw_input_not_the_effective_input() -> None:
    definition = caught_flow([{"next": "Declined", "result_path": "$.err"}], input_path="$.order")
    done = fail_once(definition, "Boom", {"order": {"id": 1}, "keep": True})
    assert finish(done).output == {
        "order": {"id": 1},
        "keep": True,
        "err": {"Error": "Boom", "Cause": "why"},
    }


def test_states_task_failed_catches_an_activity_error_of_any_name() -> None:
    # Developer Guide, "Error names": in a retry or catch, States.TaskFailed "acts as a
    # wildcard that matches any known error name except for States.Timeout"
    definition = caught_flow([{"errors": ["States.TaskFailed"], "next": "Failed"}])
    done = fail_once(definition, "CardDeclined")
    assert done.snapshot.state.history[-2].detail == {"error": "CardDeclined", "next": "Failed"}
    assert finish(done).output == {"Error": "CardDeclined", "Cause": "why"}


def test_states_task_failed_retries_an_activity_error_of_any_name() -> None:
    definition = flow({"A": task(retry=[{"errors": ["States.TaskFailed"], "max_attempts": 1}])})
    delays, last = fail_repeatedly(definition, ["GatewayDown", "GatewayDown"])
    assert delays == [1.0]
    assert finish(last).error == "GatewayDown"


def test_states_task_failed_does_not_catch_a_timeout() -> None:
    definition = flow(
        {
            "A": task(
                timeout_seconds=5,
                catch=[
                    {"errors": ["States.TaskFailed"], "next": "Failed"},
                    {"errors": ["States.Timeout"], "next": "Late"},
                ],
            ),
            "Failed": {"type": "succeed"},
            "Late": {"type": "succeed"},
        }
    )
    started = start(definition, {}, "i", NOW)
    timer = one(started.commands, StartTimer)
    done = advance(started.snapshot, TimerFired(timer.timer_id), at(5))
    assert done.snapshot.state.history[-2].detail == {"error": "States.Timeout", "next": "Late"}


def test_states_task_failed_does_not_match_states_runtime() -> None:
    definition = flow(
        {
            "A": task(
                input_path="$.missing", catch=[{"errors": ["States.TaskFailed"], "next": "B"}]
            ),
            "B": {"type": "succeed"},
        }
    )
    assert finish(start(definition, {}, "i", NOW)).error == "States.Runtime"


def test_uncaught_error_fails_the_flow() -> None:
    definition = caught_flow([{"errors": ["Declined"], "next": "Declined"}])
    done = fail_once(definition, "Boom")
    assert finish(done) == FinishFlow(status="failed", error="Boom", cause="why")
    assert done.snapshot.state.error == "Boom"
    assert done.snapshot.state.cause == "why"


def test_retries_come_before_catch() -> None:
    definition = caught_flow(
        [{"next": "Declined", "result_path": "$.e"}],
        retry=[{"errors": ["E"], "max_attempts": 1}],
    )
    delays, last = fail_repeatedly(definition, ["E", "E"])
    assert delays == [1.0]
    assert finish(last).output == {"e": {"Error": "E", "Cause": "c"}}


def test_flow_on_error_catches_an_uncaught_error() -> None:
    definition = flow(
        {
            "A": task(end=False, next="B"),
            "B": {"type": "pass", "next": "Recover"},
            "Recover": {"type": "fail", "error": "Handled", "cause_path": "$.e.Cause"},
        },
        on_error=[{"errors": ["Boom"], "next": "Recover", "result_path": "$.e"}],
    )
    done = fail_once(definition, "Boom", {"n": 1})
    assert finish(done) == FinishFlow(status="failed", error="Handled", cause="why")


def test_flow_on_error_does_not_catch_states_runtime_with_states_all() -> None:
    definition = flow(
        {
            "A": task(end=False, next="B", input_path="$.missing"),
            "B": {"type": "pass", "next": "Recover"},
            "Recover": {"type": "succeed"},
        },
        on_error=[{"next": "Recover"}],
    )
    assert finish(start(definition, {}, "i", NOW)).error == "States.Runtime"


def test_state_catch_comes_before_flow_on_error() -> None:
    definition = flow(
        {
            "A": task(end=False, next="B", catch=[{"next": "Local"}]),
            "B": {"type": "pass", "next": "Global"},
            "Local": {"type": "succeed", "output_path": "$.Error"},
            "Global": {"type": "fail", "error": "Global"},
        },
        on_error=[{"next": "Global"}],
    )
    assert finish(fail_once(definition, "Boom")) == FinishFlow("succeeded", output="Boom")


def test_await_after_catch_keeps_running() -> None:
    definition = flow(
        {
            "A": task(catch=[{"next": "Wait"}]),
            "Wait": {"type": "wait_for_event", "event": "fixed", "end": True},
        }
    )
    done = fail_once(definition, "Boom")
    assert done.snapshot.status == "running"
    assert of(done.commands, AwaitEvent)[0].event == "fixed"
