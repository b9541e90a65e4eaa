"""The activity function: contract payloads, error names, idempotency on (moto) DynamoDB."""

from __future__ import annotations

import io
import json
import logging
from collections import Counter
from typing import Any

import boto3
import pytest
from moto import mock_aws

from lambda_aws import activity, settings
from lambda_aws.activity import ActivityRunner, handler
from lambda_aws.errors import NamedError
from lambda_aws.observability import logger, metrics
from rustyflower.adapters.aws import execution_name, fresh_input
from rustyflower.core.activities import ActivityRegistry, current_call
from rustyflower.core.model import parse_definition
from tests.aws.test_lambda_kit import (
    IDEMPOTENCY_TABLE,
    REGION,
    FakeContext,
    create_tables,
    lambda_world,
    set_environment,
)
from tests.conformance.corpus import load_cases

# --- a registry that counts its executions --------------------------------------------------

counting = ActivityRegistry()
RUNS: Counter[str] = Counter()


class CardDeclined(Exception):
    pass


@counting.activity
def charge(payload: Any) -> Any:
    RUNS[current_call().idempotency_key] += 1
    if payload.get("decline"):
        raise CardDeclined(f"card {payload['card']} declined")
    return {"charged": payload["amount"], "key": current_call().idempotency_key}


@counting.activity
def nothing(payload: Any) -> Any:
    RUNS["nothing"] += 1
    return None


@counting.activity
def reentrant(payload: Any) -> Any:
    """Calls the runner again with its own payload while it runs (same idempotency key)."""
    try:
        CURRENT_RUNNER[0].run(payload["self"])
    except NamedError as error:
        return type(error).__name__
    return "ran twice"


CURRENT_RUNNER: list[ActivityRunner] = []


def payload(activity_name: str = "charge", attempt: int = 1, **input: Any) -> dict[str, Any]:
    return {
        "activity": activity_name,
        "input": input or {"amount": 12, "card": "4242"},
        "instance_id": "order-7",
        "attempt": attempt,
        "call": {"scope": None, "state": "Charge", "tag": "3"},
    }


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    set_environment(monkeypatch, **{settings.ENV_ACTIVITIES: f"{__name__}:counting"})
    RUNS.clear()


@pytest.fixture
def dynamodb() -> Any:
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        create_tables(client)
        yield client


# --- through the handler ----------------------------------------------------------------------


@pytest.fixture
def log_lines() -> Any:
    """The structured log lines the Powertools logger writes during a test."""
    stream = io.StringIO()
    extra = logging.StreamHandler(stream)
    extra.setFormatter(logger.registered_formatter)
    logger.addHandler(extra)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines() if line]
    logger.removeHandler(extra)


def test_success_returns_the_output_and_logs_the_call(
    dynamodb: Any, capsys: Any, log_lines: Any
) -> None:
    output = handler(payload(), FakeContext())
    assert output == {"charged": 12, "key": "order-7:Charge:1:3"}
    record = next(line for line in log_lines() if line.get("message") == "activity succeeded")
    assert record["instance_id"] == "order-7"
    assert record["idempotency_key"] == "order-7:Charge:1:3"
    assert record["service"] == "rustyflower"
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    emf = next(line for line in printed if "_aws" in line)
    metric = emf["_aws"]["CloudWatchMetrics"][0]
    assert metric["Namespace"] == "RustyFlower"
    assert [m["Name"] for m in metric["Metrics"]] == ["ActivitySucceeded"]


def test_the_same_key_twice_runs_the_activity_once(dynamodb: Any) -> None:
    first = handler(payload(), FakeContext())
    second = handler(payload(), FakeContext())
    assert first == second
    assert RUNS == {"order-7:Charge:1:3": 1}
    items = dynamodb.scan(TableName=IDEMPOTENCY_TABLE)["Items"]
    assert len(items) == 1
    record = items[0]
    assert record["id"]["S"].startswith(settings.IDEMPOTENCY_KEY_PREFIX + "#")
    assert record["status"]["S"] == "COMPLETED"
    assert json.loads(record["data"]["S"]) == first
    assert int(record["expiration"]["N"]) > 0


def test_another_attempt_is_another_call(dynamodb: Any) -> None:
    handler(payload(attempt=1), FakeContext())
    handler(payload(attempt=2), FakeContext())
    assert RUNS == {"order-7:Charge:1:3": 1, "order-7:Charge:2:3": 1}


def test_a_null_output_is_stored_and_returned(dynamodb: Any) -> None:
    assert handler(payload("nothing", x=1), FakeContext()) is None
    assert handler(payload("nothing", x=1), FakeContext()) is None
    assert RUNS["nothing"] == 1


def test_a_failure_raises_the_error_name_and_is_not_cached(dynamodb: Any) -> None:
    failing = payload(amount=5, card="0000", decline=True)
    with pytest.raises(NamedError) as raised:
        handler(failing, FakeContext())
    assert type(raised.value).__name__ == "CardDeclined"  # Lambda's errorType
    assert str(raised.value) == "card 0000 declined"  # Lambda's errorMessage
    with pytest.raises(NamedError):
        handler(failing, FakeContext())
    assert RUNS == {"order-7:Charge:1:3": 2}
    assert dynamodb.scan(TableName=IDEMPOTENCY_TABLE)["Items"] == []


