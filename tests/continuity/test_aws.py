"""Failover to AWS and back, on moto's Step Functions executor with the real Lambda handlers.

The site runs on a real Redis with a worker in this process; AWS is moto (executor on)
whose Lambda integration calls ``lambda_aws``'s real activity and token handlers
in-process (``tests/aws/test_lambda_kit.py``). Everything goes through the CLI as an
operator would type it, except where a test looks under the hood.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from lambda_aws import continuation
from lambda_aws.errors import NamedError
from rustyflower.adapters.aws import compile_to_json, deployed_digest, execution_name
from rustyflower.adapters.aws.deployment import base_snapshot_key, state_machine_name
from rustyflower.adapters.continuity.aws import AwsClients, AwsContinuity, AwsSettings
from rustyflower.adapters.redis.conductor import FencedError
from rustyflower.core.engine import EventReceived
from rustyflower.core.model import parse_definition
from rustyflower.core.snapshot.document import encode_snapshot
from tests.aws.test_lambda_kit import (
    ACTIVITY_FUNCTION,
    KEYS,
    MACHINE_PREFIX,
    REGION,
    ROLE_ARN,
    TOKENS_FUNCTION,
    LambdaWorld,
    lambda_world,
    set_environment,
)
from tests.continuity.kit import APPROVAL, EXPECTED, FLOW, Site, command_output, wait_until
from tests.redis.conftest import Runtime

pytestmark = pytest.mark.emulator


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[LambdaWorld]:
    set_environment(monkeypatch)
    with lambda_world() as opened:
        opened.deploy(FLOW)
        yield opened


@pytest.fixture
def site(runtime: Runtime, world: LambdaWorld, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    made = Site(runtime, KEYS)
    made.settle_environment(monkeypatch)
    with made.worker():
        yield made


def execution_arn(instance_id: str, epoch: int) -> str:
    machine = MACHINE_PREFIX + state_machine_name(FLOW.name, FLOW.version)
    return (
        machine.replace(":stateMachine:", ":execution:") + ":" + execution_name(instance_id, epoch)
    )


def waiting_site(site: Site, instance_id: str) -> None:
    site.start(instance_id)
    site.wait_at(instance_id, "Approve")


def in_rest(world: LambdaWorld, arn: str) -> bool:
    events = world.stepfunctions.get_execution_history(executionArn=arn)["events"]
    return any(
        event["type"] == "WaitStateEntered"
        and event["stateEnteredEventDetails"]["name"].startswith("Rest")
        for event in events
    )


def test_the_reference_run_on_premises(site: Site) -> None:
    assert site.reference_run("reference").state.output == EXPECTED


def test_failover_fences_the_instance_and_is_idempotent(site: Site, world: LambdaWorld) -> None:
    waiting_site(site, "order-1")
    before = site.store.info("order-1")
    (row,) = site.cli_json("failover", "--to", "aws", "order-1")
    arn = execution_arn("order-1", before.epoch + 1)
    assert (row["result"], row["epoch"], row["where"], row["ok"]) == (
        "started",
        before.epoch + 1,
        arn,
        True,
    )

    info = site.store.info("order-1")
    assert (info.owner, info.epoch, info.seq) == ("aws", before.epoch + 1, before.seq)
    with pytest.raises(FencedError):  # the runner's own transitions are refused now
        site.conductor.apply("order-1", EventReceived("approval", APPROVAL))
    assert site.store.info("order-1").seq == before.seq

    described = world.stepfunctions.describe_execution(executionArn=arn)
    assert described["status"] == "RUNNING"
    assert json.loads(described["input"])["rf"]["epoch"] == before.epoch + 1

    (again,) = site.cli_json("failover", "--to", "aws", "order-1")
    assert (again["result"], again["epoch"], again["where"]) == ("existing", info.epoch, arn)
    assert site.store.info("order-1").epoch == info.epoch  # not raised twice
    plain = site.cli("failover", "--to", "aws", "order-1")  # a table for people
    table = command_output(plain.stdout)
    assert "instance" in table.splitlines()[0] and "result" in table.splitlines()[0]
    assert "order-1" in table and "existing" in table and arn in table
    assert "failover aws: 1 instance(s): 1 existing" in plain.stderr
    machine = MACHINE_PREFIX + state_machine_name(FLOW.name, FLOW.version)
    executions = world.stepfunctions.list_executions(stateMachineArn=machine)["executions"]
    assert [e["executionArn"] for e in executions] == [arn]

    unset = site.cli("failover", "--to", "azure", "order-1", ok=False)
    assert unset.exit_code == 3
    assert "RUSTYFLOWER_AZURE_FUNCTION_URL" in unset.stderr
    azure = {"RUSTYFLOWER_AZURE_FUNCTION_URL": "http://127.0.0.1:9"}
    refused = site.cli("failover", "--to", "azure", "order-1", ok=False, env=azure)
    assert refused.exit_code == 1
    assert "lives in aws" in refused.stderr and "fail it back" in refused.stderr


def test_a_signal_reaches_the_instance_in_aws_and_completes_it(
    site: Site, world: LambdaWorld
) -> None:
    waiting_site(site, "order-2")
    site.cli("failover", "--to", "aws", "order-2")
    world.wait_for_waiter("order-2", "approval")
    sent = site.cli("signal", "order-2", "approval", "--data", json.dumps(APPROVAL))
    assert "lives in aws" in sent.stdout
    ended = world.wait(execution_arn("order-2", 1), timeout=30)
    assert ended["status"] == "SUCCEEDED"
    assert json.loads(ended["output"]) == EXPECTED
    # nothing waits any more: a second signal is refused with one clear line
    again = site.cli("signal", "order-2", "approval", "--data", "{}", ok=False)
    assert again.exit_code == 2
    assert "no live wait" in again.stderr


def test_failback_resumes_on_premises_with_the_same_result(site: Site, world: LambdaWorld) -> None:
    reference = site.reference_run("reference")
    waiting_site(site, "order-3")
    site.cli("failover", "--to", "aws", "order-3")
    arn = execution_arn("order-3", 1)
    world.wait_for_waiter("order-3", "approval")
    site.cli("signal", "order-3", "approval", "--data", json.dumps(APPROVAL))
    wait_until("the execution to rest", lambda: in_rest(world, arn))

    (row,) = site.cli_json("failback", "--from", "aws", "order-3")
    assert (row["result"], row["epoch"], row["status"]) == ("resumed", 2, "running")
    assert row["detail"]["execution_status"] == "RUNNING"
    assert world.stepfunctions.describe_execution(executionArn=arn)["status"] == "ABORTED"
    info = site.store.info("order-3")
    assert (info.owner, info.epoch) == ("local", 2)
    back = site.store.load("order-3", fresh=True)
    assert back.positions == ["Rest"]  # the activity and the event happened in AWS
    assert back.state.tokens["Rest"].data["decision"] == APPROVAL

    finished = site.wait_finished("order-3")
    assert (finished.status, finished.state.output) == ("succeeded", reference.state.output)
    again = site.cli("failback", "--from", "aws", "order-3", ok=False)
    assert again.exit_code == 1
    assert "not in AWS (owner local)" in again.stderr


def test_a_refused_failover_leaves_the_instance_on_premises(site: Site, world: LambdaWorld) -> None:
    """A machine compiled from another definition: refused before anything is fenced."""
    document = {**FLOW.document(), "name": "other", "version": "1"}
    site.store.register(parse_definition(document))
    states = {**document["states"], "Rest": {**document["states"]["Rest"], "seconds": 5}}
    changed = parse_definition({**document, "states": states})
    world.stepfunctions.create_state_machine(
        name="rf-" + state_machine_name("other", "1"),
        definition=compile_to_json(
            changed, activity_function_arn=ACTIVITY_FUNCTION, token_function_arn=TOKENS_FUNCTION
        ),
        roleArn=ROLE_ARN,
    )
    site.conductor.start("other", {"amount": 1}, instance_id="other-1")
    site.wait_at("other-1", "Approve")
    waiting_site(site, "order-4")
    site.start("order-5")  # not waiting yet, or already: either way it can go

    result = site.cli("failover", "--to", "aws", "--all", "--json", ok=False)
    assert result.exit_code == 1
    rows = {row["instance_id"]: row for row in json.loads(command_output(result.stdout))}
    assert set(rows) == {"other-1", "order-4", "order-5"}
    assert rows["other-1"]["result"] == "failed"
    assert "digest" in rows["other-1"]["error"]
    assert rows["order-4"]["result"] == rows["order-5"]["result"] == "started"
    assert "error: other-1: flow 'other@1': the snapshot's definition digest" in result.stderr
    assert "failover aws: 3 instance(s): 1 failed, 2 started" in result.stderr
    info = site.store.info("other-1")
    assert (info.owner, info.epoch) == ("local", 0)  # never fenced: it runs on here
    moved = site.conductor.signal("other-1", "approval", APPROVAL)  # it runs on here
    assert moved.snapshot.positions == ["Rest"]
    site.conductor.cancel("other-1")

    # --all again: the two in AWS are sent again at their epoch (no new execution)
    again = site.cli("failover", "--to", "aws", "--all", "--json", ok=True)
    rows = {row["instance_id"]: row for row in json.loads(command_output(again.stdout))}
    assert {rows[i]["result"] for i in ("order-4", "order-5")} == {"existing"}
    assert {rows[i]["epoch"] for i in ("order-4", "order-5")} == {1}


def test_snapshot_files_continue_at_their_epoch_plus_one(
    site: Site, world: LambdaWorld, tmp_path: Path
) -> None:
    waiting_site(site, "order-6")
    path = tmp_path / "order-6.snapshot"
    site.cli("snapshot", "order-6", "-o", str(path))
    (first,) = site.cli_json("failover", "--to", "aws", "--snapshot", str(path))
    (second,) = site.cli_json("failover", "--to", "aws", "--snapshot", str(path))
    assert (first["result"], second["result"]) == ("started", "existing")
    assert first["where"] == second["where"] == execution_arn("order-6", 1)


class ContinueFunction:
    """moto's Lambda cannot run Python: ``invoke`` runs the real continue handler."""

    def __init__(self, world: LambdaWorld) -> None:
        self.world = world
        self.calls = 0

    def invoke(self, **request: Any) -> dict[str, Any]:
        assert request["InvocationType"] == "RequestResponse"
        self.calls += 1
        event = json.loads(request["Payload"])
        try:
            answer = continuation.handle(
                event,
                settings=self.world.settings(),
                keys=KEYS,
                stepfunctions=self.world.stepfunctions,
                s3=self.world.s3,
            )
        except NamedError as error:
            document = {"errorType": error.error, "errorMessage": str(error)}
            return {
                "FunctionError": "Unhandled",
                "Payload": io.BytesIO(json.dumps(document).encode()),
            }
        return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(answer).encode())}


