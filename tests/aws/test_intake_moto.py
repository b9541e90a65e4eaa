"""examples/intake on the local AWS (moto's Step Functions executing the compiled machine,
the real Lambda handlers): an SQS message reaches the trigger function as the event
source mapping delivers it, the execution archives in S3, sends to SQS and reads back,
unchanged from the site (tests/redis/test_examples.py) and Azure (tests/azure)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

import lambda_aws.triggers
from examples.intake.activities import registry as intake_activities
from rustyflower.adapters.aws import AwsServiceBindings, compile_flow, execution_name
from rustyflower.core.model import load_definition
from tests.aws.moto_service_fixes import service_fixes
from tests.aws.test_lambda_kit import (
    ACCOUNT,
    ACTIVITY_FUNCTION,
    REGION,
    ROLE_ARN,
    TOKENS_FUNCTION,
    FakeContext,
    LambdaWorld,
    lambda_world,
    set_environment,
)

pytestmark = pytest.mark.emulator

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "intake"
PREFIX = "ex-"


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[LambdaWorld]:
    set_environment(monkeypatch, RUSTYFLOWER_ACTIVITIES="examples.intake.activities")
    with lambda_world() as opened, service_fixes():
        yield opened


def test_intake_runs_unchanged_on_the_local_aws(
    world: LambdaWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    definition = intake_activities.apply_defaults(
        load_definition((EXAMPLE / "flow.yaml").read_text())
    )
    request = json.loads((EXAMPLE / "input.json").read_text())
    sqs = boto3.client("sqs", region_name=REGION)
    s3 = boto3.client("s3", region_name=REGION)
    urls = {
        name: sqs.create_queue(QueueName=PREFIX + name)["QueueUrl"]
        for name in ("intake-requests", "intake-scored")
    }
    s3.create_bucket(Bucket=PREFIX + "intake-archive")
    document = compile_flow(
        definition,
        activity_function_arn=ACTIVITY_FUNCTION,
        token_function_arn=TOKENS_FUNCTION,
        services=AwsServiceBindings(
            queue_url_base=f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/", name_prefix=PREFIX
        ),
    )
    machine = world.stepfunctions.create_state_machine(
        name="rf-intake-v1", definition=json.dumps(document), roleArn=ROLE_ARN
    )["stateMachineArn"]
    queue_arn = sqs.get_queue_attributes(
        QueueUrl=urls["intake-requests"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    monkeypatch.setenv(
        "RUSTYFLOWER_TRIGGERS",
        json.dumps(
            [
                {
                    "flow": "intake",
                    "machine_arn": machine,
                    "trigger": definition.triggers[0].model_dump(
                        mode="json", exclude_defaults=True
                    ),
                    "queue_arn": queue_arn,
                }
            ]
        ),
    )
    lambda_aws.triggers.reset()
    # the message as SQS hands it to the trigger function, twice (at-least-once delivery)
    sent = sqs.send_message(QueueUrl=urls["intake-requests"], MessageBody=json.dumps(request))
    record = {
        "messageId": sent["MessageId"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "body": json.dumps(request),
    }
    for _ in range(2):
        assert lambda_aws.triggers.handler({"Records": [record]}, FakeContext()) == {
            "batchItemFailures": []
        }
    lambda_aws.triggers.reset()
    instance_id = f"intake:new-requests@{sent['MessageId']}"
    executions = world.stepfunctions.list_executions(stateMachineArn=machine)["executions"]
    assert [e["name"] for e in executions] == [execution_name(instance_id, 0)]
    ended = world.wait(executions[0]["executionArn"])
    assert ended["status"] == "SUCCEEDED", (ended.get("error"), ended.get("cause"))
    assert json.loads(ended["output"]) == {**request, "score": 25, "archived": request}
    archived = s3.get_object(Bucket=PREFIX + "intake-archive", Key="req-7")["Body"].read()
    assert json.loads(archived) == request
    scored = sqs.receive_message(QueueUrl=urls["intake-scored"], MaxNumberOfMessages=10)
    assert [json.loads(m["Body"]) for m in scored["Messages"]] == [{"id": "req-7", "score": 25}]
