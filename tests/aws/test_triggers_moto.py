"""The flows' triggers in AWS (adapters/aws/triggers.py), on moto with the real handlers.

An SQS message starts exactly one execution, named after the instance id the message
makes; delivered again, it starts none. An EventBridge event (as the rule's target
wraps it) signals the instance it names through its stored task token, once: delivered
again, nothing is sent. An EventBridge event routed by moto through the rule and the
target's input transformer (both as Terraform writes them) starts exactly one execution
with the event as input; delivered again (same event id), it starts none. The function's
handler (lambda_aws.triggers) reads the deployed triggers from its environment, as
Terraform sets it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

import lambda_aws.triggers
from rustyflower.adapters.aws import execution_name
from rustyflower.adapters.aws.triggers import DeployedTrigger
from rustyflower.core.model import parse_definition
from tests.aws.test_lambda_kit import (
    IDEMPOTENCY_TABLE,
    REGION,
    FakeContext,
    LambdaWorld,
    lambda_world,
    set_environment,
)
from tests.aws.test_terraform import resource

pytestmark = pytest.mark.emulator

FLOW = parse_definition(
    {
        "name": "orders",
        "start_at": "Approve",
        "states": {
            "Approve": {
                "type": "wait_for_event",
                "event": "approved",
                "result_path": "$.approval",
                "end": True,
            }
        },
        "triggers": [
            {"name": "new-orders", "source": "queue", "queue": "incoming"},
            {
                "name": "approvals",
                "source": "events",
                "bus": "decisions",
                "type": "order.approved",
                "action": "signal",
                "event": "approved",
                "instance_path": "$.detail.instance",
                "input_path": "$.detail.by",
            },
        ],
    }
)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LambdaWorld, str]]:
    set_environment(monkeypatch)
    with lambda_world() as opened:
        machine = opened.deploy(FLOW)
        sqs = boto3.client("sqs", region_name=REGION)
        url = sqs.create_queue(QueueName="rf-incoming")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        deployed = [
            {
                "flow": FLOW.name,
                "machine_arn": machine,
                "trigger": FLOW.triggers[0].model_dump(mode="json", exclude_defaults=True),
                "queue_arn": queue_arn,
            },
            {
                "flow": FLOW.name,
                "machine_arn": machine,
                "trigger": FLOW.triggers[1].model_dump(mode="json", exclude_defaults=True),
            },
        ]
        monkeypatch.setenv("RUSTYFLOWER_TRIGGERS", json.dumps(deployed))
        lambda_aws.triggers.reset()
        yield opened, queue_arn
        lambda_aws.triggers.reset()


def sqs_event(queue_arn: str, message_id: str, body: Any) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": message_id,
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "body": json.dumps(body),
            }
        ]
    }


def rule_event(event_id: str, detail_type: str, detail: Any) -> dict[str, Any]:
    return {
        "rustyflower_trigger": "orders/approvals",
        "event": {
            "id": event_id,
            "detail-type": detail_type,
            "source": "shop",
            "detail": detail,
        },
    }


def executions(world: LambdaWorld) -> list[str]:
    machine = world.deploy(FLOW)
    listed = world.stepfunctions.list_executions(stateMachineArn=machine)["executions"]
    return sorted(e["name"] for e in listed)


def test_a_message_starts_one_execution_and_redelivery_none(
    world: tuple[LambdaWorld, str],
) -> None:
    opened, queue_arn = world
    event = sqs_event(queue_arn, "m-1", {"order": "A-1"})
    assert lambda_aws.triggers.handler(event, FakeContext()) == {"batchItemFailures": []}
    assert lambda_aws.triggers.handler(event, FakeContext()) == {"batchItemFailures": []}
    instance_id = "orders:new-orders@m-1"
    assert executions(opened) == [execution_name(instance_id, 0)]
    runner = lambda_aws.triggers.runner()
    # StartExecution is idempotent for a running Standard execution of the same name and
    # input (it answers the same execution); a closed one answers ExecutionAlreadyExists
    assert runner.started + runner.existing == 2
    arn = (
        opened.deploy(FLOW).replace(":stateMachine:", ":execution:")
        + ":"
        + execution_name(instance_id, 0)
    )
    started = json.loads(opened.stepfunctions.describe_execution(executionArn=arn)["input"])
    assert started["rf"]["instance_id"] == instance_id
    assert started["input"] == {"order": "A-1"}

    # an event signals it once; the same event again sends nothing
    opened.wait_for_waiter(instance_id, "approved")
    approved = rule_event("e-1", "order.approved", {"instance": instance_id, "by": "ann"})
    lambda_aws.triggers.handler(rule_event("e-0", "order.held", {}), FakeContext())
    lambda_aws.triggers.handler(approved, FakeContext())
    ended = opened.wait(arn)
    assert ended["status"] == "SUCCEEDED"
    assert json.loads(ended["output"]) == {"order": "A-1", "approval": "ann"}
    lambda_aws.triggers.handler(approved, FakeContext())
    assert (runner.signalled, runner.ignored) == (1, 1)
    # the first message delivered once more, after its execution closed: still nothing new
    assert lambda_aws.triggers.handler(event, FakeContext()) == {"batchItemFailures": []}
    assert executions(opened) == [execution_name(instance_id, 0)]
    stored = opened.dynamodb.get_item(
        TableName=IDEMPOTENCY_TABLE, Key={"id": {"S": "trigger#orders/approvals@e-1"}}
    )
    assert "Item" in stored


def test_a_message_whose_start_fails_comes_again(world: tuple[LambdaWorld, str]) -> None:
    _, queue_arn = world
    runner = lambda_aws.triggers.runner()
    broken = DeployedTrigger(
        FLOW.name,
        "arn:aws:states:us-east-1:123456789012:stateMachine:rf-missing",
        FLOW.triggers[0],
        queue_arn,
    )
    runner.triggers = [broken]
    answer = runner.handle(sqs_event(queue_arn, "m-9", {}))
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m-9"}]}


# a flow an EventBridge event starts: its input is the event as a trigger reads it
SHIPPING = parse_definition(
    {
        "name": "shipping",
        "start_at": "Ship",
        "states": {"Ship": {"type": "wait_for_event", "event": "shipped", "end": True}},
        "triggers": [
            {
                "name": "on-approval",
                "source": "events",
                "bus": "decisions",
                "type": "order.approved",
            }
        ],
    }
)


def rule_target_template(key: str) -> str:
    """The rule target's input template, as infra/terraform/aws/triggers.tf writes it."""
    target = resource("aws_cloudwatch_event_target.event_triggers")
    template = str(target["input_transformer"][0]["input_template"])
    assert "${each.key}" in template
    return template.replace("${each.key}", key)


