"""Failback: a Step Functions execution read back (on moto) into a snapshot the site resumes.

Round trips: on premises -> AWS (the continue function) -> snapshot (the failback reader)
-> on premises (the engine / the virtual runtime), with the same result as a run that
never left.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest

from lambda_aws import failback
from lambda_aws.continuation import handle as continue_handle
from lambda_aws.errors import NamedError
from rustyflower.adapters.aws import execution_name, fresh_input
from rustyflower.adapters.aws import failback as reader
from rustyflower.adapters.aws.failback import FailbackError, failback_execution
from rustyflower.adapters.aws.history import history_events, position_of, read_history
from rustyflower.adapters.aws.tokens import signal
from rustyflower.core.engine import EventReceived, Snapshot, advance, start
from rustyflower.core.model import parse_definition
from rustyflower.core.snapshot.document import decode_snapshot, encode_snapshot
from rustyflower.testing import round_trip, run_flow
from tests.aws.test_lambda_kit import (
    KEYS,
    FakeContext,
    http_event,
    lambda_world,
    set_environment,
)
from tests.conformance.corpus import Case, load_cases
from tests.conformance.test_conformance import baseline, world_for

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
CASES = {case.id: case for case in load_cases() if case.flow is not None}

RETRY_THEN_WAIT = parse_definition(
    {
        "name": "retry_then_wait",
        "version": "1",
        "start_at": "Try",
        "states": {
            "Try": {
                "type": "task",
                "activity": "flaky",
                "retry": [{"errors": ["Flaky"], "interval_seconds": 1, "max_attempts": 3}],
                "result_path": "$.tried",
                "next": "Approve",
            },
            "Approve": {
                "type": "wait_for_event",
                "event": "approval",
                "result_path": "$.decision",
                "next": "Done",
            },
            "Done": {"type": "pass", "end": True},
        },
    }
)


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    set_environment(monkeypatch)


def continue_in_aws(world: Any, snapshot: Snapshot) -> str:
    response = continue_handle(
        http_event(encode_snapshot(snapshot, KEYS)),
        settings=world.settings(),
        keys=KEYS,
        stepfunctions=world.stepfunctions,
        s3=world.s3,
    )
    assert response["statusCode"] == 201, response
    return str(json.loads(response["body"])["executionArn"])


def drive(world: Any, execution_arn: str, instance_id: str, case: Case) -> dict[str, Any]:
    """Let the execution run, sending the case's events (by name, through ``signal``) as
    soon as something waits for them; its describe_execution answer at the end."""
    pending = list(case.events)
    deadline = time.monotonic() + 60
    while True:
        described: dict[str, Any] = world.stepfunctions.describe_execution(
            executionArn=execution_arn
        )
        if described["status"] != "RUNNING":
            return described
        assert time.monotonic() < deadline, f"{execution_arn} still running"
        store = world.token_store()
        if pending and list(store.waiters(instance_id, pending[0].event)):
            spec = pending.pop(0)
            signal(
                instance_id, spec.event, spec.data, store=store, stepfunctions=world.stepfunctions
            )
        time.sleep(0.05)


def read_back(world: Any, execution_arn: str, *, stop: bool = False) -> Snapshot:
    answer = failback.handle(
        {"execution_arn": execution_arn, "stop": stop},
        settings=world.settings(),
        keys=KEYS,
        stepfunctions=world.stepfunctions,
        s3=world.s3,
    )
    snapshot = decode_snapshot(base64.b64decode(answer["snapshot"]), KEYS)
    stored = world.s3.get_object(Bucket="rf-snapshots", Key=answer["key"])["Body"].read()
    assert decode_snapshot(stored, KEYS) == snapshot
    assert (answer["instanceId"], answer["seq"]) == (snapshot.instance_id, snapshot.seq)
    return snapshot


# --- round trips ------------------------------------------------------------------------------


def test_a_waiting_execution_fails_back_and_finishes_on_premises() -> None:
    case = CASES["approval::approved"]
    assert case.flow is not None
    on_premises = start(case.flow, case.input, "order-42", NOW).snapshot  # at the wait
    with lambda_world() as world:
        world.deploy(case.flow)
        execution = continue_in_aws(world, on_premises)
        world.wait_for_waiter("order-42", "approval")
        back = read_back(world, execution)  # moto cannot stop a task-token wait
        assert world.stepfunctions.describe_execution(executionArn=execution)["status"] == (
            "RUNNING"
        )
    assert back.status == "running"
    assert back.positions == ["AwaitApproval"]
    assert back.state.tokens["AwaitApproval"].data == {"order": 42, "status": "pending"}
    (event,) = case.events
    later = NOW + timedelta(seconds=event.after_seconds)
    finished = advance(back, EventReceived(event.event, event.data), later).snapshot
    assert (finished.status, finished.state.output) == ("succeeded", case.expect.output)


def test_attempts_and_positions_come_back_with_the_engines_numbers() -> None:
    with lambda_world() as world:
        arn = world.deploy(RETRY_THEN_WAIT)
        started = world.stepfunctions.start_execution(
            stateMachineArn=arn,
            name=execution_name("rw-1", 0),
            input=json.dumps(fresh_input("rw-1", {"failures": 2})),
        )
        world.wait_for_waiter("rw-1", "approval")
        back = failback_execution(
            world.stepfunctions, started["executionArn"], definition=RETRY_THEN_WAIT
        )
    assert back.positions == ["Approve"]
    assert back.state.tokens["Approve"].data == {"failures": 2, "tried": {"attempts": 3}}
    kinds = [(entry.kind, entry.position) for entry in back.state.history]
    assert kinds.count(("TaskFailed", "Try")) == 2
    assert kinds.count(("RetryScheduled", "Try")) == 2
    scheduled = [e.detail for e in back.state.history if e.kind == "TaskScheduled"]
    assert [detail["attempt"] for detail in scheduled] == [1, 2, 3]
    # the site continues it: the same output as a run that never left
    done = advance(back, EventReceived("approval", "ok"), NOW + timedelta(hours=1)).snapshot
    assert done.state.output == {"failures": 2, "tried": {"attempts": 3}, "decision": "ok"}


@pytest.mark.parametrize(
    "case_id",
    [
        "task_dataflow::full_pipeline",
        "retries::flow_default_retry",
        "parallel::all_branches_succeed",
        "map::two_at_a_time",
        "event_waiters::oldest_waiter_first",
        "loop::one_round",
    ],
)
def test_a_continued_execution_reads_back_as_the_uninterrupted_run(case_id: str) -> None:
    """Cut on premises after the first transition, finish in AWS, read it back."""
    case = CASES[case_id]
    expected = baseline(case_id)
    assert case.flow is not None
    first = start(case.flow, case.input, f"{case.file}.{case.name}", NOW).snapshot
    with lambda_world() as world:
        world.deploy(case.flow, case.subflows)
        execution = continue_in_aws(world, first)
        described = drive(world, execution, first.instance_id, case)
        back = read_back(world, execution)
    assert described["status"] == {"succeeded": "SUCCEEDED", "failed": "FAILED"}[expected.status]
    assert back.status == expected.status
    assert back.state.output == expected.output
    assert back.state.error == expected.error
    assert back.epoch == first.epoch


def _cut_snapshots(case: Case) -> list[Snapshot]:
    seen: list[Snapshot] = []

    def record(snapshot: Snapshot, keys: Any) -> Snapshot:
        seen.append(snapshot)
        return round_trip(snapshot, keys)

    assert case.flow is not None
    run_flow(
        case.flow,
        case.input,
        world_for(case),
        instance_id=case.name,
        cut="every",
        transfer=record,
    )
    # the root instance's snapshots (its children are cut too, and continue with it)
    return [s for s in seen if s.instance_id == case.name and not s.finished]


@pytest.mark.slow
@pytest.mark.parametrize(
    "case_id",
    [
        "retries::backoff_two_failures",
        "nested_recovery::items_retried_independently",
        "waits::all_waits",
        "approval::approved",
        "sub_flow::child_succeeds",
    ],
)
def test_every_cut_point_round_trips(case_id: str) -> None:
    """Each running snapshot of the case continues in AWS, fails back at the end, and the
    snapshot read back is the uninterrupted run's end."""
    case = CASES[case_id]
    expected = baseline(case_id)
    for snapshot in _cut_snapshots(case):
        with lambda_world() as world:
            assert case.flow is not None
            world.deploy(case.flow, case.subflows)
            execution = continue_in_aws(world, snapshot)
            drive(world, execution, snapshot.instance_id, case)
            back = read_back(world, execution)
        assert (back.status, back.state.output) == (expected.status, expected.output), (
            f"cut at seq {snapshot.seq}"
        )


