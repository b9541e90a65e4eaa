"""The flows' triggers in AWS: an SQS queue or an EventBridge rule, through one Lambda.

Terraform (``infra/terraform/aws/triggers.tf``) gives the trigger function every trigger
of the deployed flows (``RUSTYFLOWER_TRIGGERS``: flow, machine, trigger, and the queue's
ARN or the bus) and wires each source to it: an SQS event source mapping per queue
trigger, an EventBridge rule per events trigger whose target wraps the event as
``{"rustyflower_trigger": "<flow>/<trigger>", "event": <the event>}``. What a message
does is ``core.triggers.trigger_action``'s decision:

* start: ``StartExecution`` named after the instance id the message makes
  (``execution_name(<flow>:<trigger>@<message id>, 0)``); a message delivered again finds
  the execution and starts nothing (Step Functions answers the running execution of that
  name and input again, and ``ExecutionAlreadyExists`` for a closed one);
* signal: the event to the instance's oldest waiter (``adapters.aws.tokens.signal``),
  once per message id: a conditional put of ``trigger#<flow>/<trigger>@<id>`` in the
  idempotency table goes first;
* ignore: logged.

An SQS record whose handling failed (AWS answered an error) is reported back
(``batchItemFailures``) so SQS delivers it again; nothing else is.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError  # type: ignore[import-untyped, unused-ignore]

from rustyflower.adapters.aws.resume import execution_name, fresh_input
from rustyflower.core.errors import EventRejectedError
from rustyflower.core.model import Trigger
from rustyflower.core.triggers import (
    TriggerAction,
    event_message,
    queue_message,
    trigger_action,
)

log = logging.getLogger("rustyflower.triggers")

ENV_TRIGGERS = "RUSTYFLOWER_TRIGGERS"
TARGET_KEY = "rustyflower_trigger"
"""The key of the rule target's input that names the trigger an event is for."""


class TriggerConfigError(ValueError):
    """``RUSTYFLOWER_TRIGGERS`` does not describe the deployed triggers."""


@dataclass(frozen=True)
class DeployedTrigger:
    flow: str
    machine_arn: str
    trigger: Trigger
    queue_arn: str | None = None

    @property
    def key(self) -> str:
        return f"{self.flow}/{self.trigger.name}"


def deployed_triggers(text: str) -> list[DeployedTrigger]:
    """The triggers of ``RUSTYFLOWER_TRIGGERS`` (a JSON list)."""
    try:
        entries = json.loads(text or "[]")
        return [
            DeployedTrigger(
                str(entry["flow"]),
                str(entry["machine_arn"]),
                Trigger.model_validate(entry["trigger"]),
                entry.get("queue_arn"),
            )
            for entry in entries
        ]
    except (ValueError, KeyError, TypeError) as problem:
        raise TriggerConfigError(f"{ENV_TRIGGERS}: {problem}") from None


Signaller = Callable[[str, str, Any], None]
"""Deliver (instance id, event, data) to the instance's oldest waiter."""
FirstTime = Callable[[str], bool]
"""Record a key; True the first time it is recorded."""


class TriggerRunner:
    """Carries out the triggers' messages against Step Functions."""

    def __init__(
        self,
        triggers: Iterable[DeployedTrigger],
        stepfunctions: Any,
        signal: Signaller,
        first_time: FirstTime,
    ) -> None:
        self.triggers = list(triggers)
        self.stepfunctions = stepfunctions
        self.signal = signal
        self.first_time = first_time
        self.started = 0
        self.existing = 0
        self.signalled = 0
        self.ignored = 0

    def handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """The trigger function's work for one invocation (SQS batch or one rule event)."""
        if TARGET_KEY in event:
            self.rule_event(str(event[TARGET_KEY]), event.get("event") or {})
            return {}
        failures = []
        for record in event.get("Records") or []:
            try:
                self.sqs_record(record)
            except Exception:
                log.exception("SQS message %s will come again", record.get("messageId"))
                failures.append({"itemIdentifier": record.get("messageId")})
        return {"batchItemFailures": failures}

    def sqs_record(self, record: Mapping[str, Any]) -> None:
        source = record.get("eventSourceARN")
        matching = [t for t in self.triggers if t.queue_arn == source]
        if not matching:
            raise TriggerConfigError(f"no trigger listens to {source}")
        message = queue_message(str(record.get("body") or ""))
        for deployed in matching:
            self.carry_out(deployed, str(record.get("messageId")), message)

    def rule_event(self, key: str, event: Mapping[str, Any]) -> None:
        deployed = next((t for t in self.triggers if t.key == key), None)
        if deployed is None:
            raise TriggerConfigError(f"no trigger {key!r} is deployed")
        message = event_message(
            str(event.get("detail-type") or ""), str(event.get("source") or ""), event.get("detail")
        )
        self.carry_out(deployed, str(event.get("id")), message)

    def carry_out(self, deployed: DeployedTrigger, message_id: str, message: Any) -> None:
        action = trigger_action(deployed.flow, deployed.trigger, message_id, message)
        if action.kind == "ignore":
            self.ignored += 1
            log.info("trigger %s ignores message %s: %s", deployed.key, message_id, action.reason)
        elif action.kind == "start":
            self.start(deployed, action)
        else:
            assert action.event is not None
            if not self.first_time(f"trigger#{deployed.key}@{message_id}"):
                return  # delivered again: signalled already
            try:
                self.signal(action.instance_id, action.event, action.data)
            except EventRejectedError as error:  # nothing waits for it: no retry helps
                log.warning("trigger %s: message %s: %s", deployed.key, message_id, error)
                return
            self.signalled += 1

    def start(self, deployed: DeployedTrigger, action: TriggerAction) -> None:
        try:
            self.stepfunctions.start_execution(
                stateMachineArn=deployed.machine_arn,
                name=execution_name(action.instance_id, 0),
                input=json.dumps(fresh_input(action.instance_id, action.data)),
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
                raise
            self.existing += 1
            return
        self.started += 1


def dynamodb_first_time(
    table: str,
    dynamodb: Any,
    *,
    key_attribute: str,
    ttl_attribute: str,
    ttl_seconds: int,
    now: Callable[[], int],
) -> FirstTime:
    """:data:`FirstTime` as a conditional put in ``table`` (the idempotency table)."""

    def record(key: str) -> bool:
        try:
            dynamodb.put_item(
                TableName=table,
                Item={
                    key_attribute: {"S": key},
                    ttl_attribute: {"N": str(now() + ttl_seconds)},
                },
                ConditionExpression="attribute_not_exists(#key)",
                ExpressionAttributeNames={"#key": key_attribute},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    return record