def test_an_eventbridge_event_starts_one_execution_and_redelivery_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """moto routes a ``put_events`` on the bus through the rule (Terraform's event pattern)
    and the target's input transformer (Terraform's template) to an SQS queue standing in
    for the trigger function: what the queue holds is the payload Lambda would be invoked
    with. moto cannot invoke a Python Lambda without Docker, so that payload is handed to
    the real ``lambda_aws.triggers.handler`` by the test, once and then again, as
    EventBridge's retry of an asynchronous invocation delivers the same event (same id)."""
    set_environment(monkeypatch)
    with lambda_world() as opened:
        machine = opened.deploy(SHIPPING)
        trigger = SHIPPING.triggers[0]
        deployed = {
            "flow": SHIPPING.name,
            "machine_arn": machine,
            "trigger": trigger.model_dump(mode="json", exclude_defaults=True),
        }
        monkeypatch.setenv("RUSTYFLOWER_TRIGGERS", json.dumps([deployed]))
        lambda_aws.triggers.reset()
        events = boto3.client("events", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        bus = "rf-decisions"  # aws_cloudwatch_event_bus.services: <prefix><bus>
        events.create_event_bus(Name=bus)
        inbox = sqs.create_queue(QueueName="trigger-function-stand-in")["QueueUrl"]
        inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        rule = "rf-shipping-on-approval"
        events.put_rule(
            Name=rule,
            EventBusName=bus,
            EventPattern=json.dumps({"detail-type": [trigger.type]}),
        )
        events.put_targets(
            Rule=rule,
            EventBusName=bus,
            Targets=[
                {
                    "Id": "trigger",
                    "Arn": inbox_arn,
                    "InputTransformer": {
                        "InputTemplate": rule_target_template("shipping/on-approval")
                    },
                }
            ],
        )

        def publish(detail_type: str, detail: Any) -> str:
            entry = {
                "EventBusName": bus,
                "Source": "shop",
                "DetailType": detail_type,
                "Detail": json.dumps(detail),
            }
            return str(events.put_events(Entries=[entry])["Entries"][0]["EventId"])

        def invocations() -> list[dict[str, Any]]:
            got = sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10)
            return [json.loads(m["Body"]) for m in got.get("Messages", [])]

        def started() -> list[str]:
            listed = opened.stepfunctions.list_executions(stateMachineArn=machine)
            return sorted(e["name"] for e in listed["executions"])

        detail = {"order": "A-1", "by": "ann"}
        publish("order.rejected", detail)
        assert invocations() == []  # the rule's pattern lets only the trigger's type through
        event_id = publish("order.approved", detail)
        (payload,) = invocations()
        assert payload["rustyflower_trigger"] == "shipping/on-approval"
        assert payload["event"]["id"] == event_id

        assert lambda_aws.triggers.handler(payload, FakeContext()) == {}
        instance_id = f"shipping:on-approval@{event_id}"
        name = execution_name(instance_id, 0)
        assert started() == [name]
        arn = machine.replace(":stateMachine:", ":execution:") + ":" + name
        given = json.loads(opened.stepfunctions.describe_execution(executionArn=arn)["input"])
        assert given["rf"]["instance_id"] == instance_id
        assert given["input"] == {"type": "order.approved", "source": "shop", "detail": detail}

        # the same event delivered again, while its execution runs and after it closed
        assert lambda_aws.triggers.handler(payload, FakeContext()) == {}
        assert started() == [name]
        opened.stop_all()  # closed (moto fails an execution stopped in a token wait)
        assert opened.wait(arn)["status"] != "RUNNING"
        runner = lambda_aws.triggers.runner()
        existing = runner.existing
        assert lambda_aws.triggers.handler(payload, FakeContext()) == {}
        assert runner.existing == existing + 1
        assert started() == [name]

        # another event (another id) is another start
        second = publish("order.approved", detail)
        (again,) = invocations()
        lambda_aws.triggers.handler(again, FakeContext())
        assert started() == sorted([name, execution_name(f"shipping:on-approval@{second}", 0)])
        lambda_aws.triggers.reset()
