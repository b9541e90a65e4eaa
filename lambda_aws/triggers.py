"""The trigger function: the flows' triggers in AWS (``handler``).

The work is ``adapters.aws.triggers.TriggerRunner``'s; this module wires it to Lambda:
the deployed triggers from ``RUSTYFLOWER_TRIGGERS``, Step Functions, the token table for
signals and the idempotency table that remembers signalled messages.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambda_aws.aws import client
from lambda_aws.observability import MetricUnit, logger, metrics, tracer
from lambda_aws.settings import (
    IDEMPOTENCY_KEY_ATTRIBUTE,
    IDEMPOTENCY_TTL_ATTRIBUTE,
    LambdaSettings,
)
from lambda_aws.tokens import store_from_env
from rustyflower.adapters.aws.tokens import signal
from rustyflower.adapters.aws.triggers import (
    ENV_TRIGGERS,
    TriggerRunner,
    deployed_triggers,
    dynamodb_first_time,
)


@functools.cache
def _runner(text: str, table: str) -> TriggerRunner:
    settings = LambdaSettings.from_env(os.environ)
    stepfunctions = client("stepfunctions")
    tokens = store_from_env()

    def deliver(instance_id: str, event: str, data: Any) -> None:
        signal(instance_id, event, data, store=tokens, stepfunctions=stepfunctions)

    first_time = dynamodb_first_time(
        table,
        client("dynamodb"),
        key_attribute=IDEMPOTENCY_KEY_ATTRIBUTE,
        ttl_attribute=IDEMPOTENCY_TTL_ATTRIBUTE,
        ttl_seconds=settings.idempotency_ttl,
        now=lambda: int(time.time()),
    )
    return TriggerRunner(deployed_triggers(text), stepfunctions, deliver, first_time)


def runner() -> TriggerRunner:
    """The runner of this process's settings (built once per settings)."""
    settings = LambdaSettings.from_env(os.environ)
    table = settings.require(settings.idempotency_table, "RUSTYFLOWER_IDEMPOTENCY_TABLE")
    return _runner(os.environ.get(ENV_TRIGGERS, "[]"), table)


def reset() -> None:
    _runner.cache_clear()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """``lambda_aws.triggers.handler``: start or signal for SQS messages and rule events."""
    work = runner()
    before = (work.started, work.existing, work.signalled, work.ignored)
    answer = work.handle(event)
    after = (work.started, work.existing, work.signalled, work.ignored)
    for name, old, new in zip(
        ("TriggerStarted", "TriggerRedelivered", "TriggerSignalled", "TriggerIgnored"),
        before,
        after,
        strict=True,
    ):
        if new > old:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=new - old)
    return answer