def test_unknown_activity_and_bad_payload_have_their_names(dynamodb: Any) -> None:
    with pytest.raises(NamedError) as unknown:
        handler(payload("chrage"), FakeContext())
    assert type(unknown.value).__name__ == "UnknownActivity"
    assert "did you mean 'charge'" in str(unknown.value)
    broken = payload()
    del broken["call"]
    with pytest.raises(NamedError) as bad:
        handler(broken, FakeContext())
    assert type(bad.value).__name__ == activity.INVALID_PAYLOAD == "RF.InvalidPayload"
    with pytest.raises(NamedError) as not_object:
        handler(["not", "an", "object"], FakeContext())  # type: ignore[arg-type]
    assert type(not_object.value).__name__ == "RF.InvalidPayload"


def test_a_key_stored_for_another_activity_is_refused(dynamodb: Any) -> None:
    handler(payload("charge"), FakeContext())
    with pytest.raises(NamedError) as reused:
        handler(payload("nothing"), FakeContext())
    assert type(reused.value).__name__ == activity.KEY_REUSED


@pytest.mark.filterwarnings("ignore:Dimension 'activity' has already been added")
def test_the_same_call_running_elsewhere_is_reported_in_progress(dynamodb: Any) -> None:
    runner = activity.runner()
    CURRENT_RUNNER[:] = [runner]
    inner = payload("reentrant")
    outer = {**inner, "input": {"self": inner}}
    assert runner.run(outer, FakeContext()) == activity.IN_PROGRESS
    metrics.clear_metrics()


def test_idempotency_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    # no moto here: with idempotency off the function never touches DynamoDB
    set_environment(
        monkeypatch,
        **{settings.ENV_ACTIVITIES: f"{__name__}:counting", settings.ENV_IDEMPOTENCY: "off"},
    )
    handler(payload(), FakeContext())
    handler(payload(), FakeContext())
    assert RUNS == {"order-7:Charge:1:3": 2}
    assert activity.runner().config is None


def test_idempotency_is_off_without_a_table_and_on_needs_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert not settings.LambdaSettings.from_env({}).idempotency
    assert settings.LambdaSettings.from_env({settings.ENV_IDEMPOTENCY_TABLE: "t"}).idempotency
    with pytest.raises(settings.SettingsError, match="RUSTYFLOWER_IDEMPOTENCY_TABLE"):
        settings.LambdaSettings.from_env({settings.ENV_IDEMPOTENCY: "on"})
    with pytest.raises(settings.SettingsError, match="on or off"):
        settings.LambdaSettings.from_env({settings.ENV_IDEMPOTENCY: "maybe"})


def test_the_activities_module_is_checked() -> None:
    with pytest.raises(TypeError, match="is not an ActivityRegistry"):
        activity.load_registry("json")
    assert activity.load_registry("lambda_aws.activities") is activity.load_registry(
        "rustyflower.core.activities"
    )


# --- behind a state machine: Retry and Catch see the handler's error names ------------------

CASES = {case.id: case for case in load_cases() if case.flow is not None}

FLAKY_ONCE = parse_definition(
    {
        "name": "flaky_once",
        "version": "1",
        "start_at": "Try",
        "states": {
            "Try": {
                "type": "task",
                "activity": "flaky",
                "retry": [{"errors": ["Flaky"], "interval_seconds": 1, "max_attempts": 2}],
                "next": "Decline",
            },
            "Decline": {
                "type": "task",
                "activity": "fail_always",
                "parameters": {"error": "PaymentDeclined", "message": "no funds"},
                "result_path": "$.declined",
                "catch": [
                    {"errors": ["PaymentDeclined"], "next": "Done", "result_path": "$.error"}
                ],
                "end": True,
            },
            "Done": {"type": "pass", "end": True},
        },
    }
)


def run_on_moto(world: Any, definition: Any, flow_input: Any) -> dict[str, Any]:
    arn = world.deploy(definition)
    started = world.stepfunctions.start_execution(
        stateMachineArn=arn,
        name=execution_name("case-1", 0),
        input=json.dumps(fresh_input("case-1", flow_input)),
    )
    described: dict[str, Any] = world.wait(started["executionArn"])
    return described


def test_retry_and_catch_see_the_handlers_error_names(monkeypatch: pytest.MonkeyPatch) -> None:
    set_environment(monkeypatch)  # the conformance activities
    with lambda_world() as world:
        described = run_on_moto(world, FLAKY_ONCE, {"failures": 1})
        calls = [payload for _, payload in world.lambdas.invocations]
    assert described["status"] == "SUCCEEDED", described
    output = json.loads(described["output"])
    assert output["attempts"] == 2  # Flaky once, retried by the ASL Retry on its name
    assert output["error"]["Error"] == "PaymentDeclined"  # caught by the ASL Catch
    assert [(c["activity"], c["attempt"]) for c in calls] == [
        ("flaky", 1),
        ("flaky", 2),
        ("fail_always", 1),
    ]


@pytest.mark.parametrize("case_id", ["catches::caught_by_name", "catches::no_catcher_matches"])
def test_conformance_cases_through_the_handler(
    monkeypatch: pytest.MonkeyPatch, case_id: str
) -> None:
    set_environment(monkeypatch)
    case = CASES[case_id]
    with lambda_world() as world:
        described = run_on_moto(world, case.flow, case.input)
    expected = case.expect
    assert described["status"] == {"succeeded": "SUCCEEDED", "failed": "FAILED"}[expected.status]
    if expected.status == "succeeded":
        assert json.loads(described["output"]) == expected.output
    else:
        assert described["error"] == expected.error
