"""Helpers of the compiler and resume tests (no tests here): ARNs, lint, a moto runner.

``MotoMachines`` runs compiled machines on moto's Step Functions executor, with the fixes
moto needs (``rustyflower.adapters.localcloud.moto_fixes``). moto's Lambda without Docker
only echoes its payload, so while it is open the Lambda integration is routed
in-process: the activity function runs the conformance activities the way the activity
handler does (``adapters.aws.contract.activity_call``: an exception's class name
becomes ``errorType``), and the token function records the task tokens it is given.
This is a test stand-in for ``lambda_aws/``, not that code.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
from moto import mock_aws
from statelint.config import Config
from statelint.linter import Linter

from rustyflower.adapters.aws import AwsServiceBindings, compile_flow, deployment
from rustyflower.adapters.aws.contract import activity_call, token_request
from rustyflower.adapters.localcloud.moto_fixes import step_functions_fixes
from rustyflower.core.activities import ActivityContext, ActivityRegistry
from rustyflower.core.model import FlowDefinition
from tests.conformance.activities import registry as conformance_registry

REGION = "us-east-1"
ACCOUNT = "123456789012"
ACTIVITY_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:rf-activities"
TOKEN_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:rf-tokens"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/rf-states"
MOTO_CONFIG: Any = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}


def machine_name(definition: FlowDefinition) -> str:
    return f"{definition.name}-v{definition.version}".replace(".", "-")


def machine_arn(definition: FlowDefinition) -> str:
    return f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{machine_name(definition)}"


def flow_arns(definitions: Iterable[FlowDefinition]) -> dict[str, str]:
    return deployment.flow_arns(definitions, machine_arn)


SERVICES = AwsServiceBindings(queue_url_base="https://sqs.us-east-1.amazonaws.com/123456789012/")
"""Where the service tasks of the example flows go (examples/intake)."""


def compile_for(definition: FlowDefinition, flows: Iterable[FlowDefinition] = ()) -> dict[str, Any]:
    return compile_flow(
        definition,
        activity_function_arn=ACTIVITY_ARN,
        token_function_arn=TOKEN_ARN,
        flow_arns=flow_arns([definition, *flows]),
        services=SERVICES,
    )


def lint(document: Mapping[str, Any]) -> list[str]:
    """statelint's problems (its Python API; the CLI prints the same list)."""
    return list(Linter.validate(json.dumps(document), Config([], False, False)))


# --- moto ---------------------------------------------------------------------------------


@dataclass
class TokenSeen:
    kind: str
    token: str
    event: str | None
    wait_id: str | None
    since: str | None
    order: int
    used: bool = False


@dataclass
class FakeLambdas:
    """The activity and token functions, in-process."""

    registry: ActivityRegistry
    calls: list[dict[str, Any]] = field(default_factory=list)
    tokens: list[TokenSeen] = field(default_factory=list)

    def invoke(self, parameters: dict[str, Any], region: str, state_credentials: Any) -> Any:
        raw = parameters.get("Payload")
        payload: Any = json.loads(raw) if isinstance(raw, str | bytes | bytearray) else raw
        function = parameters["FunctionName"]
        if function == TOKEN_ARN:
            request = token_request(payload)
            self.tokens.append(
                TokenSeen(
                    request.kind,
                    request.task_token,
                    request.event,
                    request.wait_id,
                    request.since,
                    request.order,
                )
            )
            return {"StatusCode": 200, "Payload": {}}
        call = activity_call(payload)
        self.calls.append(
            {
                "activity": call.activity,
                "position": call.position,
                "attempt": call.attempt,
                "key": call.idempotency_key,
            }
        )
        context = ActivityContext(
            instance_id=call.instance_id,
            call_id=call.idempotency_key,
            idempotency_key=call.idempotency_key,
            attempt=call.attempt,
            activity=call.activity,
        )
        try:
            output = self.registry.call(call.activity, call.input, context)
        except Exception as error:
            return {
                "StatusCode": 200,
                "FunctionError": "Unhandled",
                "Payload": {"errorType": type(error).__name__, "errorMessage": str(error)},
            }
        return {"StatusCode": 200, "Payload": output}


@dataclass
class Outcome:
    status: str
    output: Any
    error: str | None
    cause: str | None


class MotoMachines:
    """Compiled machines deployed on moto; run executions and answer event waits."""

    def __init__(self, client: Any, lambdas: FakeLambdas) -> None:
        self.client = client
        self.lambdas = lambdas

    def deploy(self, definition: FlowDefinition, flows: Iterable[FlowDefinition] = ()) -> str:
        """Deploy ``definition`` and the flows it calls; the ARN of ``definition``'s machine."""
        flows = list(flows)
        for other in flows:
            self._create(other, flows)
        return self._create(definition, flows)

    def _create(self, definition: FlowDefinition, flows: list[FlowDefinition]) -> str:
        document = compile_for(definition, flows)
        try:
            return str(
                self.client.create_state_machine(
                    name=machine_name(definition),
                    definition=json.dumps(document),
                    roleArn=ROLE_ARN,
                )["stateMachineArn"]
            )
        except self.client.exceptions.StateMachineAlreadyExists:
            return machine_arn(definition)

    def start(self, arn: str, execution_input: Any, name: str) -> str:
        return str(
            self.client.start_execution(
                stateMachineArn=arn, name=name, input=json.dumps(execution_input)
            )["executionArn"]
        )

    def wait(
        self,
        execution_arn: str,
        *,
        timeout: float = 30.0,
        events: Iterable[tuple[str, Any]] = (),
    ) -> Outcome:
        """Poll until the execution ends; deliver ``events`` (name, data) to the oldest waiter."""
        pending = list(events)
        deadline = time.monotonic() + timeout
        while True:
            described = self.client.describe_execution(executionArn=execution_arn)
            if described["status"] != "RUNNING":
                output = described.get("output")
                return Outcome(
                    described["status"],
                    _json_or_text(output),
                    described.get("error"),
                    described.get("cause"),
                )
            if pending and self.deliver(*pending[0]):
                pending.pop(0)
            if time.monotonic() > deadline:
                raise AssertionError(f"{execution_arn} still running after {timeout} s")
            time.sleep(0.05)

    def deliver(self, event: str, data: Any) -> bool:
        waiters = [t for t in self.lambdas.tokens if t.kind == "event" and t.event == event]
        waiters = [t for t in waiters if not t.used]
        if not waiters:
            return False
        oldest = min(waiters, key=lambda t: (t.since or "", t.order))
        oldest.used = True
        self.client.send_task_success(taskToken=oldest.token, output=json.dumps(data))
        return True

    def run(self, arn: str, execution_input: Any, name: str, **options: Any) -> Outcome:
        return self.wait(self.start(arn, execution_input, name), **options)


def _json_or_text(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


@contextmanager
def moto_machines(registry: ActivityRegistry = conformance_registry) -> Iterator[MotoMachines]:
    lambdas = FakeLambdas(registry)
    quiet = logging.getLogger("moto")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        # moto's fixes live with the local AWS (adapters/localcloud/moto_fixes.py)
        with (
            mock_aws(config=MOTO_CONFIG),
            step_functions_fixes(lambdas.invoke, exact_timestamps=False),
        ):
            client = boto3.client("stepfunctions", region_name=REGION)
            yield MotoMachines(client, lambdas)
    finally:
        quiet.setLevel(level)
