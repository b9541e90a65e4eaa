"""Helpers of the lambda_aws tests (no tests here): moto resources and the real handlers.

``LambdaWorld`` opens moto (with its Step Functions executor on), creates the two tables
and the snapshot bucket the way infra/terraform/aws does, sets the functions' environment,
and routes the state machine's Lambda invokes in-process to the **real** handlers of
``lambda_aws`` (``activity.handler``, ``tokens.handler``), returning Lambda's unhandled-
error shape when a handler raises: ``errorType`` is the exception's class name, exactly
what the Lambda runtime reports. The router and moto's fixes are the local AWS's
(``rustyflower.adapters.localcloud``), in mock mode rather than server mode.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

import lambda_aws.activity
import lambda_aws.aws
import lambda_aws.keyring
import lambda_aws.tokens
import rustyflower.adapters.aws.tokens
from lambda_aws import settings as names
from rustyflower.adapters.aws import compile_flow, deployment
from rustyflower.adapters.localcloud.lambdas import LambdaRouter
from rustyflower.adapters.localcloud.moto_fixes import step_functions_fixes
from rustyflower.core.model import FlowDefinition
from rustyflower.core.snapshot.keys import SnapshotKeys, generate_signing_key

REGION = "us-east-1"
ACCOUNT = "123456789012"
ACTIVITY_FUNCTION = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:rf-activity"
TOKENS_FUNCTION = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:rf-tokens"
MACHINE_PREFIX = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:rf-"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/rf-states"
IDEMPOTENCY_TABLE = "rf-idempotency"
TOKENS_TABLE = "rf-tokens"
BUCKET = "rf-snapshots"
MOTO_CONFIG: Any = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}
SIGNING_KEY = generate_signing_key("test-2026")
KEYS = SnapshotKeys.signing_only(SIGNING_KEY)

FUNCTION_ENV: dict[str, str] = {
    "AWS_DEFAULT_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "POWERTOOLS_METRICS_NAMESPACE": names.METRICS_NAMESPACE,
    "POWERTOOLS_SERVICE_NAME": names.SERVICE,
    names.ENV_ACTIVITIES: "tests.conformance.activities",
    names.ENV_IDEMPOTENCY_TABLE: IDEMPOTENCY_TABLE,
    deployment.ENV_TOKENS_TABLE: TOKENS_TABLE,
    deployment.ENV_STATE_MACHINE_PREFIX: MACHINE_PREFIX,
    deployment.ENV_SNAPSHOT_BUCKET: BUCKET,
    names.ENV_SIGNING_KEYS: f"{SIGNING_KEY.key_id}:{SIGNING_KEY.to_base64()}",
    names.ENV_REQUIRE_SIGNATURE: "true",
}


@dataclass
class FakeContext:
    """What Powertools reads from a Lambda context."""

    function_name: str = "rf-activity"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = ACTIVITY_FUNCTION
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    remaining_ms: int = 60_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def reset_caches() -> None:
    """Forget clients, runners and keys built under another environment or mock."""
    lambda_aws.aws.client.cache_clear()
    lambda_aws.activity.reset()
    lambda_aws.keyring.forget()


def set_environment(monkeypatch: pytest.MonkeyPatch, **overrides: str | None) -> None:
    for name, value in {**FUNCTION_ENV, **overrides}.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    reset_caches()


def create_tables(dynamodb: Any) -> None:
    """The two tables, keyed as infra/terraform/aws keys them."""
    dynamodb.create_table(
        TableName=IDEMPOTENCY_TABLE,
        KeySchema=[{"AttributeName": names.IDEMPOTENCY_KEY_ATTRIBUTE, "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": names.IDEMPOTENCY_KEY_ATTRIBUTE, "AttributeType": "S"}
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.create_table(
        TableName=TOKENS_TABLE,
        KeySchema=[
            {"AttributeName": deployment.TOKENS_PARTITION_KEY, "KeyType": "HASH"},
            {"AttributeName": deployment.TOKENS_SORT_KEY, "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": deployment.TOKENS_PARTITION_KEY, "AttributeType": "S"},
            {"AttributeName": deployment.TOKENS_SORT_KEY, "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def machine_arn(definition: FlowDefinition) -> str:
    """``rf-<flow>-v<version>``: the name Terraform and the continue function use."""
    return MACHINE_PREFIX + deployment.state_machine_name(definition.name, definition.version)


def flow_arns(definitions: Iterable[FlowDefinition]) -> dict[str, str]:
    return deployment.flow_arns(definitions, machine_arn)


class RealLambdas(LambdaRouter):
    """The state machine's Lambda integration, answered by lambda_aws's handlers: the
    local AWS's router (``rustyflower.adapters.localcloud.lambdas``), recording each call."""

    def __init__(self) -> None:
        super().__init__(
            {
                ACTIVITY_FUNCTION: lambda_aws.activity.handler,
                TOKENS_FUNCTION: lambda_aws.tokens.handler,
            }
        )
        self.invocations: list[tuple[str, Any]] = []

    def before(self, function: str, payload: Any) -> None:
        self.invocations.append((function, payload))


