"""The virtual runtime itself: virtual time, failover re-runs, the event sender."""

from __future__ import annotations

from typing import Any

import pytest

from rustyflower.core.model import parse_definition
from tests.conformance.activities import VIRTUAL_DURATIONS, registry
from tests.harness.virtual_runtime import HarnessError, ScriptedEvent, World, run_flow


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