def test_failover_through_the_continue_function(site: Site, world: LambdaWorld) -> None:
    waiting_site(site, "order-7")
    function = ContinueFunction(world)
    clients = AwsClients(REGION, **{"lambda": function})
    settings = AwsSettings.from_env({}, region=REGION, continue_function="rf-continue")
    aws = AwsContinuity(site.store, settings, clients)
    first = aws.failover("order-7")
    second = aws.failover("order-7")
    assert (first.result, second.result, function.calls) == ("started", "existing", 2)
    assert first.where == second.where == execution_arn("order-7", 1)
    key = base_snapshot_key(execution_name("order-7", 1), first.seq or 0)
    kept = world.s3.get_object(Bucket="rf-snapshots", Key=key)["Body"].read()
    assert kept == encode_snapshot(replace(site.store.load("order-7", fresh=True), epoch=1), KEYS)


def test_export_asl(site: Site, tmp_path: Path) -> None:
    target = tmp_path / "lifeboat.asl.json"
    site.cli(
        "export",
        "asl",
        "lifeboat",
        "-o",
        str(target),
        "--activity-function-arn",
        ACTIVITY_FUNCTION,
        "--token-function-arn",
        TOKENS_FUNCTION,
    )
    registered = site.store.definition("lifeboat")  # as stored: the digest snapshots carry
    expected = compile_to_json(
        registered, activity_function_arn=ACTIVITY_FUNCTION, token_function_arn=TOKENS_FUNCTION
    )
    assert target.read_text() == expected + "\n"
    assert deployed_digest(target.read_text()) == site.start("order-8").digest
    source = tmp_path / "flow.json"
    source.write_text(json.dumps(FLOW.document()))
    printed = site.cli(
        "export",
        "asl",
        "--file",
        str(source),
        "-o",
        "-",
        "--activity-function-arn",
        ACTIVITY_FUNCTION,
        "--token-function-arn",
        TOKENS_FUNCTION,
    )
    from_file = compile_to_json(
        FLOW, activity_function_arn=ACTIVITY_FUNCTION, token_function_arn=TOKENS_FUNCTION
    )
    assert command_output(printed.stdout) == from_file + "\n"
    missing = site.cli("export", "asl", "lifeboat", "-o", str(target), ok=False)
    assert missing.exit_code == 2
    assert "--activity-function-arn is required" in missing.stderr
    no_token = site.cli(
        "export", "asl", "lifeboat", "-o", "-", "--activity-function-arn", "x", ok=False
    )
    assert no_token.exit_code == 2
    assert "--token-function-arn" in no_token.stderr  # the flag, not the Python parameter
    assert "token_function_arn" not in no_token.stderr
