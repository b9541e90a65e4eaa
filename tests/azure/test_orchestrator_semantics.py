"""Where Durable Functions and the in-process engine could differ, and what the app does.

Each test pins one entry of docs/azure.md ("Semantic differences").
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import pytest

from functions_azure import orchestration
from functions_azure.function_app import app
from functions_azure.payloads import OrchestrationInput, snapshot_from_text, snapshot_text
from rustyflower.adapters.azure.ids import durable_instance_id
from rustyflower.adapters.localcloud.durable_client import LocalDurableClient
from rustyflower.adapters.localcloud.durable_history import (
    EPOCH,
    TIMER_CREATED,
    NonDeterminismError,
)
from rustyflower.adapters.localcloud.durable_host import DurableHost
from rustyflower.core.contract import ControlEvent
from rustyflower.core.engine import (
    ActivityCompleted,
    EventReceived,
    ParentLink,
    RunActivity,
    StartChildFlow,
    advance,
    start,
)
from rustyflower.core.errors import NoWaiterError
from rustyflower.core.model import FlowDefinition, parse_definition
from rustyflower.core.snapshot.document import encode_snapshot
from tests.azure.support import (
    KEYS,
    conformance_durations,
    continue_in_azure,
    cut_virtual,
    post_snapshot,
    start_body,
)
from tests.conformance.corpus import load_cases

pytestmark = pytest.mark.usefixtures("azure_env")


def flow(name: str, states: dict[str, Any], start_at: str) -> FlowDefinition:
    return parse_definition({"name": name, "start_at": start_at, "states": states})


def run_flow(
    definition: FlowDefinition,
    data: Any = None,
    *,
    instance_id: str = "pinned-1",
    events: tuple[tuple[float, str, Any], ...] = (),
    host: DurableHost | None = None,
    flows: list[FlowDefinition] | None = None,
    until: float | None = None,
) -> tuple[DurableHost, Any]:
    """Start ``definition`` in the app through the starter and run it on the replay host."""
    host = host or DurableHost(app, durations=conformance_durations)
    client = LocalDurableClient(host)
    snapshot = start(definition, data, instance_id, host.clock).snapshot
    body = start_body(snapshot, [f.document() for f in flows or []])
    assert post_snapshot(client, body).status_code == 202
    for seconds, name, payload in events:
        host.raise_event(instance_id, name, payload, at=EPOCH + timedelta(seconds=seconds))
    host.run(until=None if until is None else EPOCH + timedelta(seconds=until))
    return host, host.instances[instance_id]


def activity_runs(host: DurableHost, name: str = "rustyflower_activity") -> list[Any]:
    return [run for run in host.activity_runs if run.function == name]


# --- external events --------------------------------------------------------------------------

WORK_THEN_ASK = flow(
    "work_then_ask",
    {
        "Work": {"type": "task", "activity": "slow", "parameters": {"seconds": 5}, "next": "Ask"},
        "Ask": {
            "type": "wait_for_event",
            "event": "go",
            "timeout_seconds": 10,
            "on_timeout": "Late",
            "end": True,
        },
        "Late": {"type": "pass", "result": "no event", "end": True},
    },
    "Work",
)


def test_an_event_raised_before_its_wait_is_refused_as_in_process() -> None:
    """Durable buffers an early event; the engine refuses it: the app refuses it too."""
    begun = start(WORK_THEN_ASK, {}, "inproc", EPOCH).snapshot
    with pytest.raises(NoWaiterError):
        advance(begun, EventReceived("go", "early"), EPOCH + timedelta(seconds=1))
    _host, instance = run_flow(WORK_THEN_ASK, {}, events=((1, "go", "early"),))
    assert instance.output["status"] == "succeeded"
    assert instance.output["output"] == "no event"
    assert instance.output["refused_events"] == 1


def test_an_event_raised_in_time_is_delivered() -> None:
    _host, instance = run_flow(WORK_THEN_ASK, {}, events=((7, "go", "on time"),))
    assert instance.output["output"] == "on time"
    assert instance.output["refused_events"] == 0


TWO_ASKS = flow(
    "two_asks",
    {
        "AskA": {"type": "wait_for_event", "event": "a", "result_path": "$.a", "next": "AskB"},
        "AskB": {"type": "wait_for_event", "event": "b", "result_path": "$.b", "end": True},
    },
    "AskA",
)


def test_an_event_in_the_batch_of_a_continue_as_new_is_not_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Events after the continue-as-new point of a batch would be dropped: the app waits."""
    monkeypatch.setenv("RUSTYFLOWER_CONTINUE_AS_NEW_AFTER", "1")
    events = ((1, "a", 1), (1, "b", 2))
    _host, instance = run_flow(TWO_ASKS, {}, events=events)
    assert instance.output["status"] == "succeeded"
    assert instance.output["output"] == {"a": 1, "b": 2}
    # without the guard the SDK stops at continue_as_new and "b" goes with the old history
    monkeypatch.setattr(orchestration._Orchestration, "unconsumed_in_history", lambda _self: False)
    _host, instance = run_flow(TWO_ASKS, {}, events=events, instance_id="pinned-2")
    assert instance.status == "Running"
    assert instance.custom_status["positions"] == ["AskB"]


