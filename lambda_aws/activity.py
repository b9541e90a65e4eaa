"""The activity function: one activity call of a compiled state machine.

Input: the activity payload of ``adapters.aws.contract`` (``activity``, ``input``,
``instance_id``, ``attempt``, ``call``). The call runs through
``core.activities.perform``, exactly as on every other runtime, with the call's
idempotency key (``instance:position:attempt:tag``) in ``current_call()``.

* Success: the activity's output is the function's result (the state machine reads it at
  ``$.Payload``).
* Failure: the function raises an exception whose **class name is the activity's error
  name** (``PaymentDeclined``, ``UnknownActivity``...), with the cause as its message. Lambda
  reports the class name as ``errorType``, which Step Functions uses as the error name that
  the compiled ``Retry`` and ``Catch`` match.
* Idempotency: with ``RUSTYFLOWER_IDEMPOTENCY_TABLE`` set, a call whose key already
  succeeded returns the stored output without running again (a re-run after a failover,
  a Lambda service retry). Failures are not stored: a retry runs the activity again.
  ``RUSTYFLOWER_IDEMPOTENCY=off`` switches it off (local runs, tests).
"""

from __future__ import annotations

import functools
import os
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambda_aws.errors import NamedError, named_error
from lambda_aws.observability import MetricUnit, logger, metrics, tracer
from lambda_aws.settings import (
    IDEMPOTENCY_KEY_ATTRIBUTE,
    IDEMPOTENCY_KEY_PREFIX,
    IDEMPOTENCY_TTL_ATTRIBUTE,
    LambdaSettings,
)
from rustyflower.adapters.aws.contract import ActivityCall, PayloadError, activity_call
from rustyflower.adapters.aws.services import ActivityFunctionBackends
from rustyflower.adapters.services.http import UrllibHttp
from rustyflower.core.activities import ActivityRegistry, load_registry, perform
from rustyflower.core.engine import ActivityFailed, RunActivity
from rustyflower.core.services.calls import with_services

INVALID_PAYLOAD = "RF.InvalidPayload"
"""The payload does not follow adapters.aws.contract (a machine/function mismatch)."""
IN_PROGRESS = "RF.ActivityInProgress"
"""The same call (same idempotency key) is running in another invocation right now."""
KEY_REUSED = "RF.IdempotencyKeyReused"
"""A stored call with this idempotency key ran another activity."""

METRIC_SUCCEEDED = "ActivitySucceeded"
METRIC_FAILED = "ActivityFailed"
METRIC_DEDUPLICATED = "ActivityDeduplicated"


def activity_error(name: str, cause: str) -> NamedError:
    """The exception that reports activity error ``name`` to Step Functions."""
    return named_error(name, cause)


