"""``rustyflower start FLOW --on aws`` then ``failback``, on moto with the real handlers.

The instance starts in Step Functions (fenced for AWS from its first transition, which
ran nothing), shows in ``status``/``list`` as living there, takes its signal there, comes
back with ``failback`` and finishes on premises with the output of an uninterrupted run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from rustyflower.core.model import parse_definition
from tests.aws.test_lambda_kit import KEYS, LambdaWorld, lambda_world, set_environment
from tests.continuity.kit import APPROVAL, EXPECTED, FLOW, INPUT, Site, command_output, wait_until
from tests.continuity.test_aws import execution_arn, in_rest
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


def test_start_on_aws_then_failback_finishes_with_the_uninterrupted_output(
    site: Site, world: LambdaWorld
) -> None:
    reference = site.reference_run("reference")
    assert reference.state.output == EXPECTED
    row = site.cli_json(
        "start", FLOW.name, "--on", "aws", "--id", "s-1", "--input", json.dumps(INPUT)
    )
    arn = execution_arn("s-1", 1)
    assert (row["action"], row["result"], row["epoch"], row["where"]) == (
        "start",
        "started",
        1,
        arn,
    )
    info = site.store.info("s-1")
    assert (info.owner, info.epoch, info.seq) == ("aws", 1, 1)
    listed = site.cli_json("list")
    assert "s-1" in {item["instance_id"] for item in listed}
    assert site.cli_json("status", "s-1")["instance_id"] == "s-1"

    # the first activity ran in AWS, not here: the execution waits for the approval there
    world.wait_for_waiter("s-1", "approval")
    assert site.store.load("s-1", fresh=True).seq == 1  # the site advanced nothing
    sent = site.cli("signal", "s-1", "approval", "--data", json.dumps(APPROVAL))
    assert "lives in aws" in sent.stdout
    wait_until("the execution to rest", lambda: in_rest(world, arn))

    (back,) = site.cli_json("failback", "--from", "aws", "s-1")
    assert (back["result"], back["epoch"]) == ("resumed", 2)
    assert world.stepfunctions.describe_execution(executionArn=arn)["status"] == "ABORTED"
    returned = site.store.load("s-1", fresh=True)
    assert returned.positions == ["Rest"]
    kinds = [entry.kind for entry in returned.state.history]
    assert kinds[:3] == ["FlowStarted", "TaskScheduled", "TaskSucceeded"]  # from AWS's history
    finished = site.wait_finished("s-1")
    assert (finished.status, finished.state.output) == ("succeeded", reference.state.output)


def test_a_start_the_cloud_refuses_leaves_nothing_behind(site: Site, world: LambdaWorld) -> None:
    other = parse_definition({**FLOW.document(), "name": "undeployed"})
    site.store.register(other)
    refused = site.cli(
        "start", "undeployed", "--on", "aws", "--id", "u-1", "-i", json.dumps(INPUT), ok=False
    )
    assert refused.exit_code == 1
    assert "has no state machine" in refused.stderr
    assert not site.store.exists("u-1")  # refused before anything was stored


def test_a_refusal_after_the_fence_cancels_the_instance_here(
    site: Site, world: LambdaWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The execution cannot be started (Step Functions answers InvalidExecutionInput): the
    instance, fenced for AWS, is cancelled here; the site never runs it."""
    from rustyflower.adapters.continuity import aws as continuity_aws  # noqa: PLC0415

    def refuse(self: object, handed: object) -> object:
        raise continuity_aws._Refused("Step Functions refused the execution: InvalidExecutionInput")

    monkeypatch.setattr(continuity_aws.AwsContinuity, "_start", refuse)
    result = site.cli(
        "start", FLOW.name, "--on", "aws", "--id", "r-1", "-i", json.dumps(INPUT), ok=False
    )
    assert result.exit_code == 1
    assert "cancelled here" in command_output(result.stderr)
    info = site.store.info("r-1")
    assert (info.owner, info.status, info.epoch) == ("local", "cancelled", 2)
    cancelled = site.store.load("r-1", fresh=True)
    assert "start refused" in (cancelled.state.cause or "")
    assert not cancelled.state.pending  # no work left: nothing runs here either


def test_the_python_client_starts_in_aws_and_fails_back(site: Site, world: LambdaWorld) -> None:
    """``Client.start(..., on="aws")`` and ``Client.failback``: the same as the CLI."""
    from rustyflower.client import Client  # noqa: PLC0415

    with Client.connect(site.url, prefix=site.runtime.keys.prefix, keys=KEYS) as client:
        handle = client.start(FLOW.name, INPUT, id="p-1", on="aws")
        assert handle.id == "p-1"
        assert client.status("p-1").owner == "aws"
        world.wait_for_waiter("p-1", "approval")
        handle.signal("approval", APPROVAL)  # reaches it in AWS
        wait_until("the execution to rest", lambda: in_rest(world, execution_arn("p-1", 1)))
        (back,) = client.failback(["p-1"], source="aws")
        assert (back.result, back.epoch) == ("resumed", 2)
        assert handle.result(timeout=30) == EXPECTED
