"""The AWS watchdog, for real: the Lambda handler (``lambda_aws.watchdog.handler``) run
in-process against moto (S3, DynamoDB, and Step Functions with its executor on, the real
activity and token handlers behind the machines' Lambda calls), the site a real store
with a worker, replicating with the product's own agent.

* Split brain: the site and the cloud both advance one instance; only the epoch owner
  (the cloud, after the takeover) counts: the site's commit is refused once it sees the
  takeover, its replica write is refused at once, and the instance ends with the cloud's
  history after failback.
* Two watchdogs racing: one takeover, one execution per instance.
* A takeover whose run died is finished by the next run, idempotently.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import lambda_aws.aws
import lambda_aws.watchdog
from lambda_aws.settings import LambdaSettings
from rustyflower.adapters.aws.deployment import execution_arn as arn_of
from rustyflower.adapters.aws.deployment import state_machine_name
from rustyflower.adapters.aws.lifeboat import DynamoLeaseStore, S3ReplicaStore
from rustyflower.adapters.aws.resume import execution_name
from rustyflower.adapters.continuity.lifeboat_setup import LifeboatSettings, build_agent
from rustyflower.adapters.continuity.site_agent import AgentOptions, SiteAgent
from rustyflower.adapters.continuity.watchdog import (
    DEFAULT_RESUME_AFTER,
    Watchdog,
    WatchdogSettings,
)
from rustyflower.adapters.redis.conductor import FencedError
from rustyflower.adapters.redis.lifeboat_feed import RedisReplicationFeed
from rustyflower.core.engine import EventReceived
from rustyflower.core.lifeboat.takeover import TakeoverReport
from rustyflower.core.timeutil import parse_timestamp
from tests.aws.test_lambda_kit import (
    BUCKET,
    KEYS,
    MACHINE_PREFIX,
    REGION,
    FakeContext,
    LambdaWorld,
    lambda_world,
    set_environment,
)
from tests.continuity.kit import APPROVAL, EXPECTED, FLOW, Site
from tests.redis.conftest import Runtime

pytestmark = pytest.mark.emulator

SITE = "plant-1"
TABLE = "rf-lifeboat-leases"
WATCHDOG_ENV = {
    "RUSTYFLOWER_SITE_ID": SITE,
    "RUSTYFLOWER_REPLICA_BUCKET": BUCKET,
    "RUSTYFLOWER_LEASE_TABLE": TABLE,
    "RUSTYFLOWER_TAKEOVER_AFTER_SECONDS": "60",
}
HOUR_AGO = timedelta(hours=1)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[LambdaWorld]:
    set_environment(monkeypatch, **WATCHDOG_ENV)
    with lambda_world() as opened:
        opened.dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "site", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "site", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        opened.deploy(FLOW)
        yield opened


@pytest.fixture
def site(runtime: Runtime, world: LambdaWorld, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    made = Site(runtime, KEYS)
    made.settle_environment(monkeypatch)
    with made.worker():
        yield made


def lifeboat(site: Site, *, renewed: timedelta = timedelta(0)) -> SiteAgent:
    """The site's agent as `rustyflower replicate --to aws` builds it; its lease renewals
    are stamped ``renewed`` ago (an hour: the site looks gone to the watchdog)."""
    settings = LifeboatSettings.from_env(
        {
            "RUSTYFLOWER_REPLICATE_TO": "aws",
            "RUSTYFLOWER_SITE_ID": SITE,
            "RUSTYFLOWER_REPLICA_BUCKET": BUCKET,
            "RUSTYFLOWER_LEASE_TABLE": TABLE,
            "AWS_REGION": REGION,
        }
    )
    agent = build_agent(
        settings,
        site.store,
        feed=RedisReplicationFeed(site.store),
        keys=KEYS,
        options=AgentOptions(name="site-agent"),
        settle=0.0,
    )
    agent.keeper.now = lambda: datetime.now(UTC) - renewed
    return agent


def replicate(agent: SiteAgent) -> None:
    """Ship until the backlog is empty (what the agent's thread does, by hand)."""
    while agent.replicator.ship_round("aws").handled:
        pass


def watchdog_run() -> dict[str, Any]:
    context = FakeContext(function_name="rf-watchdog")
    answer: dict[str, Any] = lambda_aws.watchdog.handler({}, context)
    return answer


def execution_arn(instance_id: str, epoch: int) -> str:
    return arn_of(
        MACHINE_PREFIX + state_machine_name(FLOW.name, FLOW.version),
        execution_name(instance_id, epoch),
    )


def report_of(world: LambdaWorld, answer: dict[str, Any]) -> TakeoverReport:
    key = f"lifeboat/{SITE}/takeovers/{answer['takeover']['id']}.json"
    return TakeoverReport.decode(world.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def parked_on_a_stale_site(site: Site, names: list[str]) -> None:
    """``names`` wait for their event, replicated, on a site whose lease is an hour old."""
    for instance_id in names:
        site.start(instance_id)
        site.wait_at(instance_id, "Approve")
    agent = lifeboat(site, renewed=HOUR_AGO)
    agent.prepare(threading.Event())
    replicate(agent)


def aws_watchdog(world: LambdaWorld, resume_after: float = DEFAULT_RESUME_AFTER) -> Watchdog:
    """A watchdog on the handler's stores (threshold 60 s), as the tests drive it by hand."""
    return Watchdog(
        WatchdogSettings(site=SITE, cloud="aws", threshold=60.0, resume_after=resume_after),
        DynamoLeaseStore(world.dynamodb, TABLE),
        S3ReplicaStore(world.s3, BUCKET, SITE),
        KEYS,
        lambda: datetime.now(UTC),
    )


def test_a_fresh_lease_is_left_alone(site: Site, world: LambdaWorld) -> None:
    agent = lifeboat(site)
    agent.prepare(threading.Event())
    answer = watchdog_run()
    assert (answer["verdict"], answer["takeover"]) == ("fresh", None)
    assert (
        world.stepfunctions.list_executions(
            stateMachineArn=MACHINE_PREFIX + state_machine_name(FLOW.name, FLOW.version)
        )["executions"]
        == []
    )


def test_split_brain_only_the_epoch_owner_advances_the_instance(
    site: Site, world: LambdaWorld
) -> None:
    reference = site.reference_run("reference")
    site.start("order-1")
    waiting = site.wait_at("order-1", "Approve")
    agent = lifeboat(site, renewed=HOUR_AGO)  # the site went quiet an hour ago
    agent.prepare(threading.Event())
    replicate(agent)

    answer = watchdog_run()
    assert answer["verdict"] == "stale" and answer["takeover"]["instances"] == {"started": 1}
    report = report_of(world, answer)
    (taken,) = [one for one in report.instances if one.instance_id == "order-1"]
    assert (taken.result, taken.epoch, taken.from_seq) == ("started", 1, waiting.seq)
    assert taken.where == execution_arn("order-1", 1)
    world.wait_for_waiter("order-1", "approval")

    # the site has not seen the takeover yet and advances the instance at epoch 0 ...
    moved = site.conductor.signal("order-1", "approval", {"by": "bob"})
    assert moved.snapshot.epoch == 0
    # ... but the cloud's copy is the cloud's now: the site's segment is outranked, and
    # folding it into the instance's replica is refused
    replicate(agent)
    agent.replicator.compact("aws", everything=True)
    assert agent.replicator.status["aws"].fenced >= 1
    replica = S3ReplicaStore(world.s3, BUCKET, SITE).read("order-1")
    assert replica is not None and (replica.header.epoch, replica.header.owner) == (1, "aws")

    # the site renews: it finds the takeover, applies it, then holds its lease again
    agent.keeper.now = lambda: datetime.now(UTC)
    state = agent.keeper.renew("aws")
    assert state.state == "held" and state.applied[-1].adopted == ["order-1"]
    info = site.store.info("order-1")
    assert (info.owner, info.epoch, info.seq) == ("aws", 1, waiting.seq)
    assert site.store.history("order-1")[-1]["kind"] == "TakenOver"
    with pytest.raises(FencedError):  # the site's runner may not advance it any more
        site.conductor.apply("order-1", EventReceived("approval", {"by": "carol"}))
    status = json.loads(site.cli("status", "order-1", "--json").stdout)
    assert (status["owner"], status["epoch"]) == ("aws", 1)

    # the epoch owner goes on: the approval sent to it completes the flow in AWS
    sent = site.cli("signal", "order-1", "approval", "--data", json.dumps(APPROVAL))
    assert "lives in aws" in sent.stdout
    ended = world.wait(execution_arn("order-1", 1), timeout=30)
    assert ended["status"] == "SUCCEEDED"
    assert json.loads(ended["output"]) == EXPECTED

    # and fails back from there: the cloud's history, not the site's "bob"
    (row,) = site.cli_json("failback", "--from", "aws", "order-1")
    assert (row["result"], row["epoch"], row["status"]) == ("resumed", 2, "succeeded")
    back = site.store.load("order-1", fresh=True)
    assert back.state.output == reference.state.output == EXPECTED


def test_two_watchdogs_racing_make_one_takeover(site: Site, world: LambdaWorld) -> None:
    parked_on_a_stale_site(site, ["race-1", "race-2"])
    # both read the stale lease at the same version, then both write: one wins
    first, second = aws_watchdog(world), aws_watchdog(world)
    seen = [first.check(), second.check()]
    assert [v.kind for v in seen] == ["stale", "stale"]
    assert seen[0].lease == seen[1].lease
    won = [first.begin(seen[0]), second.begin(seen[1])]
    assert [taken is not None for taken in won] == [True, False]

    # and the handler run concurrently by two schedules: still one takeover
    answers: list[dict[str, Any]] = []
    start = threading.Barrier(2)

    def run() -> None:
        start.wait()
        answers.append(watchdog_run())

    runners = [threading.Thread(target=run) for _ in range(2)]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join()
    assert [a["takeover"] for a in answers] == [None, None]  # taken already (the first won)
    lease = DynamoLeaseStore(world.dynamodb, TABLE).read(SITE)
    assert lease is not None and (lease.lease.holder, lease.lease.term) == ("aws", 2)

    # the first watchdog finishes its takeover; a late second run changes nothing
    assert won[0] is not None
    report = lambda_aws.watchdog.run_takeover(won[0], _continuer())
    assert sorted(one.instance_id for one in report.taken) == ["race-1", "race-2"]
    assert watchdog_run()["verdict"] == "taken"
    machine = MACHINE_PREFIX + state_machine_name(FLOW.name, FLOW.version)
    names = sorted(
        e["name"]
        for e in world.stepfunctions.list_executions(stateMachineArn=machine)["executions"]
    )
    assert names == sorted(execution_name(i, 1) for i in ("race-1", "race-2"))


def test_a_takeover_whose_run_died_is_finished_idempotently(site: Site, world: LambdaWorld) -> None:
    parked_on_a_stale_site(site, ["left-1", "left-2"])
    dog = aws_watchdog(world, resume_after=0.0)
    takeover = dog.begin(dog.check())
    assert takeover is not None
    # the run dies after continuing one group: no report, the lease's takeover incomplete
    first = takeover.groups[0]
    takeover.continued(first, _continuer()(first, takeover))
    assert dog.check().kind == "resume"
    again = dog.begin(dog.check())
    assert again is not None and again.report.takeover_id == takeover.report.takeover_id
    report = lambda_aws.watchdog.run_takeover(again, _continuer())
    results = {one.instance_id: one.result for one in report.instances}
    other = ({"left-1", "left-2"} - {first.root.instance_id}).pop()
    assert results == {first.root.instance_id: "existing", other: "started"}
    assert {one.epoch for one in report.instances} == {1}  # not raised twice
    assert dog.check().kind == "taken"


def test_groups_continued_at_once_are_reported_one_by_one(site: Site, world: LambdaWorld) -> None:
    """The handler continues groups side by side; a refused one does not stop the others,
    and each continued instance says when it ran in the cloud (the drill's RTO)."""
    names = [f"many-{n}" for n in range(5)]
    parked_on_a_stale_site(site, names)
    dog = aws_watchdog(world)
    takeover = dog.begin(dog.check())
    assert takeover is not None and len(takeover.groups) == 5
    real = _continuer()
    before = datetime.now(UTC)

    def continuer(taken: Any, run: Any) -> Any:
        if taken.root.instance_id == "many-3":
            raise lambda_aws.watchdog.TakeoverRefused("refused for the test")
        return real(taken, run)

    report = lambda_aws.watchdog.run_takeover(takeover, continuer, concurrency=4)
    results = {one.instance_id: one.result for one in report.instances}
    assert results == {name: "failed" if name == "many-3" else "started" for name in names}
    for one in report.instances:
        moment = parse_timestamp(one.continued_at) if one.continued_at else None
        assert (moment is None) == (one.instance_id == "many-3")
        assert moment is None or before <= moment <= datetime.now(UTC)
    replica = S3ReplicaStore(world.s3, BUCKET, SITE).read("many-3")
    assert replica is not None and replica.header.owner != "aws"  # refused: still the site's


def _continuer() -> Any:
    """The handler's continue step, on the handler's own clients."""
    return functools.partial(
        lambda_aws.watchdog.continue_group,
        settings=LambdaSettings.from_env(os.environ),
        stepfunctions=lambda_aws.aws.client("stepfunctions"),
        s3=lambda_aws.aws.client("s3"),
        now=datetime.now(UTC),
    )
