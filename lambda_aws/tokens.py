"""The token function: stores the task token of an event wait (``handler``).

The table, its layout and ``signal`` (what ``rustyflower signal`` runs for an instance
living in AWS) are in ``adapters.aws.tokens``; this module wires them to Lambda.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambda_aws.aws import client
from lambda_aws.observability import MetricUnit, logger, metrics, tracer
from lambda_aws.settings import LambdaSettings
from rustyflower.adapters.aws.contract import PayloadError, token_request
from rustyflower.adapters.aws.deployment import ENV_TOKENS_TABLE
from rustyflower.adapters.aws.tokens import TokenStore


def store_from_env(environ: Any = None, dynamodb: Any = None) -> TokenStore:
    """The token store named by ``RUSTYFLOWER_TOKENS_TABLE``."""
    settings = LambdaSettings.from_env(os.environ if environ is None else environ)
    table = settings.require(settings.tokens_table, ENV_TOKENS_TABLE)
    return TokenStore(table, dynamodb or client("dynamodb"), settings.token_ttl)


def register(payload: Any, store: TokenStore, now: datetime | None = None) -> dict[str, Any]:
    """The token function's work: store an event wait's token; the answer is logged only."""
    if not isinstance(payload, dict):
        raise PayloadError("the token payload is not a JSON object")
    request = token_request(payload)
    logger.append_keys(instance_id=request.instance_id, kind=request.kind)
    if request.kind == "deadline":
        return {"stored": False, "kind": "deadline"}
    waiter = store.register(request, now or datetime.now(UTC))
    logger.append_keys(event=waiter.event, wait_id=waiter.wait_id)
    metrics.add_metric(name="EventWaitRegistered", unit=MetricUnit.Count, value=1)
    logger.info("event wait registered")
    return {"stored": True, "kind": "event", "wait_id": waiter.wait_id, "rank": waiter.rank}


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """``lambda_aws.tokens.handler``: store the task token of an event wait."""
    return register(event, store_from_env())
