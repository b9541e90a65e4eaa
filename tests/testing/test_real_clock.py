"""The in-process runtime on the real clock: activities in threads, timers that sleep.

Task timeouts follow the Redis worker: the engine's task-timeout timer fails the task
with States.Timeout at the deadline; a synchronous call that is still running is
abandoned (its thread runs on, its late result is dropped), an async one is stopped.
Activities that must overlap meet at a barrier, so the tests do not depend on how fast
this machine is.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from rustyflower import ActivityRegistry, current_call
from rustyflower.core.model import parse_definition
from rustyflower.testing import (
    CallCrashedError,
    RealClock,
    ScriptedEvent,
    World,
    run_flow,
)

registry = ActivityRegistry()
RELEASE = threading.Event()
"""Lets the calls the tests abandon return (set after each test)."""
MEETING = threading.Barrier(2, timeout=1)


@registry.activity
def stuck_on_first_attempt(payload: Any) -> Any:
    if current_call().attempt == 1:
        RELEASE.wait(30)  # far past the 1 s timeout: the call is abandoned
        return {"late": True}
    return {"attempt": current_call().attempt}


@registry.activity
def stuck(payload: Any) -> Any:
    RELEASE.wait(30)
    return {"late": True}


@registry.activity
async def stuck_async(payload: Any) -> Any:
    await asyncio.sleep(30)
    return {"late": True}


@registry.activity
def meet(payload: Any) -> Any:
    MEETING.wait()  # raises BrokenBarrierError unless the other branch runs at the same time
    return payload


@registry.activity
def echo(payload: Any) -> Any:
    return payload


@registry.activity
def leave(payload: Any) -> Any:
    raise SystemExit(3)


@pytest.fixture(autouse=True)
def release_abandoned_calls() -> Iterator[None]:
    RELEASE.clear()
    MEETING.reset()
    yield
    RELEASE.set()


def flow(states: dict[str, Any], start_at: str = "A") -> Any:
    return parse_definition({"name": "real", "start_at": start_at, "states": states})


def task(activity: str, **more: Any) -> dict[str, Any]:
    return {"type": "task", "activity": activity, "end": True, **more}


def run(definition: Any, flow_input: Any = None, **options: Any) -> Any:
    world = World(registry, events=options.pop("events", ()))
    clock = RealClock(**options.pop("clock", {}))
    began = time.monotonic()
    result = run_flow(definition, flow_input, world, clock=clock, **options)
    return result, time.monotonic() - began


def test_a_sync_call_past_its_timeout_fails_with_states_timeout_at_the_deadline() -> None:
    result, seconds = run(flow({"A": task("stuck", timeout_seconds=1)}))
    assert (result.status, result.error) == ("failed", "States.Timeout")
    assert "exceeded its timeout_seconds" in result.cause
    assert 1 <= seconds < 5  # at the deadline, not when the call returns (30 s)
    assert 1 <= result.elapsed_seconds < 5
    assert result.abandoned_calls == 1


def test_the_late_result_of_an_abandoned_call_is_dropped_and_the_retry_succeeds() -> None:
    retried = flow(
        {
            "A": task(
                "stuck_on_first_attempt",
                timeout_seconds=1,
                retry=[{"errors": ["States.Timeout"], "interval_seconds": 1}],
                next="B",
                end=False,
            ),
            "B": {"type": "wait", "seconds": 1, "next": "C"},
            "C": {"type": "pass", "end": True},
        }
    )

    def release_during_the_wait(snapshot: Any, event: Any, commands: Any) -> None:
        if "B" in snapshot.positions:
            RELEASE.set()  # the first call returns now, while the flow still runs

    result, _seconds = run(retried, on_transition=release_during_the_wait)
    assert (result.status, result.output) == ("succeeded", {"attempt": 2})
    assert [call.attempt for call in result.calls] == [1, 2]
    assert result.abandoned_calls == 1
    assert result.stale_events == 0  # dropped by the runtime, never offered to the engine


def test_an_async_call_is_stopped_at_its_timeout() -> None:
    result, seconds = run(flow({"A": task("stuck_async", timeout_seconds=1)}))
    assert (result.status, result.error) == ("failed", "States.Timeout")
    assert seconds < 5


def test_branches_run_their_calls_at_the_same_time() -> None:
    both = flow(
        {
            "A": {
                "type": "parallel",
                "branches": [
                    {"start_at": "X", "states": {"X": task("meet")}},
                    {"start_at": "Y", "states": {"Y": task("meet")}},
                ],
                "end": True,
            }
        }
    )
    result, _seconds = run(both, {"n": 1})
    assert (result.status, result.output) == ("succeeded", [{"n": 1}, {"n": 1}])
    one_at_a_time, _seconds = run(both, {"n": 1}, clock={"concurrency": 1})
    assert (one_at_a_time.status, one_at_a_time.error) == ("failed", "BrokenBarrierError")


def test_timers_and_scripted_events_take_real_time() -> None:
    waits = flow(
        {
            "A": {"type": "wait", "seconds": 1, "next": "B"},
            "B": {"type": "wait_for_event", "event": "go", "end": True},
        }
    )
    events = (ScriptedEvent("go", {"ok": True}, after_seconds=0.3),)
    result, seconds = run(waits, events=events)
    assert (result.status, result.output) == ("succeeded", {"ok": True})
    assert seconds >= 1.3
    assert result.elapsed_seconds >= 1.3


def test_a_wait_longer_than_the_clock_waits_leaves_the_instance_waiting() -> None:
    waits = flow({"A": {"type": "wait", "seconds": 3600, "end": True}})
    result, seconds = run(waits, clock={"max_wait_seconds": 5})
    assert result.status == "running"
    assert result.snapshot.positions == ["A"]
    assert seconds < 5


def test_cut_and_failover_on_the_real_clock() -> None:
    chain = flow(
        {
            "A": task("echo", next="B", end=False),
            "B": {"type": "wait", "seconds": 1, "next": "C"},
            "C": task("echo"),
        }
    )
    result, _seconds = run(chain, {"v": 1}, cut="every", failover=True)
    assert (result.status, result.output) == ("succeeded", {"v": 1})
    assert result.failovers == result.cuts == result.transitions - 1


def test_a_call_that_raises_past_perform_is_not_lost() -> None:
    with pytest.raises(CallCrashedError, match="SystemExit"):
        run(flow({"A": task("leave")}))
