"""Snapshot -> execution input, execution names, the digest check and the Lambda contract."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rustyflower.adapters.aws import (
    DigestMismatchError,
    ResumeError,
    check_digest,
    compile_flow,
    deployed_digest,
    execution_input,
    execution_name,
    fresh_input,
)
from rustyflower.adapters.aws.contract import (
    PayloadError,
    activity_call,
    render_scope,
    scope_value,
    token_request,
)
from rustyflower.adapters.aws.resume import digest_from_comment
from rustyflower.core.engine import (
    ActivityCompleted,
    ActivityFailed,
    HoldRequested,
    RunActivity,
    Snapshot,
    StartChildFlow,
    advance,
    start,
)
from rustyflower.core.model import FlowDefinition, parse_definition
from tests.aws.test_compiler_kit import ACTIVITY_ARN, TOKEN_ARN

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def flow(states: dict[str, Any], **extra: Any) -> FlowDefinition:
    start_at = extra.pop("start_at", next(iter(states)))
    return parse_definition({"name": "f", "start_at": start_at, "states": states, **extra})


def calls(commands: Any) -> list[RunActivity]:
    return [command for command in commands if isinstance(command, RunActivity)]


# --- fresh input, names, digests ------------------------------------------------------------


def test_fresh_input() -> None:
    assert fresh_input("order-1", {"x": 1}, epoch=3) == {
        "rf": {"format": 1, "instance_id": "order-1", "epoch": 3, "resume": None},
        "input": {"x": 1},
    }
    with pytest.raises(ValueError, match="instance id"):
        fresh_input("", {})


@pytest.mark.parametrize(
    "instance_id",
    ["order-1", "a b/c:d#e~f", "x" * 300, "ünïcødé", "---", "parent/call~7/child~2"],
)
def test_execution_names_are_valid_and_deterministic(instance_id: str) -> None:
    name = execution_name(instance_id, 4)
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,80}", name)
    assert execution_name(instance_id, 4) == name
    assert execution_name(instance_id, 5) != name
    assert execution_name(instance_id + "x", 4) != name


def test_execution_names_tell_similar_ids_apart() -> None:
    # the readable part is the same, the hash is not
    assert execution_name("a/b", 0) != execution_name("a:b", 0)


def test_digest_check() -> None:
    definition = flow({"A": {"type": "task", "activity": "a", "end": True}})
    snapshot = start(definition, {}, "i-1", T0).snapshot
    document = compile_flow(definition, activity_function_arn=ACTIVITY_ARN)
    digest = deployed_digest(document)
    assert digest == snapshot.digest
    assert deployed_digest(json.dumps(document)) == digest
    assert deployed_digest({"definition": json.dumps(document)}) == digest
    check_digest(snapshot, digest)
    other = flow({"A": {"type": "task", "activity": "b", "end": True}})
    other_digest = deployed_digest(compile_flow(other, activity_function_arn=ACTIVITY_ARN))
    with pytest.raises(DigestMismatchError) as refused:
        check_digest(snapshot, other_digest)
    message = str(refused.value)
    assert "'f@1'" in message and snapshot.digest in message and str(other_digest) in message
    with pytest.raises(DigestMismatchError, match="no RustyFlower digest"):
        check_digest(snapshot, deployed_digest({"StartAt": "A", "States": {}}))
    assert digest_from_comment(None) is None
    assert deployed_digest("not json") is None


# --- refusals -------------------------------------------------------------------------------------


def test_finished_and_held_snapshots_are_refused() -> None:
    definition = flow({"A": {"type": "task", "activity": "a", "end": True}})
    first = start(definition, {}, "i-1", T0)
    call = calls(first.commands)[0]
    done = advance(first.snapshot, ActivityCompleted(call.call_id, 1), at(1)).snapshot
    with pytest.raises(ResumeError, match="already succeeded"):
        execution_input(done, now=at(2))
    held = advance(first.snapshot, HoldRequested("maintenance"), at(1)).snapshot
    with pytest.raises(ResumeError, match="held"):
        execution_input(held, now=at(2))


def test_an_input_too_large_for_step_functions_is_refused() -> None:
    definition = flow({"W": {"type": "wait", "seconds": 60, "end": True}})
    snapshot = start(definition, {"blob": "x" * 200_000}, "i-1", T0).snapshot
    with pytest.raises(ResumeError, match="at most 262144"):
        execution_input(snapshot, now=at(1))


# --- nodes ----------------------------------------------------------------------------------------


def test_task_in_flight_keeps_its_idempotency_key() -> None:
    definition = flow(
        {"Charge": {"type": "task", "activity": "charge", "timeout_seconds": 30, "end": True}}
    )
    transition = start(definition, {"total": 5}, "order-7", T0, epoch=2)
    call = calls(transition.commands)[0]
    document = execution_input(transition.snapshot, now=at(10))
    rf = document["rf"]
    assert rf["instance_id"] == "order-7"
    assert rf["epoch"] == 2
    assert rf["digest"] == transition.snapshot.digest
    assert rf["seq"] == transition.snapshot.seq
    assert document["input"] == {"total": 5}
    node = rf["resume"]
    assert node["route"] == "Charge~resume"
    assert node["data"] == {"total": 5}
    assert node["call"] == {"attempt": 1, "tag": "1", "timeout": 20, "positional_key": True}
    # the payload the resume entry sends gives the Lambda the engine's key
    payload = {
        "activity": "charge",
        "input": node["data"],
        "instance_id": rf["instance_id"],
        "attempt": node["call"]["attempt"],
        "call": {
            "scope": None,
            "state": "Charge",
            "tag": node["call"]["tag"],
            "positional_key": node["call"]["positional_key"],
        },
    }
    assert activity_call(payload).idempotency_key == call.idempotency_key


def test_retry_waiting_resumes_with_the_next_attempt_and_the_counters() -> None:
    definition = flow(
        {
            "T": {
                "type": "task",
                "activity": "flaky",
                "retry": [
                    {"errors": ["Flaky"], "interval_seconds": 2, "max_attempts": 3},
                    {"errors": ["States.ALL"], "interval_seconds": 1, "max_attempts": 1},
                ],
                "end": True,
            }
        }
    )
    first = start(definition, {}, "i-1", T0)
    failed = advance(
        first.snapshot, ActivityFailed(calls(first.commands)[0].call_id, "Flaky"), at(0.5)
    )
    node = execution_input(failed.snapshot, now=at(1))["rf"]["resume"]
    assert node["route"] == "T~delay"
    assert node["until"] == "2024-01-01T00:00:03Z"  # 2.5 s, rounded up to the second
    assert node["call"]["attempt"] == 2
    assert node["used"] == [1, 0]
    assert node["limit"] == [3, 1]
    assert node["delays"] == [[0, 4, 8], [1]]


def test_wait_resumes_until_its_absolute_end() -> None:
    definition = flow({"W": {"type": "wait", "seconds": 60, "end": True}})
    snapshot = start(definition, {"a": 1}, "i-1", at(0.25)).snapshot
    node = execution_input(snapshot, now=at(50))["rf"]["resume"]
    assert node == {"route": "W~resume", "data": {"a": 1}, "until": "2024-01-01T00:01:01Z"}


def test_event_wait_keeps_its_wait_id_and_the_time_left() -> None:
    definition = flow(
        {"E": {"type": "wait_for_event", "event": "go", "timeout_seconds": 100, "end": True}}
    )
    snapshot = start(definition, {}, "i-1", T0).snapshot
    node = execution_input(snapshot, now=at(70))["rf"]["resume"]
    assert node["route"] == "E~resume"
    assert node["timeout"] == 30
    wait_id = next(iter(p.id for p in snapshot.state.pending.values() if p.purpose == "event"))
    payload = {
        "kind": "event",
        "instance_id": "i-1",
        "event": "go",
        "task_token": "token",
        "call": {"scope": None, "state": "E", "tag": node["tag"]},
        "since": node["since"],
        "order": node["order"],
    }
    request = token_request(payload)
    assert request.wait_id == wait_id
    assert request.since == "2024-01-01T00:00:00Z"
    # a deadline already past still gives ASL a valid (smallest) timeout
    assert execution_input(snapshot, now=at(500))["rf"]["resume"]["timeout"] == 1


def test_flow_deadline_becomes_the_time_left() -> None:
    definition = flow({"W": {"type": "wait", "seconds": 60, "end": True}}, timeout_seconds=90)
    snapshot = start(definition, {}, "i-1", T0).snapshot
    rf = execution_input(snapshot, now=at(30.5))["rf"]
    assert rf["deadline"] == "2024-01-01T00:01:30Z"
    assert rf["timeout"] == 60


def test_parallel_uses_finished_results_and_resumes_the_rest() -> None:
    definition = flow(
        {
            "Fork": {
                "type": "parallel",
                "branches": [
                    {
                        "start_at": "A",
                        "states": {"A": {"type": "task", "activity": "a", "end": True}},
                    },
                    {
                        "start_at": "B",
                        "states": {"B": {"type": "task", "activity": "b", "end": True}},
                    },
                ],
                "end": True,
            }
        }
    )
    first = start(definition, {"x": 1}, "i-1", T0)
    by_activity = {call.activity: call for call in calls(first.commands)}
    after_a = advance(first.snapshot, ActivityCompleted(by_activity["a"].call_id, "A!"), at(1))
    node = execution_input(after_a.snapshot, now=at(2))["rf"]["resume"]
    assert node["route"] == "Fork~resume"
    assert node["data"] == {"x": 1}
    done, running = node["branches"]
    assert done == {"route": "rf:done", "data": "A!"}
    assert running["route"] == "Fork~r[1]/B~resume"
    assert running["call"]["tag"] == by_activity["b"].call_id.rpartition("~")[2]


def test_map_items_done_running_and_not_started() -> None:
    definition = flow(
        {
            "Each": {
                "type": "map",
                "max_concurrency": 2,
                "iterator": {
                    "start_at": "T",
                    "states": {"T": {"type": "task", "activity": "t", "end": True}},
                },
                "end": True,
            }
        }
    )
    first = start(definition, [10, 20, 30, 40], "i-1", T0)
    call_0 = calls(first.commands)[0]
    after = advance(first.snapshot, ActivityCompleted(call_0.call_id, "ten"), at(1))
    node = execution_input(after.snapshot, now=at(2))["rf"]["resume"]
    items = node["items"]
    assert items[0] == {"route": "rf:done", "data": "ten", "item": 10}
    assert items[1]["route"] == "Each~r[*]/T~resume" and items[1]["item"] == 20
    assert items[2]["route"] == "Each~r[*]/T~resume" and items[2]["item"] == 30
    assert items[3] == {"route": "rf:start", "item": 40}


def test_sub_flow_in_flight_names_its_child() -> None:
    child = parse_definition(
        {
            "name": "child",
            "start_at": "W",
            "states": {"W": {"type": "wait", "seconds": 9, "end": True}},
        }
    )
    parent = flow({"Call": {"type": "sub_flow", "flow": "child", "end": True}})
    transition = start(parent, {"x": 1}, "p-1", T0, epoch=3)
    command = next(c for c in transition.commands if isinstance(c, StartChildFlow))
    node = execution_input(transition.snapshot, now=at(1))["rf"]["resume"]
    assert node["route"] == "Call~resume"
    assert command.child_instance_id == "p-1/Call@1"
    assert node["child"] == {
        "id": command.child_instance_id,
        "name": execution_name(command.child_instance_id, 3),
        "input": fresh_input(command.child_instance_id, {"x": 1}, epoch=3),
        "attempt": 1,
        "position": "Call",
    }
    # given the child's own snapshot, the child continues where it stands
    child_snapshot = start(child, {"x": 1}, command.child_instance_id, T0).snapshot
    node = execution_input(
        transition.snapshot, now=at(1), children={command.child_instance_id: child_snapshot}
    )["rf"]["resume"]
    assert node["child"]["input"]["rf"]["resume"]["route"] == "W~resume"


def test_a_snapshot_from_before_positional_child_ids_keeps_its_child() -> None:
    """Its command names the child by its call (``parent/Call~1``): the continuation
    starts (or re-attaches to) that child, not one under the positional id."""
    parent = flow({"Call": {"type": "sub_flow", "flow": "child", "end": True}})
    transition = start(parent, {"x": 1}, "p-1", T0, epoch=3)
    snapshot = transition.snapshot
    (entry,) = snapshot.state.pending.values()
    assert isinstance(entry.command, StartChildFlow)
    old = replace(entry.command, child_instance_id="p-1/Call~1")
    snapshot = replace(
        snapshot,
        state=replace(snapshot.state, pending={entry.id: replace(entry, command=old)}),
    )
    child = execution_input(snapshot, now=at(1))["rf"]["resume"]["child"]
    assert child["id"] == "p-1/Call~1"
    assert child["name"] == execution_name("p-1/Call~1", 3)
    assert child["input"]["rf"]["instance_id"] == "p-1/Call~1"


def _snapshot_in_nested_map() -> Snapshot:
    definition = flow(
        {
            "Outer": {
                "type": "map",
                "iterator": {
                    "start_at": "Fork",
                    "states": {
                        "Fork": {
                            "type": "parallel",
                            "branches": [
                                {
                                    "start_at": "Inner",
                                    "states": {
                                        "Inner": {"type": "task", "activity": "t", "end": True}
                                    },
                                }
                            ],
                            "end": True,
                        }
                    },
                },
                "end": True,
            }
        }
    )
    return start(definition, [1, 2], "i-1", T0).snapshot


def test_nested_positions_follow_the_resume_copies() -> None:
    node = execution_input(_snapshot_in_nested_map(), now=at(1))["rf"]["resume"]
    item = node["items"][1]
    assert item["route"] == "Outer~r[*]/Fork~resume"
    assert item["branches"][0]["route"] == "Outer~r[*]/Fork~r[0]/Inner~resume"
    compiled = compile_flow(
        _snapshot_in_nested_map().definition,
        activity_function_arn=ACTIVITY_ARN,
        token_function_arn=TOKEN_ARN,
    )
    assert json.dumps(compiled).count('"Outer~r[*]/Fork~r[0]/Inner~resume"') >= 2


# --- the Lambda contract --------------------------------------------------------------------------


def test_scopes_render_as_engine_positions() -> None:
    scope = {"up": {"up": None, "owner": "Fork", "index": 1}, "owner": "Items", "index": 3}
    assert render_scope(None) == ""
    assert render_scope(scope) == "Fork[1]/Items[3]/"
    assert scope_value("Fork[1]/Items[3]/") == scope
    with pytest.raises(PayloadError):
        render_scope({"owner": "x"})


def test_activity_payload_contract() -> None:
    payload = {
        "activity": "charge",
        "input": {"a": 1},
        "instance_id": "order-1",
        "attempt": 2,
        "call": {"scope": {"up": None, "owner": "Each", "index": 0}, "state": "T", "tag": "9"},
    }
    call = activity_call(payload)
    assert call.position == "Each[0]/T"
    assert call.idempotency_key == "order-1:Each[0]/T:2:9"  # a machine without the flag
    positional = {**payload, "call": {**payload["call"], "positional_key": True}}
    assert activity_call(positional).idempotency_key == "order-1:Each[0]/T:2"
    flag_not_bool = {**payload, "call": {**payload["call"], "positional_key": "yes"}}
    for broken in (
        {**payload, "attempt": 0},
        {**payload, "activity": ""},
        {**payload, "call": 1},
        flag_not_bool,
    ):
        with pytest.raises(PayloadError):
            activity_call(broken)
    deadline = token_request({"kind": "deadline", "instance_id": "i", "task_token": "t"})
    assert deadline.kind == "deadline"
    with pytest.raises(PayloadError):
        token_request({"kind": "other", "instance_id": "i", "task_token": "t"})