@dataclass
class LambdaWorld:
    stepfunctions: Any
    dynamodb: Any
    s3: Any
    lambdas: RealLambdas

    def deploy(self, definition: FlowDefinition, flows: Iterable[FlowDefinition] = ()) -> str:
        """Deploy ``definition`` (and the flows it calls) as Terraform names them."""
        every = [*flows, definition]
        for one in every:
            document = compile_flow(
                one,
                activity_function_arn=ACTIVITY_FUNCTION,
                token_function_arn=TOKENS_FUNCTION,
                flow_arns=flow_arns(every),
            )
            name = machine_arn(one).rsplit(":", 1)[-1]
            with suppress(self.stepfunctions.exceptions.StateMachineAlreadyExists):
                self.stepfunctions.create_state_machine(
                    name=name, definition=json.dumps(document), roleArn=ROLE_ARN
                )
        return machine_arn(definition)

    def wait(self, execution_arn: str, *, timeout: float = 30.0) -> dict[str, Any]:
        """Poll until the execution leaves RUNNING; its describe_execution answer."""
        deadline = time.monotonic() + timeout
        while True:
            described: dict[str, Any] = self.stepfunctions.describe_execution(
                executionArn=execution_arn
            )
            if described["status"] != "RUNNING":
                return described
            if time.monotonic() > deadline:
                raise AssertionError(f"{execution_arn} still running after {timeout} s")
            time.sleep(0.05)

    def wait_for_waiter(
        self, instance_id: str, event: str, *, timeout: float = 30.0
    ) -> rustyflower.adapters.aws.tokens.Waiter:
        return first_waiter(self.token_store(), instance_id, event, timeout)

    def stop_all(self, timeout: float = 10.0) -> None:
        stop_executions(self.stepfunctions, self.dynamodb, timeout=timeout)

    def token_store(self) -> rustyflower.adapters.aws.tokens.TokenStore:
        return rustyflower.adapters.aws.tokens.TokenStore(TOKENS_TABLE, self.dynamodb, 3600)

    def settings(self) -> names.LambdaSettings:
        return names.LambdaSettings.from_env(FUNCTION_ENV)


def first_waiter(
    store: rustyflower.adapters.aws.tokens.TokenStore, instance_id: str, event: str, timeout: float
) -> rustyflower.adapters.aws.tokens.Waiter:
    """The oldest stored waiter of ``event``, once the token function has stored one."""
    deadline = time.monotonic() + timeout
    while True:
        found = list(store.waiters(instance_id, event))
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no waiter of {event!r} for {instance_id!r}")
        time.sleep(0.05)


def stop_executions(
    stepfunctions: Any,
    dynamodb: Any,
    *,
    timeout: float,
    more_tokens: Iterable[str] = (),
    strict: bool = True,
) -> None:
    """Stop every running execution and let moto's executor threads finish, so that none
    of them calls a handler after moto is closed (``strict``: still running is an error)."""
    deadline = time.monotonic() + timeout
    while True:
        running = [
            execution["executionArn"]
            for machine in stepfunctions.list_state_machines()["stateMachines"]
            for execution in stepfunctions.list_executions(
                stateMachineArn=machine["stateMachineArn"], statusFilter="RUNNING"
            )["executions"]
        ]
        if not running:
            time.sleep(0.1)  # an aborted execution's thread may finish its step
            return
        for arn in running:
            with suppress(Exception):
                stepfunctions.stop_execution(executionArn=arn)
        # moto does not stop an execution that waits for a task token: fail the tokens
        stored = [i["task_token"]["S"] for i in dynamodb.scan(TableName=TOKENS_TABLE)["Items"]]
        for token in [*stored, *more_tokens]:
            with suppress(Exception):
                stepfunctions.send_task_failure(taskToken=token, error="RF.TestTeardown")
        if time.monotonic() > deadline:
            if strict:
                raise AssertionError(f"executions still running: {running}")
            return
        time.sleep(0.05)


@contextmanager
def lambda_world() -> Iterator[LambdaWorld]:
    """moto with the executor on, tables, bucket, and the real handlers behind Lambda.

    Set the environment first (``set_environment``).
    """
    lambdas = RealLambdas()
    quiet = logging.getLogger("moto")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        with (
            mock_aws(config=MOTO_CONFIG),
            step_functions_fixes(lambdas.invoke, exact_timestamps=False),
        ):
            reset_caches()
            dynamodb = boto3.client("dynamodb", region_name=REGION)
            s3 = boto3.client("s3", region_name=REGION)
            create_tables(dynamodb)
            s3.create_bucket(Bucket=BUCKET)
            world = LambdaWorld(
                stepfunctions=boto3.client("stepfunctions", region_name=REGION),
                dynamodb=dynamodb,
                s3=s3,
                lambdas=lambdas,
            )
            try:
                yield world
            finally:
                world.stop_all()
    finally:
        reset_caches()
        quiet.setLevel(level)


def http_event(body: str | bytes, *, base64_body: bool = False, method: str = "POST") -> dict:
    """A Function URL (payload format 2.0) request event."""
    if base64_body:
        text = base64.b64encode(body if isinstance(body, bytes) else body.encode()).decode()
    else:
        text = body.decode() if isinstance(body, bytes) else body
    return {
        "version": "2.0",
        "rawPath": "/",
        "headers": {"content-type": "application/json"},
        "requestContext": {"http": {"method": method, "path": "/"}},
        "body": text,
        "isBase64Encoded": base64_body,
    }


def body_of(response: Mapping[str, Any]) -> Any:
    return json.loads(response["body"])
