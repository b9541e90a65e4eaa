"""Snapshots continued as Step Functions executions on moto's executor.

A snapshot taken at every transition of a corpus case (by the in-process virtual
runtime) continues on the machine compiled from its definition and must end like the
uninterrupted run. The activities run in-process and take no time (see
``test_compiler_kit``), so the cases here do not depend on activity durations; the
timestamps in the snapshots are in 2024, so resumed waits and retry delays are over.
This is the quick loop over a sample of cases; ``test_conformance_moto.py`` runs every
case and every cut in real time through the real Lambda handlers (marked ``slow``).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rustyflower.adapters.aws import execution_input, execution_name
from rustyflower.core.activities import ActivityRegistry, current_call
from rustyflower.core.engine import (
    ActivityCompleted,
    ChildFinished,
    RunActivity,
    Snapshot,
    StartChildFlow,
    StartTimer,
    TimerFired,
    advance,
    start,
)
from rustyflower.core.model import FlowDefinition, parse_definition
from rustyflower.core.timeutil import parse_timestamp
from tests.aws.test_compiler_kit import MotoMachines, machine_arn, moto_machines
from tests.aws.test_resume_shapes import snapshots_at_every_transition
from tests.conformance.corpus import Case, load_cases
from tests.conformance.test_conformance import run_case

EVERY_CUT = [
    "task_dataflow::full_pipeline",
    "map::two_at_a_time",
    "nested::three_customers",
    "nested::negative_order_deep_inside",
    "on_error::named_error_out_of_parallel",
    "parallel::all_branches_succeed",
    "parallel::failing_branch_caught",
    "sub_flow::child_error_caught",
    "retries::used_up_retrier_still_decides",
    "retries::flow_default_retry_exhausted",
    "catches::null_result_path_keeps_input",
]
CASES = {case.id: case for case in load_cases()}
_names = itertools.count()


@pytest.fixture(scope="module")
def machines() -> Iterator[MotoMachines]:
    with moto_machines() as opened:
        yield opened


def own_cuts(case: Case) -> list[Snapshot]:
    instance_id = f"{case.file}.{case.name}"
    return [
        snapshot
        for snapshot in snapshots_at_every_transition(case)
        if snapshot.instance_id == instance_id and not snapshot.finished
    ]


def resume(machines: MotoMachines, case: Case, snapshot: Snapshot) -> Any:
    assert case.flow is not None
    arn = machines.deploy(case.flow, case.subflows)
    document = execution_input(snapshot, now=parse_timestamp(snapshot.updated_at))
    return machines.run(arn, document, f"resume-{next(_names)}")


def check_every_cut(machines: MotoMachines, case_id: str) -> None:
    case = CASES[case_id]
    cuts = own_cuts(case)
    assert cuts
    for snapshot in cuts:
        outcome = resume(machines, case, snapshot)
        where = f"{case_id} cut after transition {snapshot.seq}"
        assert outcome.status == case.expect.status.upper(), (where, outcome)
        if case.expect.status == "succeeded":
            assert outcome.output == case.expect.output, where
        else:
            assert outcome.error == case.expect.error, where


@pytest.mark.parametrize("case_id", EVERY_CUT)
def test_every_cut_continues_on_moto(machines: MotoMachines, case_id: str) -> None:
    check_every_cut(machines, case_id)


# --- what a continuation does again, and what it does not ----------------------------------


def test_a_call_in_flight_is_issued_again_with_its_key(machines: MotoMachines) -> None:
    case = CASES["task_dataflow::full_pipeline"]
    for snapshot in own_cuts(case):
        in_flight = [
            entry.command
            for entry in snapshot.state.pending.values()
            if isinstance(entry.command, RunActivity)
        ]
        before = len(machines.lambdas.calls)
        resume(machines, case, snapshot)
        first = machines.lambdas.calls[before]
        assert [first["key"], first["attempt"]] == [
            in_flight[0].idempotency_key,
            in_flight[0].attempt,
        ]


@pytest.mark.parametrize(
    "case_id",
    [
        "task_dataflow::full_pipeline",
        "map::two_at_a_time",
        "parallel::all_branches_succeed",
        "retries::backoff_exhausted",
        "catches::null_result_path_keeps_input",
    ],
)
def test_every_call_the_cloud_makes_has_the_key_the_site_gave_it(
    machines: MotoMachines, case_id: str
) -> None:
    """The failover frontier: whatever the site did after the snapshot the cloud continues
    from (calls made, not yet replicated), the cloud makes those calls again under the keys
    the site used, so an activity that honours its key does not run twice."""
    case = CASES[case_id]
    site_keys = {call.idempotency_key for call in run_case(case).calls}
    made: list[str] = []
    for snapshot in own_cuts(case):
        before = len(machines.lambdas.calls)
        resume(machines, case, snapshot)
        made += [call["key"] for call in machines.lambdas.calls[before:]]
    assert made
    assert set(made) <= site_keys, sorted(set(made) - site_keys)


def started_children(machines: MotoMachines, case: Case) -> dict[str, str]:
    """Every child execution started so far on the case's sub-flow machines: its ARN and
    the instance id it runs (its input's ``rf.instance_id``)."""
    found: dict[str, str] = {}
    for definition in case.subflows:
        listed = machines.client.list_executions(stateMachineArn=machine_arn(definition))
        for execution in listed["executions"]:
            arn = execution["executionArn"]
            described = machines.client.describe_execution(executionArn=arn)
            found[arn] = json.loads(described["input"])["rf"]["instance_id"]
    return found


@pytest.mark.parametrize(
    "case_id", ["sub_flow_ids::children_after_a_task", "sub_flow::one_child_per_item"]
)
def test_every_child_the_cloud_starts_is_a_child_the_site_started(
    machines: MotoMachines, case_id: str
) -> None:
    """The replication gap for child flows: continued from a snapshot taken before the
    site started a child (at the top level, in a map item), the machine starts the child
    under the id the site gave it, so the child is not run twice under two ids."""
    case = CASES[case_id]
    root = f"{case.file}.{case.name}"
    site = {s.instance_id for s in snapshots_at_every_transition(case)} - {root}
    assert site
    assert case.flow is not None
    machines.deploy(case.flow, case.subflows)
    started: list[str] = []
    fresh = 0
    for snapshot in own_cuts(case):
        before = started_children(machines, case)
        resume(machines, case, snapshot)
        new = [c for arn, c in started_children(machines, case).items() if arn not in before]
        started += new
        in_flight = {
            entry.command.child_instance_id
            for entry in snapshot.state.pending.values()
            if isinstance(entry.command, StartChildFlow)
        }
        fresh += len(set(new) - in_flight)
    assert fresh  # children the machine named itself, not ones a snapshot named
    assert set(started) <= site, sorted(set(started) - site)


def test_finished_branches_are_not_run_again(machines: MotoMachines) -> None:
    case = CASES["parallel::all_branches_succeed"]
    cut = next(
        s
        for s in own_cuts(case)
        if any(frame.done[1] for frame in s.state.frames.values())  # FastBranch ("add") done
    )
    before = len(machines.lambdas.calls)
    outcome = resume(machines, case, cut)
    assert outcome.output == case.expect.output
    assert "add" not in [call["activity"] for call in machines.lambdas.calls[before:]]


def test_retry_counters_carry_over(machines: MotoMachines) -> None:
    """``flaky`` fails while attempt <= 5; with 3 retries the engine fails at attempt 4.

    Continued after the second failure, the machine makes the two attempts left (3, 4),
    not three more: the snapshot's counters and attempt numbers carry over.
    """
    case = CASES["retries::backoff_exhausted"]
    cut = next(s for s in own_cuts(case) if s.state.tokens["Backoff"].retries == (2,))
    before = len(machines.lambdas.calls)
    outcome = resume(machines, case, cut)
    assert (outcome.status, outcome.error) == ("FAILED", "Flaky")
    attempts = [call["attempt"] for call in machines.lambdas.calls[before:]]
    assert attempts == [3, 4]


def _flow(states: dict[str, Any], name: str, **extra: Any) -> FlowDefinition:
    start_at = extra.pop("start_at", next(iter(states)))
    return parse_definition({"name": name, "start_at": start_at, "states": states, **extra})


def test_a_wait_continues_for_the_time_left_only(machines: MotoMachines) -> None:
    definition = _flow(
        {
            "Long": {"type": "wait", "seconds": 60, "next": "After"},
            "After": {"type": "pass", "end": True},
        },
        "long_wait",
    )
    began = datetime.now(UTC) - timedelta(seconds=58)
    snapshot = start(definition, {"k": 1}, "w-1", began).snapshot
    arn = machines.deploy(definition)
    clock = time.monotonic()
    outcome = machines.run(arn, execution_input(snapshot), "wait-left-1")
    assert (outcome.status, outcome.output) == ("SUCCEEDED", {"k": 1})
    assert time.monotonic() - clock < 15


def test_the_flow_deadline_counts_from_the_snapshot(machines: MotoMachines) -> None:
    definition = _flow(
        {"Long": {"type": "wait", "seconds": 900, "end": True}}, "long_flow", timeout_seconds=600
    )
    began = datetime.now(UTC) - timedelta(seconds=599)
    snapshot = start(definition, {}, "f-1", began).snapshot
    document = execution_input(snapshot)
    assert document["rf"]["timeout"] <= 2
    outcome = machines.run(machines.deploy(definition), document, "deadline-left-1")
    assert (outcome.status, outcome.error) == ("FAILED", "States.Timeout")


def test_an_event_wait_registers_its_token_again(machines: MotoMachines) -> None:
    definition = _flow(
        {
            "Ask": {"type": "wait_for_event", "event": "answer", "result_path": "$.a", "end": True},
        },
        "ask_again",
    )
    snapshot = start(definition, {"q": 1}, "a-1", datetime.now(UTC)).snapshot
    wait_id = next(p.id for p in snapshot.state.pending.values() if p.purpose == "event")
    arn = machines.deploy(definition)
    execution = machines.start(arn, execution_input(snapshot), "ask-again-1")
    outcome = machines.wait(execution, events=[("answer", {"yes": True})])
    assert (outcome.status, outcome.output) == ("SUCCEEDED", {"q": 1, "a": {"yes": True}})
    assert wait_id in [token.wait_id for token in machines.lambdas.tokens]


def test_a_snapshot_of_another_definition_is_refused_by_the_machine(
    machines: MotoMachines,
) -> None:
    case = CASES["task_dataflow::full_pipeline"]
    snapshot = own_cuts(case)[0]
    assert case.flow is not None
    document = execution_input(snapshot, now=parse_timestamp(snapshot.updated_at))
    document["rf"]["digest"] = "sha256:" + "0" * 64
    outcome = machines.run(machines.deploy(case.flow), document, "wrong-digest-1")
    assert (outcome.status, outcome.error) == ("FAILED", "RF.DigestMismatch")


def test_the_same_epoch_twice_is_one_execution(machines: MotoMachines) -> None:
    case = CASES["task_dataflow::full_pipeline"]
    snapshot = own_cuts(case)[0]
    assert case.flow is not None
    arn = machines.deploy(case.flow)
    document = json.dumps(execution_input(snapshot, now=parse_timestamp(snapshot.updated_at)))
    name = execution_name(snapshot.instance_id, snapshot.epoch)
    first = machines.client.start_execution(stateMachineArn=arn, name=name, input=document)
    machines.wait(first["executionArn"])
    with pytest.raises(machines.client.exceptions.ExecutionAlreadyExists):
        machines.client.start_execution(stateMachineArn=arn, name=name, input=document)
    names = [e["name"] for e in machines.client.list_executions(stateMachineArn=arn)["executions"]]
    assert names.count(name) == 1


# --- a retried sub-flow: every attempt's child, wherever the machine starts it ----------------


class ChildBoom(Exception):
    """The child's first attempt fails with this name (its class name, as the Lambda says)."""


RETRIED_CHILD = parse_definition(
    {
        "name": "first_fails",
        "start_at": "Work",
        "states": {"Work": {"type": "task", "activity": "boom_on_first", "end": True}},
    }
)
RETRYING_PARENT = parse_definition(
    {
        "name": "retrying_parent",
        "start_at": "First",
        "states": {
            "First": {"type": "task", "activity": "echo", "result_path": None, "next": "Call"},
            "Call": {
                "type": "sub_flow",
                "flow": "first_fails",
                "retry": [{"errors": ["ChildBoom"], "max_attempts": 2, "interval_seconds": 1}],
                "result_path": "$.child",
                "end": True,
            },
        },
    }
)


def _retry_registry() -> ActivityRegistry:
    registry = ActivityRegistry()

    @registry.activity
    def echo(payload: Any) -> Any:
        return payload

    @registry.activity
    def boom_on_first(payload: Any) -> Any:
        # the child of attempt 1 fails: only a retry that starts a NEW child succeeds
        if current_call().instance_id.endswith("@1"):
            raise ChildBoom("the first attempt's child fails")
        return {"ran": current_call().instance_id}

    return registry


def _site_run_of_the_retrying_parent() -> tuple[list[Snapshot], list[str]]:
    """The site's run, by the engine: its snapshots (the cuts) and the children it starts."""
    began = datetime.now(UTC) - timedelta(seconds=30)
    transition = start(RETRYING_PARENT, {"n": 1}, "retrying-1", began)
    cuts, children = [transition.snapshot], []
    first = next(c for c in transition.commands if isinstance(c, RunActivity))
    transition = advance(transition.snapshot, ActivityCompleted(first.call_id, {"n": 1}), began)
    cuts.append(transition.snapshot)
    child = next(c for c in transition.commands if isinstance(c, StartChildFlow))
    children.append(child.child_instance_id)
    failed = ChildFinished(child.call_id, "failed", error="ChildBoom")
    transition = advance(transition.snapshot, failed, began)
    cuts.append(transition.snapshot)  # waiting for the retry
    timer = next(c for c in transition.commands if isinstance(c, StartTimer))
    transition = advance(transition.snapshot, TimerFired(timer.timer_id), began)
    children.append(
        next(c for c in transition.commands if isinstance(c, StartChildFlow)).child_instance_id
    )
    return cuts, children


def test_a_retried_sub_flow_starts_each_attempts_child_under_the_sites_id() -> None:
    """Continued before the child started (the fresh state's own Retry), with the first
    child in flight (the resume entry's retry loop) and during the retry's delay: the
    machine starts the second attempt's child as the engine does, ``parent/Call@2``,
    never the first attempt's id again."""
    cuts, site = _site_run_of_the_retrying_parent()
    assert site == ["retrying-1/Call@1", "retrying-1/Call@2"]
    with moto_machines(_retry_registry()) as machines:
        arn = machines.deploy(RETRYING_PARENT, [RETRIED_CHILD])
        child_machine = machine_arn(RETRIED_CHILD)
        seen: set[str] = set()
        for number, snapshot in enumerate(cuts):
            outcome = machines.run(arn, execution_input(snapshot), f"retrying-cut-{number}")
            assert outcome.status == "SUCCEEDED", (number, outcome)
            assert outcome.output["child"] == {"ran": "retrying-1/Call@2"}
            listed = machines.client.list_executions(stateMachineArn=child_machine)["executions"]
            started = []
            for execution in listed:
                if execution["executionArn"] in seen:
                    continue
                seen.add(execution["executionArn"])
                described = machines.client.describe_execution(
                    executionArn=execution["executionArn"]
                )
                started.append(json.loads(described["input"])["rf"]["instance_id"])
            waiting = snapshot.state.tokens.get("Call")
            # during the retry's delay only the second attempt is left to start
            expected = site[1:] if waiting is not None and waiting.retries == (1,) else site
            assert sorted(started) == expected, number
