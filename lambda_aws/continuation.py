"""The continue function: a signed snapshot in, a Step Functions execution started.

Called through its Function URL (``POST`` with the snapshot as the body, IAM-signed), an
API Gateway proxy, or ``lambda:Invoke`` directly. The body (or the direct event) is either
the snapshot itself (its canonical JSON, as ``encode_snapshot`` writes it) or the handover
envelope the site writes (``core.snapshot.handover``: the snapshot, the snapshots of its
child flows in flight, which ``execution_input`` continues, and the envelope's signature).

Steps: verify the snapshot with the function's keys (an unsigned one is refused when
signatures are required; children or definitions next to it must be covered by the
envelope's signature, and a child must be the instance's); find the machine compiled from
its definition (``RUSTYFLOWER_STATE_MACHINE_PREFIX`` + ``<flow>-v<version>``) and refuse a
snapshot whose definition digest is not the one in the machine's ``Comment``; store the
snapshot in the snapshot bucket (``continued/<execution name>/s<seq>.snapshot``, the
failback reader's starting point); start the execution under ``execution_name(instance,
epoch)``. The same instance and epoch twice is one execution: the second call answers with
the first.

Answers (HTTP status / direct invoke): 201 ``started`` or 200 ``existing`` with
``executionArn``; 400 for a bad snapshot (``error`` names it: ``SignatureMissingError``,
``SignatureInvalidError``, ``MalformedSnapshotError``...), 404 ``FlowNotDeployed``, 409
``DigestMismatchError``, 422 ``ResumeError`` (finished or held instance). A direct
invoke gets the same document, or raises an exception named after the error.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambda_aws.aws import ClientError, client, error_code
from lambda_aws.errors import named_error
from lambda_aws.keyring import snapshot_keys
from lambda_aws.observability import MetricUnit, logger, metrics, tracer
from lambda_aws.settings import LambdaSettings
from rustyflower.adapters.aws.deployment import base_snapshot_key, execution_arn
from rustyflower.adapters.aws.errors import DigestMismatchError, ResumeError
from rustyflower.adapters.aws.resume import (
    check_digest,
    deployed_digest,
    execution_input,
    execution_name,
)
from rustyflower.core.errors import DefinitionError, SnapshotError
from rustyflower.core.snapshot.handover import HandoverError, HandoverRequest, decode_handover
from rustyflower.core.snapshot.keys import SnapshotKeys

MALFORMED = "MalformedSnapshotError"


class RequestError(Exception):
    """A request the function refuses: HTTP ``status`` and a specific ``error`` name."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "message": self.message}


# --- parsing ------------------------------------------------------------------------------


def is_http_event(event: Mapping[str, Any]) -> bool:
    """An API Gateway (REST or HTTP API) or Function URL event, rather than a direct invoke."""
    return "requestContext" in event and ("body" in event or "rawPath" in event)


def http_body(event: Mapping[str, Any]) -> bytes:
    body = event.get("body") or ""
    if not isinstance(body, str):
        raise RequestError(400, MALFORMED, "the request body is not text")
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(400, MALFORMED, "the body is not valid base64") from None
    return body.encode("utf-8")


def parse_request(document: Any, keys: SnapshotKeys) -> HandoverRequest:
    """The verified handover (``core.snapshot.handover``) of a request body or direct event.

    Sub-flow definitions in it are verified like the rest but not used: a flow's
    sub-flows are state machines of their own, deployed with it.
    """
    if not isinstance(document, bytes | Mapping):
        raise RequestError(400, MALFORMED, "the request is not a snapshot or a JSON object")
    try:
        return decode_handover(document, keys)
    except SnapshotError as error:
        raise RequestError(400, type(error).__name__, str(error)) from None
    except HandoverError as error:
        raise RequestError(400, "BadRequest", str(error)) from None
    except DefinitionError as error:
        raise RequestError(400, "DefinitionError", str(error)) from None


# --- continuing -----------------------------------------------------------------------------