def test_an_event_raised_between_generations_reaches_the_new_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RUSTYFLOWER_CONTINUE_AS_NEW_AFTER", "1")
    _host, instance = run_flow(TWO_ASKS, {}, events=((1, "a", 1), (2, "b", 2)))
    assert instance.generation >= 1
    assert instance.output["output"] == {"a": 1, "b": 2}


def test_same_name_waits_take_events_oldest_first() -> None:
    """The SDK hands an event to its newest waiter; the app keeps one listener per name."""
    case = next(c for c in load_cases() if c.id == "event_waiters::oldest_waiter_first")
    run = continue_in_azure(case, cut_virtual(case, 1))
    assert run.result["output"] == ["second", "first"]


def test_control_events_hold_release_and_cancel() -> None:
    host, instance = run_flow(TWO_ASKS, {}, until=1)
    host.raise_event("pinned-1", ControlEvent.HOLD, {"reason": "maintenance"})
    host.run(until=host.clock + timedelta(seconds=1))
    assert instance.custom_status["held"] is True
    host.raise_event("pinned-1", ControlEvent.HOLD, None)  # already held: refused
    host.raise_event("pinned-1", ControlEvent.RELEASE, None)
    host.run(until=host.clock + timedelta(seconds=1))
    assert instance.custom_status["held"] is False
    assert instance.custom_status["refused_events"] == 1
    host.raise_event("pinned-1", ControlEvent.CANCEL, "operator")
    host.run()
    assert instance.output["status"] == "cancelled"
    assert instance.output["error"] == "States.Cancelled"
    assert instance.output["cause"] == "operator"


# --- activities, timers, children -------------------------------------------------------------

SLOW_WITH_TICKS = flow(
    "slow_with_ticks",
    {
        "Both": {
            "type": "parallel",
            "branches": [
                {
                    "start_at": "Slow",
                    "states": {
                        "Slow": {
                            "type": "task",
                            "activity": "slow",
                            "parameters": {"seconds": 10},
                            "end": True,
                        }
                    },
                },
                {
                    "start_at": "Tick1",
                    "states": {
                        "Tick1": {"type": "wait", "seconds": 1, "next": "Tick2"},
                        "Tick2": {"type": "wait", "seconds": 1, "next": "Tick3"},
                        "Tick3": {"type": "wait", "seconds": 1, "end": True},
                    },
                },
            ],
            "end": True,
        }
    },
    "Both",
)


def test_an_activity_in_flight_holds_continue_as_new_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUSTYFLOWER_CONTINUE_AS_NEW_AFTER", "2")
    host, instance = run_flow(SLOW_WITH_TICKS, {})
    assert instance.output["status"] == "succeeded"
    assert len(activity_runs(host)) == 1
    assert instance.generation == 0


