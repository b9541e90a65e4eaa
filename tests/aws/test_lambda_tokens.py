"""Task tokens: the token function stores them, ``signal`` delivers events through them."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError
from moto import mock_aws

from lambda_aws.tokens import handler, register
from rustyflower.adapters.aws import deployment, execution_name, fresh_input
from rustyflower.adapters.aws.contract import token_request
from rustyflower.adapters.aws.tokens import SignalError, TokenStore, rank_key, signal, waiter_key
from rustyflower.core.errors import NoWaiterError
from tests.aws.test_lambda_kit import (
    REGION,
    TOKENS_TABLE,
    FakeContext,
    create_tables,
    lambda_world,
    set_environment,
)
from tests.conformance.corpus import load_cases

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
CASES = {case.id: case for case in load_cases() if case.flow is not None}


def event_payload(
    token: str = "token-1",
    *,
    instance_id: str = "order-7",
    event: str = "approval",
    since: str | None = "2026-11-27T11:00:00Z",
    order: int = 0,
    tag: str = "4",
    state: str = "Approve",
) -> dict[str, Any]:
    return {
        "kind": "event",
        "instance_id": instance_id,
        "event": event,
        "task_token": token,
        "call": {"scope": None, "state": state, "tag": tag},
        "since": since,
        "order": order,
    }


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    set_environment(monkeypatch)


@pytest.fixture
def store() -> Any:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        create_tables(dynamodb)
        yield TokenStore(TOKENS_TABLE, dynamodb, ttl_seconds=3600)


class Recorder:
    """A Step Functions client stand-in that answers SendTaskSuccess from a script."""

    def __init__(self, *answers: str | None) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[str, str]] = []

    def send_task_success(self, taskToken: str, output: str) -> dict[str, Any]:  # noqa: N803
        code = self.answers.pop(0) if self.answers else None
        if code is not None:
            raise ClientError({"Error": {"Code": code, "Message": code}}, "SendTaskSuccess")
        self.sent.append((taskToken, output))
        return {}


# --- storing ----------------------------------------------------------------------------------


def test_the_handler_stores_the_token_with_its_keys_and_ttl(store: TokenStore) -> None:
    answer = handler(event_payload(), FakeContext(function_name="rf-tokens"))
    assert answer == {
        "stored": True,
        "kind": "event",
        "wait_id": "Approve~4",
        "rank": "2026-11-27T11:00:00.000000Z#000000000000#Approve~4",
    }
    items = store.dynamodb.scan(TableName=TOKENS_TABLE)["Items"]
    assert len(items) == 1
    item = items[0]
    assert item[deployment.TOKENS_PARTITION_KEY]["S"] == '["order-7","approval"]'
    assert item[deployment.TOKENS_SORT_KEY]["S"] == answer["rank"]
    assert item["task_token"]["S"] == "token-1"
    assert item["position"]["S"] == "Approve"
    expires = int(item[deployment.TOKENS_TTL_ATTRIBUTE]["N"])
    assert expires - datetime.now(UTC).timestamp() > deployment.DEFAULT_TOKEN_TTL - 60


def test_the_deadline_clock_stores_nothing(store: TokenStore) -> None:
    deadline = {"kind": "deadline", "instance_id": "order-7", "task_token": "t"}
    assert register(deadline, store) == {"stored": False, "kind": "deadline"}
    assert store.dynamodb.scan(TableName=TOKENS_TABLE)["Items"] == []


def test_a_bad_payload_fails_the_function(store: TokenStore) -> None:
    with pytest.raises(ValueError, match="task_token"):
        handler({"kind": "event", "instance_id": "x"}, FakeContext())


def test_registering_one_wait_again_replaces_its_token(store: TokenStore) -> None:
    register(event_payload("old"), store, NOW)
    register(event_payload("new"), store, NOW)
    assert [w.task_token for w in store.waiters("order-7", "approval")] == ["new"]


def test_waiters_sort_oldest_first_whatever_the_time_format() -> None:
    # ASL's $$.State.EnteredTime has milliseconds, the engine's times may have none or more
    ranks = [
        rank_key("2026-11-27T11:00:00.5Z", 0, "b~1", NOW),
        rank_key("2026-11-27T12:00:00+01:00", 0, "a~1", NOW),  # 11:00:00Z: older
        rank_key("2026-11-27T11:00:00.500000+00:00", 3, "c~1", NOW),
        rank_key(None, 0, "d~1", NOW),  # no since: the time of registration
    ]
    assert sorted(ranks) == [ranks[1], ranks[0], ranks[2], ranks[3]]
    assert waiter_key("a|b", "c") != waiter_key("a", "b|c")


# --- signalling ---------------------------------------------------------------------------


def test_signal_goes_to_the_oldest_waiter_and_uses_each_token_once(store: TokenStore) -> None:
    register(event_payload("late", since="2026-11-27T11:05:00Z", tag="9"), store, NOW)
    register(event_payload("early", since="2026-11-27T11:00:00Z", tag="2"), store, NOW)
    sent = Recorder()
    first = signal("order-7", "approval", {"ok": True}, store=store, stepfunctions=sent)
    second = signal("order-7", "approval", [1, 2], store=store, stepfunctions=sent)
    assert (first.wait_id, second.wait_id) == ("Approve~2", "Approve~9")
    assert sent.sent == [("early", '{"ok": true}'), ("late", "[1, 2]")]
    with pytest.raises(NoWaiterError, match="no live wait for event 'approval'"):
        signal("order-7", "approval", None, store=store, stepfunctions=sent)


def test_a_token_taken_by_another_signal_is_not_used_again(store: TokenStore) -> None:
    waiter = store.register(token_request(event_payload()), NOW)
    assert store.take(waiter) is True
    assert store.take(waiter) is False  # the conditional delete lost the race


def test_stale_tokens_are_skipped(store: TokenStore) -> None:
    register(event_payload("timed-out", since="2026-11-27T10:00:00Z", tag="1"), store, NOW)
    register(event_payload("gone", since="2026-11-27T10:30:00Z", tag="2"), store, NOW)
    register(event_payload("live", since="2026-11-27T11:00:00Z", tag="3"), store, NOW)
    sent = Recorder("TaskTimedOut", "TaskDoesNotExist")
    delivered = signal("order-7", "approval", "yes", store=store, stepfunctions=sent)
    assert (delivered.wait_id, delivered.skipped) == ("Approve~3", 2)
    assert sent.sent == [("live", '"yes"')]
    assert list(store.waiters("order-7", "approval")) == []


def test_a_transient_failure_keeps_the_token(store: TokenStore) -> None:
    register(event_payload(), store, NOW)
    with pytest.raises(ClientError):
        signal("order-7", "approval", 1, store=store, stepfunctions=Recorder("ThrottlingException"))
    assert [w.task_token for w in store.waiters("order-7", "approval")] == ["token-1"]
    delivered = signal("order-7", "approval", 1, store=store, stepfunctions=Recorder())
    assert delivered.wait_id == "Approve~4"


def test_a_lost_connection_keeps_the_token(store: TokenStore) -> None:
    """A transport error (no answer from Step Functions) is not a stale token either."""
    register(event_payload(), store, NOW)
    unreachable = boto3.client(
        "stepfunctions",
        region_name=REGION,
        endpoint_url="http://127.0.0.1:9",  # discard port: nothing listens
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    with pytest.raises(EndpointConnectionError):
        signal("order-7", "approval", 1, store=store, stepfunctions=unreachable)
    assert [w.task_token for w in store.waiters("order-7", "approval")] == ["token-1"]
    delivered = signal("order-7", "approval", 1, store=store, stepfunctions=Recorder())
    assert delivered.wait_id == "Approve~4"


def test_a_wait_id_picks_one_wait(store: TokenStore) -> None:
    register(event_payload("a", since="2026-11-27T10:00:00Z", tag="1"), store, NOW)
    register(event_payload("b", since="2026-11-27T11:00:00Z", tag="2"), store, NOW)
    sent = Recorder()
    delivered = signal(
        "order-7", "approval", 0, store=store, stepfunctions=sent, wait_id="Approve~2"
    )
    assert delivered.wait_id == "Approve~2"
    assert sent.sent == [("b", "0")]
    with pytest.raises(NoWaiterError, match="wait 'Approve~9'"):
        signal("order-7", "approval", 0, store=store, stepfunctions=sent, wait_id="Approve~9")


def test_unknown_instances_and_bad_data_are_clear_errors(store: TokenStore) -> None:
    with pytest.raises(NoWaiterError, match="instance 'nobody' has no live wait"):
        signal("nobody", "approval", None, store=store, stepfunctions=Recorder())
    register(event_payload(), store, NOW)
    with pytest.raises(SignalError, match="not JSON"):
        signal("order-7", "approval", {1, 2}, store=store, stepfunctions=Recorder())
    with pytest.raises(SignalError, match="256 KiB"):
        signal("order-7", "approval", "x" * 300_000, store=store, stepfunctions=Recorder())
    assert len(list(store.waiters("order-7", "approval"))) == 1  # nothing was taken


# --- with real executions on moto -------------------------------------------------------


def start(world: Any, definition: Any, instance_id: str, flow_input: Any) -> str:
    arn = world.deploy(definition)
    started = world.stepfunctions.start_execution(
        stateMachineArn=arn,
        name=execution_name(instance_id, 0),
        input=json.dumps(fresh_input(instance_id, flow_input)),
    )
    return str(started["executionArn"])


def test_signal_reaches_a_waiting_execution() -> None:
    case = CASES["approval::approved"]
    with lambda_world() as world:
        execution = start(world, case.flow, "order-42", case.input)
        waiter = world.wait_for_waiter("order-42", "approval")
        assert waiter.position == "AwaitApproval"
        assert world.stepfunctions.describe_execution(executionArn=execution)["status"] == (
            "RUNNING"
        )
        delivered = signal(
            "order-42",
            "approval",
            {"approved": True, "by": "ann"},
            store=world.token_store(),
            stepfunctions=world.stepfunctions,
        )
        described = world.wait(execution)
        assert list(world.token_store().waiters("order-42", "approval")) == []
    assert delivered.position == "AwaitApproval"
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"]) == case.expect.output


def test_signals_by_name_reach_the_oldest_waiter_first() -> None:
    case = CASES["event_waiters::oldest_waiter_first"]
    with lambda_world() as world:
        execution = start(world, case.flow, "fork-1", case.input)
        store = world.token_store()
        deadline = time.monotonic() + 30
        while len(waiters := list(store.waiters("fork-1", "go"))) < 2:  # both branches wait
            assert time.monotonic() < deadline, waiters
            time.sleep(0.05)
        assert [w.position for w in waiters] == ["Fork[1]/Early", "Fork[0]/Late"]
        for spec in case.events:
            signal("fork-1", spec.event, spec.data, store=store, stepfunctions=world.stepfunctions)
        described = world.wait(execution)
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"]) == case.expect.output