# --- what the reader refuses ---------------------------------------------------------------


def test_a_continuation_needs_its_base_and_a_fresh_start_its_definition() -> None:
    snapshot = start(RETRY_THEN_WAIT, {"failures": 0}, "rw-2", NOW).snapshot
    with lambda_world() as world:
        world.deploy(RETRY_THEN_WAIT)
        execution = continue_in_aws(world, snapshot)
        world.wait_for_waiter("rw-2", "approval")
        described = world.stepfunctions.describe_execution(executionArn=execution)
        history = read_history(world.stepfunctions, execution)
        with pytest.raises(FailbackError, match="needs that snapshot as its base"):
            reader.failback_snapshot(described, history)
        with pytest.raises(FailbackError, match="seq differ"):
            reader.failback_snapshot(described, history, base=replace(snapshot, seq=99))
        back = reader.failback_snapshot(described, history, base=snapshot)
        assert back.positions == ["Approve"]
        fresh = world.stepfunctions.start_execution(
            stateMachineArn=world.deploy(RETRY_THEN_WAIT),
            name=execution_name("rw-3", 0),
            input=json.dumps(fresh_input("rw-3", {"failures": 0})),
        )["executionArn"]
        world.wait_for_waiter("rw-3", "approval")
        with pytest.raises(FailbackError, match="needs the flow's definition"):
            failback_execution(world.stepfunctions, fresh)
        clients = {"stepfunctions": world.stepfunctions, "s3": world.s3}
        with (
            mock.patch.object(failback, "client", clients.__getitem__),
            pytest.raises(NamedError) as refused,
        ):
            failback.handler({"execution_arn": fresh}, FakeContext(function_name="rf-failback"))
        assert type(refused.value).__name__ == "FailbackError"
        document = RETRY_THEN_WAIT.document()
        document["states"]["Done"]["result"] = "another definition of the same flow"
        other = parse_definition(document)
        with pytest.raises(FailbackError, match="runs definition"):
            failback_execution(world.stepfunctions, fresh, definition=other)