def test_far_past_the_limit_an_activity_runs_again_with_its_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At twice the limit the generation ends anyway: the activity is called again."""
    monkeypatch.setenv("RUSTYFLOWER_CONTINUE_AS_NEW_AFTER", "1")
    host, instance = run_flow(SLOW_WITH_TICKS, {})
    assert instance.output["status"] == "succeeded"
    runs = activity_runs(host)
    assert len(runs) >= 2
    assert {run.input["command"]["idempotency_key"] for run in runs} == {
        runs[0].input["command"]["idempotency_key"]
    }
    assert instance.generation >= 1
    assert instance.finished_at == EPOCH + timedelta(seconds=10 + 2)  # re-run from t=2


def test_a_child_is_cancelled_when_its_parent_stops_waiting() -> None:
    """The engine cancels the child call on timeout; the app cancels the child flow."""
    case = next(c for c in load_cases() if c.id == "sub_flow::child_too_slow")
    run = continue_in_azure(case, cut_virtual(case, 1))
    assert run.result["output"] == {"too_slow": "States.Timeout"}
    children = [i for i in run.host.instances.values() if i.parent is not None]
    assert len(children) == 1
    assert children[0].output["status"] == "cancelled"
    assert activity_runs(run.host, "rustyflower_signal")


def test_an_activity_function_crash_is_States_TaskFailed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUSTYFLOWER_ACTIVITIES", "no_such_module_here")
    _host, instance = run_flow(WORK_THEN_ASK, {})
    assert instance.status == "Completed"  # the flow failed; the orchestration did not
    assert instance.output["status"] == "failed"
    assert instance.output["error"] == "States.TaskFailed"
    assert "no_such_module_here" in instance.output["cause"]


def test_long_timers_are_split_by_the_sdk() -> None:
    """Replay schema V3 with the Azure Storage limits: a 10-day wait is several timers."""
    ten_days = flow("ten_days", {"Rest": {"type": "wait", "seconds": 864_000, "end": True}}, "Rest")
    host = DurableHost(
        app,
        durations=conformance_durations,
        schema=2,
        long_timers=("6.00:00:00", "3.00:00:00"),
    )
    host, instance = run_flow(ten_days, {}, host=host)
    assert instance.output["status"] == "succeeded"
    assert instance.finished_at == EPOCH + timedelta(days=10)
    timers = [e for e in instance.history if e["EventType"] == TIMER_CREATED]
    assert len(timers) >= 3
    host.verify_determinism()


def test_an_unknown_sub_flow_fails_the_call_with_UnknownFlow() -> None:
    caller = flow("caller", {"Call": {"type": "sub_flow", "flow": "ghost", "end": True}}, "Call")
    host = DurableHost(app, durations=conformance_durations)
    snapshot = start(caller, {}, "no-bundle", EPOCH).snapshot
    host.start_new(
        "rustyflower_orchestrator",
        "no-bundle",
        OrchestrationInput(snapshot_text(snapshot)).to_json(),
    )
    host.run()
    result = host.instances["no-bundle"].output
    assert (result["status"], result["error"]) == ("failed", "UnknownFlow")


CHILD = flow(
    "child",
    {
        "Work": {"type": "task", "activity": "echo", "next": "Rest"},
        "Rest": {"type": "wait", "seconds": 100, "end": True},
    },
    "Work",
)
PARENT = flow("parent", {"Call": {"type": "sub_flow", "flow": "child", "end": True}}, "Call")


def test_a_child_snapshot_continues_the_child_where_it_stood() -> None:
    parent = start(PARENT, {"x": 1}, "family", EPOCH)
    command = parent.commands[0]
    assert isinstance(command, StartChildFlow)
    child = start(
        CHILD,
        command.input,
        command.child_instance_id,
        EPOCH,
        parent=ParentLink("family", command.call_id),
    )
    call = child.commands[0]
    assert isinstance(call, RunActivity)
    at_rest = advance(child.snapshot, ActivityCompleted(call.call_id, {"x": 1}), EPOCH).snapshot
    host = DurableHost(app, durations=conformance_durations, now=EPOCH + timedelta(seconds=30))
    client = LocalDurableClient(host)
    body = start_body(parent.snapshot, [CHILD.document()], [encode_snapshot(at_rest, KEYS)])
    assert post_snapshot(client, body).status_code == 202
    host.run()
    result = host.instances["family"].output
    assert result["status"] == "succeeded" and result["output"] == {"x": 1}
    assert activity_runs(host) == []  # the child's task ran before the failover
    assert host.instances["family"].finished_at == EPOCH + timedelta(seconds=100)


def test_without_its_snapshot_a_child_starts_again_with_the_same_keys() -> None:
    parent = start(PARENT, {"x": 1}, "family", EPOCH)
    host = DurableHost(app, durations=conformance_durations, now=EPOCH + timedelta(seconds=30))
    client = LocalDurableClient(host)
    assert post_snapshot(client, start_body(parent.snapshot, [CHILD.document()])).status_code == 202
    host.run()
    runs = activity_runs(host)
    assert [r.input["command"]["idempotency_key"] for r in runs] == ["family/Call@1:Work:1"]
    assert host.instances["family"].finished_at == EPOCH + timedelta(seconds=130)


TWINS = flow(
    "twins",
    {
        "Fork": {
            "type": "parallel",
            "branches": [
                {
                    "start_at": "Slow",
                    "states": {
                        "Slow": {
                            "type": "task",
                            "activity": "slow",
                            "parameters": {"seconds": 5, "x": 1},
                            "next": "CallLeft",
                        },
                        "CallLeft": {"type": "sub_flow", "flow": "child", "end": True},
                    },
                },
                {
                    "start_at": "Quick",
                    "states": {
                        "Quick": {"type": "task", "activity": "echo", "next": "CallRight"},
                        "CallRight": {"type": "sub_flow", "flow": "child", "end": True},
                    },
                },
            ],
            "end": True,
        }
    },
    "Fork",
)


def test_a_child_the_site_started_in_the_replication_gap_is_started_under_its_id() -> None:
    """The site started both children after the snapshot Azure continues from, the slow
    branch's first; in Azure the quick branch gets there first. Named by call number, the
    children would swap ids (each started under the other's); named by position and
    attempt, each is the child the site started."""
    began = start(TWINS, {"x": 1}, "twins-1", EPOCH)
    slow, quick = (c for c in began.commands if isinstance(c, RunActivity))
    assert (slow.activity, quick.activity) == ("slow", "echo")
    site = advance(began.snapshot, ActivityCompleted(slow.call_id, {"x": 1}), EPOCH)
    left = next(c for c in site.commands if isinstance(c, StartChildFlow))
    site = advance(site.snapshot, ActivityCompleted(quick.call_id, {"x": 1}), EPOCH)
    right = next(c for c in site.commands if isinstance(c, StartChildFlow))
    assert (left.position, right.position) == ("Fork[0]/CallLeft", "Fork[1]/CallRight")

    host = DurableHost(app, durations=conformance_durations, now=EPOCH + timedelta(seconds=30))
    client = LocalDurableClient(host)
    body = start_body(began.snapshot, [CHILD.document()])
    assert post_snapshot(client, body).status_code == 202
    host.run()
    assert host.instances["twins-1"].output["status"] == "succeeded"
    children = {
        instance_id: instance.input
        for instance_id, instance in host.instances.items()
        if instance_id != "twins-1"
    }
    by_id = {
        durable_instance_id(left.child_instance_id): left,
        durable_instance_id(right.child_instance_id): right,
    }
    assert set(children) == set(by_id)
    for durable_id, command in by_id.items():
        child = OrchestrationInput.from_json(json.loads(children[durable_id] or "null"))
        assert snapshot_from_text(child.snapshot).instance_id == command.child_instance_id


# --- determinism ------------------------------------------------------------------------------


def test_the_harness_catches_a_non_deterministic_orchestrator() -> None:
    """The replay check is real: an orchestrator that changes its mind is caught."""
    flaky_app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    calls = {"n": 0}

    @flaky_app.orchestration_trigger(context_name="context")
    def moody(context: df.DurableOrchestrationContext) -> Any:
        calls["n"] += 1
        yield context.call_activity("echo_activity", calls["n"])
        yield context.call_activity("echo_activity", 2)
        return "done"

    @flaky_app.activity_trigger(input_name="value")
    def echo_activity(value: Any) -> Any:
        return value

    host = DurableHost(flaky_app)
    host.start_new("moody", "moody-1", None)
    with pytest.raises(NonDeterminismError):
        host.run()


def test_a_finished_history_replays_to_the_same_actions() -> None:
    case = next(c for c in load_cases() if c.id == "nested::three_customers")
    run = continue_in_azure(case, cut_virtual(case, 1))
    assert run.host.verify_determinism() >= len(run.instance.episodes)
    # and the custom status is plain JSON a dashboard can read
    assert json.loads(json.dumps(run.instance.custom_status))["status"] == "succeeded"


def test_a_parent_does_not_continue_as_new_while_a_child_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A new generation could not re-attach to a running sub-orchestration: it waits."""
    monkeypatch.setenv("RUSTYFLOWER_CONTINUE_AS_NEW_AFTER", "1")
    case = next(c for c in load_cases() if c.id == "sub_flow::one_child_per_item")
    run = continue_in_azure(case, cut_virtual(case, 1))
    assert run.result["output"] == [{"y": 11}, {"y": 12}, {"y": 13}]
    children = [i for i in run.host.instances.values() if i.parent]
    assert len(children) == 3 and all(c.status == "Completed" for c in children)
    # the parent continued only between children: when the next child had been issued by
    # the engine but not yet started, so the new generation started it (once)
    assert run.instance.generation >= 1
    assert all(c.parent[1] != 1 for c in children[1:])  # started by later executions