def continue_snapshot(
    request: HandoverRequest,
    *,
    settings: LambdaSettings,
    stepfunctions: Any,
    s3: Any = None,
    now: datetime | None = None,
) -> tuple[int, dict[str, Any]]:
    """Start (or find) the execution continuing ``request.snapshot``: (status, answer)."""
    snapshot = request.snapshot
    definition = snapshot.definition
    machine = settings.state_machine_arn(definition.name, definition.version)
    logger.append_keys(
        instance_id=snapshot.instance_id, epoch=snapshot.epoch, seq=snapshot.seq, flow=machine
    )
    try:
        described = stepfunctions.describe_state_machine(stateMachineArn=machine)
    except ClientError as error:
        if error_code(error) in ("StateMachineDoesNotExist", "InvalidArn"):
            raise RequestError(
                404,
                "FlowNotDeployed",
                f"flow {definition.name!r} version {definition.version!r} has no state "
                f"machine {machine}: compile and deploy it first",
            ) from None
        raise
    try:
        check_digest(snapshot, deployed_digest(described))
    except DigestMismatchError as error:
        raise RequestError(409, "DigestMismatchError", str(error)) from None
    try:
        document = execution_input(
            snapshot,
            now=now or datetime.now(UTC),
            children={child.instance_id: child for child in request.children},
        )
    except ResumeError as error:
        raise RequestError(422, "ResumeError", str(error)) from None
    name = execution_name(snapshot.instance_id, snapshot.epoch)
    arn = execution_arn(machine, name)
    if settings.snapshot_bucket:
        (s3 or client("s3")).put_object(
            Bucket=settings.snapshot_bucket,
            Key=base_snapshot_key(name, snapshot.seq),
            Body=request.raw,
            ContentType="application/json",
        )
    existing = _existing(stepfunctions, arn)
    if existing is None:
        try:
            started = stepfunctions.start_execution(
                stateMachineArn=machine, name=name, input=json.dumps(document)
            )
        except ClientError as error:
            if error_code(error) != "ExecutionAlreadyExists":
                raise
            existing = stepfunctions.describe_execution(executionArn=arn)
    if existing is not None:
        metrics.add_metric(name="ContinueDuplicate", unit=MetricUnit.Count, value=1)
        logger.info("execution already exists", extra={"execution_arn": arn})
        return 200, {
            "status": "existing",
            "executionArn": arn,
            "executionName": name,
            "executionStatus": existing.get("status"),
            "instanceId": snapshot.instance_id,
            "epoch": snapshot.epoch,
        }
    metrics.add_metric(name="ContinueStarted", unit=MetricUnit.Count, value=1)
    logger.info("execution started", extra={"execution_arn": started["executionArn"]})
    return 201, {
        "status": "started",
        "executionArn": started["executionArn"],
        "executionName": name,
        "instanceId": snapshot.instance_id,
        "epoch": snapshot.epoch,
        "seq": snapshot.seq,
    }


def _existing(stepfunctions: Any, arn: str) -> dict[str, Any] | None:
    """The execution ``arn`` when it exists (running or ended), else None.

    Step Functions answers a repeated StartExecution of a running execution with the same
    name and input as if it started it; asking first tells a repeat from a start.
    """
    try:
        described: dict[str, Any] = stepfunctions.describe_execution(executionArn=arn)
    except ClientError as error:
        if error_code(error) == "ExecutionDoesNotExist":
            return None
        raise
    return described


def handle(
    event: Any,
    *,
    settings: LambdaSettings,
    keys: SnapshotKeys,
    stepfunctions: Any,
    s3: Any = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The function's answer to ``event``: an HTTP response for HTTP events, else the
    answer document (a refusal is raised as an exception named after its error)."""
    http = isinstance(event, Mapping) and is_http_event(event)
    try:
        if http:
            method = _method(event)
            if method not in (None, "POST"):
                raise RequestError(405, "MethodNotAllowed", "POST a snapshot")
            request = parse_request(http_body(event), keys)
        else:
            request = parse_request(event, keys)
        status, answer = continue_snapshot(
            request, settings=settings, stepfunctions=stepfunctions, s3=s3, now=now
        )
    except RequestError as refused:
        metrics.add_metric(name="ContinueRefused", unit=MetricUnit.Count, value=1)
        logger.warning("continue refused", extra={"error": refused.error})
        if not http:
            raise named_error(refused.error, refused.message) from None
        return _response(refused.status, refused.body())
    return _response(status, answer) if http else answer


def _method(event: Mapping[str, Any]) -> str | None:
    context = event.get("requestContext") or {}
    method = (context.get("http") or {}).get("method") or event.get("httpMethod")
    return str(method).upper() if method else None


def _response(status: int, body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body),
    }


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    """``lambda_aws.continuation.handler``: continue a signed snapshot in Step Functions."""
    settings = LambdaSettings.from_env(os.environ)
    return handle(
        event,
        settings=settings,
        keys=snapshot_keys(os.environ, settings.keys_secret),
        stepfunctions=client("stepfunctions"),
    )
