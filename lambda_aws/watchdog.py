"""The watchdog function: takes the site over when its lease is stale (``handler``).

EventBridge Scheduler invokes it every minute (infra/terraform/aws/lifeboat.tf) with its
reserved concurrency at 1, so two runs never overlap. The procedure is
``adapters.continuity.watchdog``'s: read the site lease in DynamoDB
(``RUSTYFLOWER_LEASE_TABLE``); when the site named AWS as its lifeboat and has not
renewed for ``RUSTYFLOWER_TAKEOVER_AFTER_SECONDS``, win the conditional takeover, then
continue every replicated in-flight instance (``RUSTYFLOWER_REPLICA_BUCKET``) at its
epoch + 1, each root with its child flows, exactly as the continue function does for a
failover (``continuation.continue_snapshot``: digest check, the base snapshot kept for
failback, the execution ``execution_name(instance, epoch)``, so a repeated run finds the
execution it started). The takeover report goes next to the replicas; the answer says
what the run found (``verdict``) and did.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambda_aws.aws import client
from lambda_aws.continuation import RequestError, continue_snapshot
from lambda_aws.keyring import snapshot_keys
from lambda_aws.observability import MetricUnit, logger, metrics, tracer
from lambda_aws.settings import (
    DEFAULT_TAKEOVER_AFTER,
    ENV_SITE_ID,
    ENV_TAKEOVER_AFTER,
    LambdaSettings,
)
from rustyflower.adapters.aws.deployment import (
    ENV_LEASE_TABLE,
    ENV_REPLICA_BUCKET,
    execution_arn,
)
from rustyflower.adapters.aws.lifeboat import DynamoLeaseStore, S3ReplicaStore
from rustyflower.adapters.aws.resume import execution_name
from rustyflower.adapters.continuity.watchdog import (
    Continued,
    Takeover,
    Watchdog,
    WatchdogSettings,
    run_takeover,
)
from rustyflower.core.lifeboat.takeover import TakeoverGroup
from rustyflower.core.settings import SettingsError, setting_text, setting_whole_number
from rustyflower.core.snapshot.handover import HandoverRequest
from rustyflower.core.snapshot.keys import SnapshotKeys

__all__ = ["TakeoverRefused", "continue_group", "handler", "watch"]


class TakeoverRefused(Exception):
    """The continue step refused a group (the report carries the reason)."""


TAKEOVER_CONCURRENCY = 8
"""Groups continued at once: each is a few round trips (S3, Step Functions), so the last
instance's recovery no longer waits for every one before it."""


def continue_group(
    taken: TakeoverGroup,
    takeover: Takeover,
    *,
    settings: LambdaSettings,
    stepfunctions: Any,
    s3: Any,
    now: datetime,
) -> Continued:
    """Start (or find) the execution continuing ``taken`` at its takeover epoch."""
    root_data, _ = takeover.sealed(taken)
    root = taken.root.snapshot
    request = HandoverRequest(
        snapshot=root,
        raw=root_data,
        children=tuple(child.snapshot for child in taken.children),
    )
    try:
        status, answer = continue_snapshot(
            request, settings=settings, stepfunctions=stepfunctions, s3=s3, now=now
        )
    except RequestError as refused:
        raise TakeoverRefused(f"{refused.error}: {refused.message}") from None
    children = {}
    for child in taken.children:
        machine = settings.state_machine_arn(
            child.snapshot.definition.name, child.snapshot.definition.version
        )
        # a child in flight is continued by its parent's execution as the execution
        # named after the child and the parent's epoch (adapters.aws.resume)
        children[child.instance_id] = execution_arn(
            machine, execution_name(child.instance_id, root.epoch)
        )
    return Continued(
        str(answer["executionArn"]), "started" if status == 201 else "existing", children
    )


def watch(
    environ: Mapping[str, str],
    *,
    keys: SnapshotKeys,
    dynamodb: Any,
    s3: Any,
    stepfunctions: Any,
    now: Any = None,
) -> dict[str, Any]:
    """One watchdog run over ``environ``'s settings; the answer document."""
    clock = now or (lambda: datetime.now(UTC))
    site = setting_text(environ, ENV_SITE_ID)
    bucket = setting_text(environ, ENV_REPLICA_BUCKET)
    table = setting_text(environ, ENV_LEASE_TABLE)
    missing = [
        name
        for name, value in (
            (ENV_SITE_ID, site),
            (ENV_REPLICA_BUCKET, bucket),
            (ENV_LEASE_TABLE, table),
        )
        if not value
    ]
    if missing:
        raise SettingsError(f"the watchdog needs {', '.join(missing)}")
    assert site and bucket and table
    threshold = setting_whole_number(environ, ENV_TAKEOVER_AFTER, DEFAULT_TAKEOVER_AFTER, 10)
    lambda_settings = LambdaSettings.from_env(environ)
    watchdog = Watchdog(
        WatchdogSettings(site=site, cloud="aws", threshold=float(threshold)),
        DynamoLeaseStore(dynamodb, table),
        S3ReplicaStore(s3, bucket, site),
        keys,
        clock,
    )
    verdict = watchdog.check()
    logger.info("site lease checked", extra=verdict.document())
    answer: dict[str, Any] = {"site": site, **verdict.document(), "takeover": None}
    takeover = watchdog.begin(verdict)
    if takeover is None:
        return answer
    logger.warning("taking the site over", extra={"takeover": takeover.report.takeover_id})
    report = run_takeover(
        takeover,
        functools.partial(
            continue_group,
            settings=lambda_settings,
            stepfunctions=stepfunctions,
            s3=s3,
            now=clock(),
        ),
        concurrency=TAKEOVER_CONCURRENCY,
    )
    counts: dict[str, int] = {}
    for entry in report.instances:
        counts[entry.result] = counts.get(entry.result, 0) + 1
    metrics.add_metric(name="Takeover", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="TakenOverInstances", unit=MetricUnit.Count, value=len(report.taken))
    answer["takeover"] = {"id": report.takeover_id, "instances": counts}
    return answer


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    """``lambda_aws.watchdog.handler``: check the site lease, take the site over if stale."""
    del event  # the schedule's input carries nothing the watchdog needs
    settings = LambdaSettings.from_env(os.environ)
    return watch(
        os.environ,
        keys=snapshot_keys(os.environ, settings.keys_secret),
        dynamodb=client("dynamodb"),
        s3=client("s3"),
        stepfunctions=client("stepfunctions"),
    )
