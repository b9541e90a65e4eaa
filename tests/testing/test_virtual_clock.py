"""The runtime on a virtual clock: virtual time, failover re-runs, the event sender."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rustyflower import ActivityRegistry, Snapshot, SnapshotKeys, read_definition
from rustyflower.core.model import parse_definition
from rustyflower.testing import (
    HarnessError,
    ScriptedEvent,
    VirtualClock,
    World,
    at_transitions,
    round_trip,
    run_flow,
)
from tests.conformance.activities import VIRTUAL_DURATIONS, registry


def flow(states: dict[str, Any], start_at: str = "A") -> Any:
    return parse_definition({"name": "harness", "start_at": start_at, "states": states})


def world(**options: Any) -> World:
    return World(registry=registry, durations=VIRTUAL_DURATIONS, **options)


SLOW = flow({"A": {"type": "task", "activity": "slow", "end": True}})


def test_virtual_time_does_not_sleep() -> None:
    result = run_flow(SLOW, {"seconds": 86_400}, world())
    assert result.status == "succeeded"
    assert result.output == {"seconds": 86_400}
    assert result.elapsed_seconds == 86_400


def test_failover_reruns_work_in_flight_with_the_same_key() -> None:
    result = run_flow(SLOW, {"seconds": 5}, world(), cut=lambda seq: seq == 1, failover=True)
    assert result.failovers == 1
    assert result.status == "succeeded"
    first, again = result.calls
    assert first.idempotency_key == again.idempotency_key
    assert first.attempt == again.attempt == 1
    assert result.elapsed_seconds == 5  # the cut happened at 0 s, before anything else


def test_a_sent_event_survives_a_failover_and_is_sent_once() -> None:
    waits = flow({"A": {"type": "wait_for_event", "event": "go", "end": True}})
    events = (ScriptedEvent("go", {"n": 1}, after_seconds=7),)
    result = run_flow(waits, None, world(events=events), cut="every", failover=True)
    assert (result.status, result.output, result.elapsed_seconds) == ("succeeded", {"n": 1}, 7)
    assert result.unheard_events == 0


def test_addressed_to_the_wait() -> None:
    waits = flow({"A": {"type": "wait_for_event", "event": "go", "end": True}})
    events = (ScriptedEvent("go", 1),)
    result = run_flow(waits, None, world(events=events, address_events="wait_id"))
    assert result.output == 1


def test_a_wait_nobody_answers_stalls() -> None:
    waits = flow({"A": {"type": "wait_for_event", "event": "go", "end": True}})
    result = run_flow(waits, None, world())
    assert result.status == "running"
    assert not result.finished


def test_an_endless_flow_hits_max_events() -> None:
    loop = flow(
        {
            "A": {"type": "wait", "seconds": 1, "next": "B"},
            "B": {
                "type": "choice",
                "choices": [{"when": {"variable": "$.stop", "boolean_equals": True}, "next": "C"}],
                "default": "A",
            },
            "C": {"type": "succeed"},
        }
    )
    with pytest.raises(HarnessError, match="more than 50 events"):
        run_flow(loop, {"stop": False}, world(max_events=50))


# --- a task's timeout on the virtual clock: the call's virtual duration decides ----------------


def timed(seconds: int, **task: Any) -> Any:
    return flow(
        {"A": {"type": "task", "activity": "slow", "timeout_seconds": seconds, "end": True, **task}}
    )


def test_a_call_longer_than_its_timeout_times_out_at_the_deadline() -> None:
    result = run_flow(timed(2), {"seconds": 5}, world())
    assert (result.status, result.error) == ("failed", "States.Timeout")
    assert result.elapsed_seconds == 2
    assert result.abandoned_calls == 1  # its completion, due at 5 s, is never delivered
    assert result.stale_events == 0


def test_a_call_within_its_timeout_completes() -> None:
    result = run_flow(timed(5), {"seconds": 2}, world())
    assert (result.status, result.output, result.elapsed_seconds) == (
        "succeeded",
        {"seconds": 2},
        2,
    )
    assert result.abandoned_calls == 0


def test_a_timed_out_call_is_retried_and_abandoned_on_every_attempt() -> None:
    retried = timed(2, retry=[{"errors": ["States.Timeout"], "max_attempts": 2}])
    result = run_flow(retried, {"seconds": 5}, world())
    assert (result.status, result.error) == ("failed", "States.Timeout")
    assert [call.attempt for call in result.calls] == [1, 2, 3]
    assert result.abandoned_calls == 3
    assert result.elapsed_seconds == 2 + 1 + 2 + 2 + 2  # back-off: 1 s, then 2 s
    moved = run_flow(retried, {"seconds": 5}, world(), cut="every", failover=True)
    assert (moved.status, moved.error) == ("failed", "States.Timeout")
    assert {call.idempotency_key for call in moved.calls} == {
        call.idempotency_key for call in result.calls
    }


def test_an_activity_default_timeout_applies_as_a_runner_registers_it() -> None:
    bounded = ActivityRegistry()

    @bounded.activity(timeout_seconds=3)
    def crawl(payload: Any) -> Any:
        return payload

    definition = flow({"A": {"type": "task", "activity": "crawl", "end": True}})
    result = run_flow(definition, {}, World(bounded, durations={"crawl": lambda _: 10}))
    assert (result.status, result.error, result.elapsed_seconds) == ("failed", "States.Timeout", 3)


# --- sub-flows and the face of the kit ----------------------------------------------------------


def test_an_unknown_sub_flow_fails_the_call_as_on_the_redis_runner() -> None:
    parent = flow({"A": {"type": "sub_flow", "flow": "nowhere", "end": True}})
    result = run_flow(parent, {}, world())
    assert (result.status, result.error) == ("failed", "UnknownFlow")
    assert "'nowhere'" in str(result.cause)


def test_a_definition_file_and_a_cut_policy(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(
        "name: f\nstart_at: W\nstates:\n"
        "  W: {type: wait, seconds: 60, next: A}\n"
        "  A: {type: task, activity: succeed, end: true}\n",
        encoding="utf-8",
    )
    seen: list[int] = []

    def transfer(snapshot: Snapshot, keys: SnapshotKeys) -> Snapshot:
        seen.append(snapshot.seq)
        return round_trip(snapshot, keys)

    definition = read_definition(path)
    result = run_flow(definition, {"x": 1}, world(), cut=at_transitions(2), transfer=transfer)
    assert (result.status, result.output, result.elapsed_seconds) == ("succeeded", {"x": 1}, 60)
    assert (seen, result.cuts) == ([2], 1)


def test_the_start_time_goes_to_the_clock() -> None:
    start = datetime(2030, 5, 6, tzinfo=UTC)
    result = run_flow(SLOW, {"seconds": 1}, world(), clock=VirtualClock(start))
    assert result.calls[0].at == start
    with pytest.raises(ValueError, match="give the start time to the clock"):
        run_flow(SLOW, {"seconds": 1}, world(), clock=VirtualClock(start), now=start)