class ActivityRunner:
    """Runs activity payloads against one registry, idempotently when configured."""

    def __init__(
        self, settings: LambdaSettings, registry: ActivityRegistry, dynamodb: Any = None
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.config: IdempotencyConfig | None = None
        self._run: Any = self._perform
        if settings.idempotency:
            table = settings.require(settings.idempotency_table, "RUSTYFLOWER_IDEMPOTENCY_TABLE")
            persistence = DynamoDBPersistenceLayer(
                table_name=table,
                key_attr=IDEMPOTENCY_KEY_ATTRIBUTE,
                expiry_attr=IDEMPOTENCY_TTL_ATTRIBUTE,
                boto3_client=dynamodb,
            )
            self.config = IdempotencyConfig(
                event_key_jmespath="key",
                payload_validation_jmespath="activity",
                raise_on_no_idempotency_key=True,
                expires_after_seconds=settings.idempotency_ttl,
                response_hook=_deduplicated,
            )
            self._run = idempotent_function(
                self._perform,
                data_keyword_argument="call",
                persistence_store=persistence,
                config=self.config,
                key_prefix=IDEMPOTENCY_KEY_PREFIX,
            )

    def run(self, payload: Any, context: LambdaContext | None = None) -> Any:
        """The activity's output; raises an exception named after the error when it fails."""
        if not isinstance(payload, dict):
            metrics.add_metric(name=METRIC_FAILED, unit=MetricUnit.Count, value=1)
            raise activity_error(INVALID_PAYLOAD, "the activity payload is not a JSON object")
        try:
            call = activity_call(payload)
        except PayloadError as problem:
            metrics.add_metric(name=METRIC_FAILED, unit=MetricUnit.Count, value=1)
            raise activity_error(INVALID_PAYLOAD, str(problem)) from None
        logger.append_keys(
            instance_id=call.instance_id,
            idempotency_key=call.idempotency_key,
            activity=call.activity,
            position=call.position,
            attempt=call.attempt,
        )
        # per flow and state, as the dashboard shows them (infra/terraform/aws/observability.tf)
        metrics.add_dimension(name="flow", value=call.flow or "unknown")
        metrics.add_dimension(name="state", value=call.state)
        metrics.add_dimension(name="activity", value=call.activity)
        if self.config is not None and context is not None:
            self.config.register_lambda_context(context)
        try:
            return self._run(call=_call_document(call))
        except IdempotencyAlreadyInProgressError:
            raise activity_error(
                IN_PROGRESS,
                f"call {call.idempotency_key!r} is running in another invocation; "
                "its result will be stored when it ends",
            ) from None
        except IdempotencyValidationError:
            raise activity_error(
                KEY_REUSED,
                f"idempotency key {call.idempotency_key!r} was stored for another activity "
                f"than {call.activity!r}",
            ) from None

    def _perform(self, call: dict[str, Any]) -> Any:
        command = RunActivity(
            call_id=call["key"],
            activity=call["activity"],
            input=call["input"],
            position=call["position"],
            attempt=call["attempt"],
            idempotency_key=call["key"],
            # the Task's TimeoutSeconds bounds the call in Step Functions
            timeout_seconds=None,
        )
        with tracer.provider.in_subsegment(f"## activity {command.activity}") as segment:
            segment.put_annotation(key="activity", value=command.activity)
            event = perform(self.registry, call["instance_id"], command)
        if isinstance(event, ActivityFailed):
            metrics.add_metric(name=METRIC_FAILED, unit=MetricUnit.Count, value=1)
            logger.info("activity failed", extra={"error": event.error})
            raise activity_error(event.error, event.cause or event.error)
        metrics.add_metric(name=METRIC_SUCCEEDED, unit=MetricUnit.Count, value=1)
        logger.info("activity succeeded")
        return event.output


def _call_document(call: ActivityCall) -> dict[str, Any]:
    """What the idempotency layer sees: ``key`` is hashed, ``activity`` is validated."""
    return {
        "key": call.idempotency_key,
        "activity": call.activity,
        "input": call.input,
        "instance_id": call.instance_id,
        "position": call.position,
        "attempt": call.attempt,
    }


def _deduplicated(response: Any, idempotent_data: DataRecord) -> Any:
    metrics.add_metric(name=METRIC_DEDUPLICATED, unit=MetricUnit.Count, value=1)
    logger.info("stored result returned: the call already succeeded")
    return response


@functools.cache
def _runner(settings: LambdaSettings) -> ActivityRunner:
    # http.call of a machine compiled without an EventBridge connection runs here, with
    # the same HTTP client as on the site and in Azure
    backends = ActivityFunctionBackends(UrllibHttp())
    return ActivityRunner(settings, with_services(load_registry(settings.activities), backends))


def runner() -> ActivityRunner:
    """The runner of this process's settings (built once per settings)."""
    return _runner(LambdaSettings.from_env(os.environ))


def reset() -> None:
    """Forget the cached runners (tests that change the environment)."""
    _runner.cache_clear()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> Any:
    """``lambda_aws.activity.handler``: run one activity call."""
    return runner().run(event, context)
