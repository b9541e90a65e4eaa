"""Engine: hold, release, cancel, flow timeout, rejected events, outstanding work, history."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from rustyflower.core.engine import (
    ActivityCompleted,
    ActivityFailed,
    AwaitEvent,
    CancelRequested,
    CancelWork,
    ChildFinished,
    Command,
    Event,
    EventReceived,
    FinishFlow,
    HoldRequested,
    ParentLink,
    ReleaseRequested,
    RunActivity,
    Snapshot,
    StartChildFlow,
    StartTimer,
    TimerFired,
    advance,
    outstanding,
    start,
)
from rustyflower.core.errors import (
    EventRejectedError,
    InstanceFinishedError,
    InvalidControlError,
    NoWaiterError,
    StaleEventError,
    UnknownCallError,
)
from rustyflower.core.model import FlowDefinition
from rustyflower.core.snapshot.document import decode_snapshot, encode_snapshot
from tests.unit.engine_kit import NOW, at, finish, flow


def of(commands: tuple[Command, ...] | list[Command], kind: type) -> list[Any]:
    return [command for command in commands if isinstance(command, kind)]


def one(commands: tuple[Command, ...] | list[Command], kind: type) -> Any:
    found = of(commands, kind)
    assert len(found) == 1, commands
    return found[0]


def rejected(snapshot: Snapshot, event: Event, error: type[Exception], now: datetime = NOW) -> None:
    before = encode_snapshot(snapshot)
    with pytest.raises(EventRejectedError) as caught:
        advance(snapshot, event, now)
    assert type(caught.value) is error, caught.value
    assert encode_snapshot(snapshot) == before


def task(activity: str = "work", **fields: Any) -> dict[str, Any]:
    return {"type": "task", "activity": activity, "end": True, **fields}


def as_set(commands: list[Command] | tuple[Command, ...]) -> set[str]:
    return {repr(command) for command in commands}


# --- hold and release ----------------------------------------------------------------------


def wait_then_task() -> FlowDefinition:
    return flow(
        {
            "A": {"type": "wait", "seconds": 5, "next": "B"},
            "B": task(timeout_seconds=7),
        }
    )


def test_no_activity_is_dispatched_while_held() -> None:
    transition = start(wait_then_task(), {"x": 1}, "i", NOW)
    timer = one(transition.commands, StartTimer)
    held = advance(transition.snapshot, HoldRequested("audit"), at(1))
    assert held.commands == ()
    assert held.snapshot.state.held
    assert outstanding(held.snapshot) == [timer]  # a wait keeps running while held
    fired = advance(held.snapshot, TimerFired(timer.timer_id), at(5))
    assert fired.commands == ()
    assert outstanding(fired.snapshot) == []
    assert fired.snapshot.positions == ["B"]


def test_release_dispatches_the_deferred_work_with_a_fresh_timeout() -> None:
    transition = start(wait_then_task(), {"x": 1}, "i", NOW)
    timer = one(transition.commands, StartTimer)
    held = advance(transition.snapshot, HoldRequested(), at(1))
    fired = advance(held.snapshot, TimerFired(timer.timer_id), at(5))
    released = advance(fired.snapshot, ReleaseRequested(), at(100))
    call = one(released.commands, RunActivity)
    timeout = one(released.commands, StartTimer)
    assert call.position == "B"
    assert call.input == {"x": 1}
    assert timeout.purpose == "task_timeout"
    assert timeout.fire_at == "2024-01-01T00:01:47Z"  # release time + 7 s
    assert not released.snapshot.state.held
    assert as_set(outstanding(released.snapshot)) == as_set(released.commands)
    done = advance(released.snapshot, ActivityCompleted(call.call_id, "ok"), at(101))
    assert finish(done).output == "ok"


def test_deferred_call_cannot_complete_before_release() -> None:
    transition = start(wait_then_task(), {}, "i", NOW)
    timer = one(transition.commands, StartTimer)
    held = advance(transition.snapshot, HoldRequested(), at(1))
    fired = advance(held.snapshot, TimerFired(timer.timer_id), at(5))
    deferred = next(iter(fired.snapshot.state.pending))
    rejected(fired.snapshot, ActivityCompleted(deferred, 1), UnknownCallError)


def test_running_work_reports_back_while_held() -> None:
    definition = flow({"A": task(next="B", end=False), "B": task("second")})
    transition = start(definition, {}, "i", NOW)
    call = one(transition.commands, RunActivity)
    held = advance(transition.snapshot, HoldRequested(), at(1))
    completed = advance(held.snapshot, ActivityCompleted(call.call_id, 1), at(2))
    assert completed.commands == ()
    assert completed.snapshot.positions == ["B"]
    released = advance(completed.snapshot, ReleaseRequested(), at(3))
    assert one(released.commands, RunActivity).activity == "second"


def test_map_items_started_while_held_are_deferred() -> None:
    definition = flow(
        {
            "M": {
                "type": "map",
                "max_concurrency": 1,
                "iterator": {"start_at": "T", "states": {"T": task()}},
                "end": True,
            }
        },
        start_at="M",
    )
    transition = start(definition, [1, 2], "i", NOW)
    first = one(transition.commands, RunActivity)
    held = advance(transition.snapshot, HoldRequested(), at(1))
    completed = advance(held.snapshot, ActivityCompleted(first.call_id, "a"), at(2))
    assert of(completed.commands, RunActivity) == []
    released = advance(completed.snapshot, ReleaseRequested(), at(3))
    second = one(released.commands, RunActivity)
    assert second.input == 2
    done = advance(released.snapshot, ActivityCompleted(second.call_id, "b"), at(4))
    assert finish(done).output == ["a", "b"]


def test_sub_flow_started_while_held_is_deferred() -> None:
    definition = flow(
        {
            "A": {"type": "wait", "seconds": 1, "next": "C"},
            "C": {"type": "sub_flow", "flow": "child", "timeout_seconds": 10, "end": True},
        }
    )
    transition = start(definition, {}, "i", NOW)
    held = advance(transition.snapshot, HoldRequested(), at(0))
    fired = advance(held.snapshot, TimerFired(one(transition.commands, StartTimer).timer_id), NOW)
    assert fired.commands == ()
    released = advance(fired.snapshot, ReleaseRequested(), at(50))
    assert one(released.commands, StartChildFlow).flow == "child"
    assert one(released.commands, StartTimer).fire_at == "2024-01-01T00:01:00Z"


def test_double_hold_and_release_without_hold_are_invalid() -> None:
    transition = start(flow({"A": task()}), {}, "i", NOW)
    rejected(transition.snapshot, ReleaseRequested(), InvalidControlError)
    held = advance(transition.snapshot, HoldRequested(), NOW)
    rejected(held.snapshot, HoldRequested(), InvalidControlError)
    released = advance(held.snapshot, ReleaseRequested(), NOW)
    rejected(released.snapshot, ReleaseRequested(), InvalidControlError)


def test_hold_is_kept_in_the_snapshot() -> None:
    transition = start(flow({"A": task()}), {}, "i", NOW)
    held = advance(transition.snapshot, HoldRequested("why"), NOW)
    moved = decode_snapshot(encode_snapshot(held.snapshot))
    assert moved.state.held
    rejected(moved, HoldRequested(), InvalidControlError)
    assert [e.kind for e in held.snapshot.state.history][-1] == "Held"


# --- cancel --------------------------------------------------------------------------------


def busy_flow() -> FlowDefinition:
    return flow(
        {
            "Par": {
                "type": "parallel",
                "end": True,
                "branches": [
                    {"start_at": "T", "states": {"T": task(timeout_seconds=9)}},
                    {
                        "start_at": "W",
                        "states": {"W": {"type": "wait_for_event", "event": "e", "end": True}},
                    },
                    {
                        "start_at": "C",
                        "states": {"C": {"type": "sub_flow", "flow": "child", "end": True}},
                    },
                ],
            }
        },
        start_at="Par",
        timeout_seconds=3600,
    )


def test_outstanding_lists_exactly_the_work_in_flight() -> None:
    transition = start(busy_flow(), {}, "i", NOW)
    work = outstanding(transition.snapshot)
    assert as_set(work) == as_set(transition.commands)
    assert len(of(work, RunActivity)) == 1
    assert len(of(work, AwaitEvent)) == 1
    assert len(of(work, StartChildFlow)) == 1
    assert sorted(t.purpose for t in of(work, StartTimer)) == ["flow_timeout", "task_timeout"]
    call = one(work, RunActivity)
    after = advance(transition.snapshot, ActivityCompleted(call.call_id, 1), at(1))
    remaining = outstanding(after.snapshot)
    assert as_set(remaining) == as_set(work) - as_set(
        [call, next(t for t in of(work, StartTimer) if t.purpose == "task_timeout")]
    )
    assert as_set(outstanding(decode_snapshot(encode_snapshot(after.snapshot)))) == as_set(
        remaining
    )


def test_cancel_finishes_cancelled_and_cancels_every_piece_of_work() -> None:
    transition = start(busy_flow(), {}, "i", NOW)
    work = outstanding(transition.snapshot)
    cancelled = advance(transition.snapshot, CancelRequested("operator"), at(1))
    assert {c.work_id for c in of(cancelled.commands, CancelWork)} == {
        getattr(w, "call_id", None) or getattr(w, "timer_id", None) or w.wait_id for w in work
    }
    assert finish(cancelled) == FinishFlow(
        status="cancelled", error="States.Cancelled", cause="operator"
    )
    assert cancelled.snapshot.status == "cancelled"
    assert outstanding(cancelled.snapshot) == []
    assert cancelled.snapshot.state.tokens == {}


def test_cancel_while_held_sends_no_cancel_for_undispatched_work() -> None:
    transition = start(wait_then_task(), {}, "i", NOW)
    held = advance(transition.snapshot, HoldRequested(), at(1))
    fired = advance(held.snapshot, TimerFired(one(transition.commands, StartTimer).timer_id), NOW)
    cancelled = advance(fired.snapshot, CancelRequested(), at(6))
    assert cancelled.commands == (FinishFlow(status="cancelled", error="States.Cancelled"),)


# --- flow timeout --------------------------------------------------------------------------


def test_flow_timeout_fails_and_cancels_everything() -> None:
    transition = start(busy_flow(), {}, "i", NOW)
    flow_timer = next(t for t in of(transition.commands, StartTimer) if t.purpose == "flow_timeout")
    assert flow_timer.fire_at == "2024-01-01T01:00:00Z"
    assert flow_timer.position == ""
    timed_out = advance(transition.snapshot, TimerFired(flow_timer.timer_id), at(3600))
    assert len(of(timed_out.commands, CancelWork)) == 4
    assert finish(timed_out).status == "failed"
    assert finish(timed_out).error == "States.Timeout"
    assert outstanding(timed_out.snapshot) == []
    assert timed_out.snapshot.state.frames == {}


def test_flow_timeout_is_cancelled_when_the_flow_ends() -> None:
    definition = flow({"A": task()}, timeout_seconds=60)
    transition = start(definition, {}, "i", NOW)
    flow_timer = one(transition.commands, StartTimer)
    call = one(transition.commands, RunActivity)
    done = advance(transition.snapshot, ActivityCompleted(call.call_id, 1), at(1))
    assert done.commands == (
        CancelWork(work_id=flow_timer.timer_id, work_kind="start_timer"),
        FinishFlow(status="succeeded", output=1),
    )


def test_flow_timeout_fires_even_while_held() -> None:
    definition = flow({"A": task()}, timeout_seconds=60)
    transition = start(definition, {}, "i", NOW)
    flow_timer = next(t for t in of(transition.commands, StartTimer))
    held = advance(transition.snapshot, HoldRequested(), at(1))
    assert finish(advance(held.snapshot, TimerFired(flow_timer.timer_id), at(60))).error == (
        "States.Timeout"
    )


# --- rejected events -----------------------------------------------------------------------


def finished_snapshot() -> Snapshot:
    transition = start(flow({"A": {"type": "pass", "end": True}}), {}, "i", NOW)
    assert transition.snapshot.finished
    return transition.snapshot


@pytest.mark.parametrize(
    "event",
    [
        ActivityCompleted("A~1", 1),
        ActivityFailed("A~1", "E"),
        TimerFired("A~1"),
        EventReceived("e"),
        ChildFinished("A~1", "succeeded"),
        CancelRequested(),
        HoldRequested(),
        ReleaseRequested(),
    ],
    ids=lambda event: event.kind,
)
def test_events_after_finish_are_refused(event: Event) -> None:
    rejected(finished_snapshot(), event, InstanceFinishedError)


def running() -> tuple[Snapshot, dict[str, str]]:
    """A flow waiting for a task (with a timeout), an event and a child."""
    transition = start(busy_flow(), {}, "i", NOW)
    ids = {
        "call": one(transition.commands, RunActivity).call_id,
        "wait": one(transition.commands, AwaitEvent).wait_id,
        "child": one(transition.commands, StartChildFlow).call_id,
        "timeout": next(
            t.timer_id for t in of(transition.commands, StartTimer) if t.purpose == "task_timeout"
        ),
    }
    return transition.snapshot, ids


def completed_once() -> tuple[Snapshot, dict[str, str]]:
    snapshot, ids = running()
    return advance(snapshot, ActivityCompleted(ids["call"], 1), at(1)).snapshot, ids


Case = tuple[Callable[[], tuple[Snapshot, dict[str, str]]], Callable[[dict[str, str]], Event], type]

REJECTED: dict[str, Case] = {
    "unknown call": (running, lambda ids: ActivityCompleted("bogus", 1), UnknownCallError),
    "future call": (running, lambda ids: ActivityCompleted("Par[0]/T~999", 1), UnknownCallError),
    "unknown timer": (running, lambda ids: TimerFired("nope:retry"), UnknownCallError),
    "timer as call": (running, lambda ids: ActivityCompleted(ids["timeout"], 1), UnknownCallError),
    "call as timer": (running, lambda ids: TimerFired(ids["call"]), UnknownCallError),
    "wait as call": (running, lambda ids: ActivityFailed(ids["wait"], "E"), UnknownCallError),
    "child as call": (running, lambda ids: ActivityCompleted(ids["child"], 1), UnknownCallError),
    "call as child": (
        running,
        lambda ids: ChildFinished(ids["call"], "succeeded"),
        UnknownCallError,
    ),
    "no waiter": (running, lambda ids: EventReceived("other", 1), NoWaiterError),
    "release not held": (running, lambda ids: ReleaseRequested(), InvalidControlError),
    "duplicate completion": (
        completed_once,
        lambda ids: ActivityCompleted(ids["call"], 2),
        StaleEventError,
    ),
    "failure after completion": (
        completed_once,
        lambda ids: ActivityFailed(ids["call"], "E"),
        StaleEventError,
    ),
    "cancelled timeout fired": (
        completed_once,
        lambda ids: TimerFired(ids["timeout"]),
        StaleEventError,
    ),
}


@pytest.mark.parametrize("name", list(REJECTED))
def test_rejected_events_leave_the_snapshot_unchanged(name: str) -> None:
    make, event_of, error = REJECTED[name]
    snapshot, ids = make()
    rejected(snapshot, event_of(ids), error, at(2))
    # the same snapshot still takes a valid event afterwards
    assert advance(snapshot, EventReceived("e", "ok"), at(3)).snapshot.seq == snapshot.seq + 1


def test_rejection_messages_name_the_instance_or_the_id() -> None:
    snapshot, ids = completed_once()
    with pytest.raises(StaleEventError, match="already finished"):
        advance(snapshot, ActivityCompleted(ids["call"], 2), NOW)
    with pytest.raises(UnknownCallError, match="bogus"):
        advance(snapshot, ActivityCompleted("bogus", 2), NOW)


# --- values, sequence numbers and history ---------------------------------------------------


def test_advance_never_changes_its_input_snapshot() -> None:
    snapshot, ids = running()
    before = encode_snapshot(snapshot)
    for event in (
        ActivityCompleted(ids["call"], {"big": [1, 2]}),
        EventReceived("e", {"x": 1}),
        ChildFinished(ids["child"], "failed", error="E"),
        HoldRequested(),
        CancelRequested(),
    ):
        advance(snapshot, event, at(1))
        assert encode_snapshot(snapshot) == before


def test_seq_counts_transitions_and_epoch_is_kept() -> None:
    transition = start(wait_then_task(), {}, "i", NOW, epoch=3)
    assert transition.snapshot.seq == 1
    assert transition.snapshot.epoch == 3
    assert transition.snapshot.updated_at == "2024-01-01T00:00:00Z"
    timer = one(transition.commands, StartTimer)
    after = advance(transition.snapshot, TimerFired(timer.timer_id), at(5))
    assert after.snapshot.seq == 2
    assert after.snapshot.epoch == 3
    assert after.snapshot.updated_at == "2024-01-01T00:00:05Z"
    held = advance(after.snapshot, HoldRequested(), at(6))
    assert held.snapshot.seq == 3
    assert held.snapshot.digest == transition.snapshot.digest


def test_now_must_be_aware() -> None:
    definition = flow({"A": task()})
    with pytest.raises(ValueError, match="timezone-aware"):
        start(definition, {}, "i", datetime(2024, 1, 1))
    transition = start(definition, {}, "i", NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        advance(transition.snapshot, HoldRequested(), datetime(2024, 1, 1))


def test_non_utc_now_is_written_as_utc() -> None:
    paris = timezone(timedelta(hours=1))
    transition = start(wait_then_task(), {}, "i", datetime(2024, 1, 1, 1, tzinfo=paris))
    assert transition.snapshot.updated_at == "2024-01-01T00:00:00Z"
    assert one(transition.commands, StartTimer).fire_at == "2024-01-01T00:00:05Z"


@pytest.mark.parametrize("instance_id", ["", "x" * 257])
def test_instance_id_length(instance_id: str) -> None:
    with pytest.raises(ValueError, match="instance id"):
        start(flow({"A": task()}), {}, instance_id, NOW)


def test_parent_link_is_kept() -> None:
    link = ParentLink(instance_id="parent", call_id="C~3")
    transition = start(flow({"A": task()}), {}, "parent/C~3", NOW, parent=link)
    assert transition.snapshot.state.parent == link
    assert decode_snapshot(encode_snapshot(transition.snapshot)).state.parent == link


def test_history_is_bounded() -> None:
    definition = flow(
        {
            "A": {
                "type": "choice",
                "choices": [{"when": {"variable": "$.done", "boolean_equals": True}, "next": "E"}],
                "default": "W",
            },
            "W": {"type": "wait_for_event", "event": "tick", "next": "A"},
            "E": {"type": "succeed"},
        }
    )
    transition = start(definition, {"done": False}, "i", NOW, history_limit=5)
    total = len(transition.snapshot.state.history)
    for n in range(10):
        transition = advance(transition.snapshot, EventReceived("tick", {"done": False}), at(n))
        total += 2  # EventReceived + EventAwaited
        history = transition.snapshot.state.history
        assert len(history) == min(5, total)
        assert transition.snapshot.state.history_dropped == total - len(history)
    assert history[-1].kind == "EventAwaited"
    assert history[-1].seq == transition.snapshot.seq
    assert [e.seq for e in history] == sorted(e.seq for e in history)
