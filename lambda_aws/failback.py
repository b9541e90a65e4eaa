"""The failback function: one execution read back as a signed snapshot (``handler``).

The reader (history -> engine replay -> snapshot) is ``adapters.aws.failback``, over
the history as ``adapters.aws.history`` reads it; this module adds what the function
needs around it: finding the execution, the snapshot it continued from (kept in the
snapshot bucket by the continue function), sealing the result and keeping a copy under
``failback/``.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambda_aws.aws import client
from lambda_aws.errors import named_error
from lambda_aws.keyring import snapshot_keys
from lambda_aws.observability import MetricUnit, logger, metrics, tracer
from lambda_aws.settings import LambdaSettings
from rustyflower.adapters.aws.deployment import (
    ENV_SNAPSHOT_BUCKET,
    FAILBACK_PREFIX,
    base_snapshot_key,
)
from rustyflower.adapters.aws.failback import (
    FailbackError,
    failback_execution,
    stop_execution,
)
from rustyflower.adapters.aws.history import json_document
from rustyflower.adapters.aws.resume import execution_name
from rustyflower.core.engine import Snapshot
from rustyflower.core.model import parse_definition
from rustyflower.core.snapshot.document import decode_snapshot, encode_snapshot
from rustyflower.core.snapshot.keys import SnapshotKeys

MAX_INLINE_SNAPSHOT = 4 * 1024 * 1024
"""Larger snapshots are only in the bucket (Lambda answers are at most 6 MB)."""


def _request_arn(event: Mapping[str, Any], settings: LambdaSettings) -> str:
    arn = event.get("execution_arn")
    if isinstance(arn, str) and arn:
        return arn
    flow, version = event.get("flow"), event.get("version")
    instance_id, epoch = event.get("instance_id"), event.get("epoch", 0)
    if not all(isinstance(v, str) and v for v in (flow, version, instance_id)):
        raise FailbackError(
            "give 'execution_arn', or 'flow', 'version', 'instance_id' (and 'epoch')"
        )
    machine = settings.state_machine_arn(str(flow), str(version))
    name = execution_name(str(instance_id), int(epoch))
    return machine.replace(":stateMachine:", ":execution:", 1) + ":" + name


def _base_from_bucket(
    execution: Mapping[str, Any], settings: LambdaSettings, keys: SnapshotKeys, s3: Any
) -> Snapshot | None:
    document = json_document(execution.get("input"), "the execution's input")
    rf = document.get("rf") if isinstance(document, Mapping) else None
    if not isinstance(rf, Mapping) or rf.get("resume") is None:
        return None
    bucket = settings.require(settings.snapshot_bucket, ENV_SNAPSHOT_BUCKET)
    key = base_snapshot_key(str(execution.get("name")), int(rf.get("seq", 0)))
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return decode_snapshot(body, keys)


def handle(
    event: Mapping[str, Any],
    *,
    settings: LambdaSettings,
    keys: SnapshotKeys,
    stepfunctions: Any,
    s3: Any,
) -> dict[str, Any]:
    """``{"execution_arn": ..., "stop": bool, "definition": <flow document>}`` ->
    ``{"instanceId", "status", "seq", "epoch", "key", "snapshot": base64}``."""
    arn = _request_arn(event, settings)
    execution = (
        stop_execution(stepfunctions, arn)
        if event.get("stop")
        else stepfunctions.describe_execution(executionArn=arn)
    )
    definition = None
    if event.get("definition") is not None:
        definition = parse_definition(event["definition"], source="failback request")
    base = _base_from_bucket(execution, settings, keys, s3)
    snapshot = failback_execution(stepfunctions, arn, base=base, definition=definition)
    sealed = encode_snapshot(snapshot, keys)
    answer: dict[str, Any] = {
        "instanceId": snapshot.instance_id,
        "status": snapshot.status,
        "seq": snapshot.seq,
        "epoch": snapshot.epoch,
        "executionStatus": execution.get("status"),
    }
    if settings.snapshot_bucket:
        key = f"{FAILBACK_PREFIX}{snapshot.instance_id}/{execution.get('name')}.snapshot"
        s3.put_object(
            Bucket=settings.snapshot_bucket,
            Key=key,
            Body=sealed,
            ContentType="application/json",
        )
        answer["key"] = key
    if len(sealed) <= MAX_INLINE_SNAPSHOT:
        answer["snapshot"] = base64.b64encode(sealed).decode("ascii")
    metrics.add_metric(name="FailbackRead", unit=MetricUnit.Count, value=1)
    return answer


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """``lambda_aws.failback.handler``: one execution -> a signed snapshot."""
    settings = LambdaSettings.from_env(os.environ)
    try:
        return handle(
            event,
            settings=settings,
            keys=snapshot_keys(os.environ, settings.keys_secret),
            stepfunctions=client("stepfunctions"),
            s3=client("s3"),
        )
    except FailbackError as problem:
        metrics.add_metric(name="FailbackRefused", unit=MetricUnit.Count, value=1)
        logger.warning("failback refused", extra={"reason": str(problem)})
        raise named_error("FailbackError", str(problem)) from None