class Stoppable:
    """A Step Functions stand-in whose execution stops a moment after StopExecution."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.status = ["RUNNING", "RUNNING", "RUNNING", "ABORTED"]

    def describe_execution(self, executionArn: str) -> dict[str, Any]:  # noqa: N803
        self.calls.append("describe")
        return {"status": self.status.pop(0) if len(self.status) > 1 else self.status[0]}

    def stop_execution(self, **arguments: Any) -> dict[str, Any]:
        self.calls.append(f"stop {arguments['error']}")
        return {}


def test_stopping_waits_until_the_execution_stopped() -> None:
    stub = Stoppable()
    assert reader.stop_execution(stub, "arn", timeout=5)["status"] == "ABORTED"
    assert stub.calls == ["describe", "stop RF.FailedBack", "describe", "describe", "describe"]
    done = Stoppable()
    done.status = ["SUCCEEDED"]
    assert reader.stop_execution(done, "arn")["status"] == "SUCCEEDED"
    assert done.calls == ["describe"]


def test_truncated_history_data_is_refused() -> None:
    event = {
        "id": 3,
        "type": "TaskStateEntered",
        "timestamp": NOW,
        "stateEnteredEventDetails": {
            "name": "A",
            "input": "{",
            "inputDetails": {"truncated": True},
        },
    }
    with pytest.raises(FailbackError, match="truncated"):
        history_events([event])


def test_state_names_map_to_engine_positions() -> None:
    assert position_of("Charge") == "Charge"
    assert position_of("Charge~resume") == "Charge"
    assert position_of("Fork[1]/Ship") == "Fork[1]/Ship"
    assert position_of("Fork~r[1]/Ship~delay") == "Fork[1]/Ship"
    assert position_of("Fork[0]/~route") is None
    assert position_of("RF:Start") is None
    assert position_of("Cut#0123456789ab") is None
    scope = {"rf": {"scope": {"up": None, "owner": "Items", "index": 2}}, "d": {}}
    assert position_of("Items[*]/Price", scope) == "Items[2]/Price"
    with pytest.raises(FailbackError, match="carries no scope"):
        position_of("Items[*]/Price", {"plain": "data"})


# --- the invariant over the corpus: a snapshot, or a refusal; never a wrong snapshot ----------


SWEEP = sorted(
    case_id
    for case_id, case in CASES.items()
    if (case.expect.elapsed_seconds or 0) <= 20  # moto waits in real time
)


@pytest.mark.slow
@pytest.mark.parametrize("case_id", SWEEP)
def test_fresh_executions_read_back_as_their_end_or_are_refused(case_id: str) -> None:
    case = CASES[case_id]
    assert case.flow is not None
    with lambda_world() as world:
        arn = world.deploy(case.flow, case.subflows)
        execution = world.stepfunctions.start_execution(
            stateMachineArn=arn,
            name=execution_name("sweep", 0),
            input=json.dumps(fresh_input("sweep", case.input)),
        )["executionArn"]
        described = drive(world, execution, "sweep", case)
        try:
            back = failback_execution(world.stepfunctions, execution, definition=case.flow)
        except FailbackError:
            # refused: the state machine did not end as the engine does (a documented
            # difference, or a moto quirk), so no snapshot could be right
            expected = baseline(case_id)
            assert not ends_as(described, expected.status, expected.output, expected.error)
            return
    assert ends_as(described, back.status, back.state.output, back.state.error)


def ends_as(described: dict[str, Any], status: str, output: Any, error: str | None) -> bool:
    """Whether an execution ended with this engine status, output and error."""
    aws_status = {"succeeded": "SUCCEEDED", "failed": "FAILED"}.get(status, status.upper())
    if (described["status"], described.get("error")) != (aws_status, error):
        return False
    if status != "succeeded":
        return True
    text = described.get("output")
    if isinstance(text, str) and text == output:
        return True  # moto writes a text output unquoted
    try:
        return bool(json.loads(text or "null") == output)
    except ValueError:
        return False
