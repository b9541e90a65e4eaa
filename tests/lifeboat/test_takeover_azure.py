"""The Azure watchdog, for real: the Function App's registered timer function
(``rustyflower_watchdog``) run with the replay host's durable client (the real SDK
orchestrator continues what it starts), the lease and replicas in Azurite, the site a
real store with a worker replicating with the product's own agent; the CLI reaches the
app's HTTP functions (``tests/continuity/azure_kit``).

* Split brain: the site and the cloud both advance one instance; only the epoch owner
  (the cloud, after the takeover) counts, and the instance fails back from there.
* A takeover continues child flows in flight with their parent (not started again).
* Two runs: one takeover.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from functions_azure.function_app import app
from rustyflower.adapters.azure.lifeboat import BlobLeaseStore, BlobReplicaStore, replica_container
from rustyflower.adapters.continuity.lifeboat_setup import LifeboatSettings, build_agent
from rustyflower.adapters.continuity.site_agent import AgentOptions, SiteAgent
from rustyflower.adapters.continuity.watchdog import Watchdog, WatchdogSettings
from rustyflower.adapters.localcloud.durable_history import functions_of
from rustyflower.adapters.redis.conductor import FencedError
from rustyflower.adapters.redis.lifeboat_feed import RedisReplicationFeed
from rustyflower.core.engine import EventReceived, StartChildFlow
from rustyflower.core.lifeboat.takeover import TakeoverReport
from rustyflower.core.model import parse_definition
from tests.azure.azurite import (  # noqa: F401 - pytest fixtures used by name
    Azurite,
    azurite_connection_string_fixture,
)
from tests.azure.support import KEYS, app_settings
from tests.continuity.azure_kit import FUNCTION_KEY, ReplayFunctionApp, running_app
from tests.continuity.kit import APPROVAL, EXPECTED, Site
from tests.redis.conftest import Runtime

pytestmark = pytest.mark.emulator

SITE = "plant-1"
HOUR_AGO = timedelta(hours=1)
PARENT = parse_definition(
    {
        "name": "parent",
        "version": "1",
        "start_at": "Call",
        "states": {
            "Call": {
                "type": "sub_flow",
                "flow": "lifeboat",
                "version": "1",
                "result_path": "$.child",
                "next": "Done",
            },
            "Done": {"type": "succeed"},
        },
    }
)


@pytest.fixture
def containers(azurite_connection_string: str) -> Iterator[tuple[str, str]]:
    """The app's checkpoint container and the lifeboat's container."""
    names = (f"ck-{uuid.uuid4().hex[:10]}", f"lb-{uuid.uuid4().hex[:10]}")
    made = [replica_container(n, connection_string=azurite_connection_string) for n in names]
    for container in made:
        container.create_container()
    yield names
    for container in made:
        container.delete_container()


@pytest.fixture
def function_app(
    monkeypatch: pytest.MonkeyPatch, azurite_connection_string: str, containers: tuple[str, str]
) -> Iterator[ReplayFunctionApp]:
    checkpoints, lifeboat = containers
    settings = app_settings(
        RUSTYFLOWER_SNAPSHOT_SINK="blob",
        RUSTYFLOWER_SNAPSHOT_CONNECTION=azurite_connection_string,
        RUSTYFLOWER_SNAPSHOT_CONTAINER=checkpoints,
        RUSTYFLOWER_SITE_ID=SITE,
        RUSTYFLOWER_TAKEOVER_AFTER_SECONDS="60",
        RUSTYFLOWER_REPLICA_CONTAINER=lifeboat,
    )
    for name, value in settings.items():  # the app's settings, read by its functions
        monkeypatch.setenv(name, value)
    with running_app() as opened:
        yield opened


@pytest.fixture
def site(
    runtime: Runtime,
    function_app: ReplayFunctionApp,
    azurite_connection_string: str,
    containers: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Site]:
    made = Site(
        runtime,
        KEYS,
        environment={
            "RUSTYFLOWER_AZURE_FUNCTION_URL": function_app.url,
            "RUSTYFLOWER_AZURE_FUNCTION_KEY": FUNCTION_KEY,
            "RUSTYFLOWER_AZURE_STORAGE": azurite_connection_string,
            "RUSTYFLOWER_SNAPSHOT_CONTAINER": containers[0],
        },
    )
    made.settle_environment(monkeypatch)
    with made.worker():
        yield made


def lifeboat(
    site: Site, connection: str, container: str, *, renewed: timedelta = timedelta(0)
) -> SiteAgent:
    settings = LifeboatSettings.from_env(
        {
            "RUSTYFLOWER_REPLICATE_TO": "azure",
            "RUSTYFLOWER_SITE_ID": SITE,
            "RUSTYFLOWER_AZURE_STORAGE": connection,
            "RUSTYFLOWER_REPLICA_CONTAINER": container,
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
    agent.prepare(threading.Event())
    while agent.replicator.ship_round("azure").handled:
        pass
    return agent


def timer_fires(function_app: ReplayFunctionApp) -> None:
    """The host fires the app's watchdog timer (its user code, the durable client bound)."""
    user = functions_of(app)["rustyflower_watchdog"].get_user_function()
    with function_app.lock:
        function_app.durable.run(until=datetime.now(UTC))
        asyncio.run(user.client_function(timer=None, client=function_app.client))
        function_app.durable.run(until=function_app.durable.clock)


def report(connection: str, container: str) -> TakeoverReport:
    leases = BlobLeaseStore(replica_container(container, connection_string=connection))
    found = leases.read(SITE)
    assert found is not None and found.lease.takeover is not None
    mark = found.lease.takeover
    assert mark.complete and mark.report
    stores = BlobReplicaStore(replica_container(container, connection_string=connection), SITE)
    return TakeoverReport.decode(stores.read_report(mark.report))


def test_split_brain_only_the_epoch_owner_advances_the_instance(
    site: Site,
    function_app: ReplayFunctionApp,
    azurite_connection_string: str,
    containers: tuple[str, str],
) -> None:
    site.start("order-1")
    waiting = site.wait_at("order-1", "Approve")
    agent = lifeboat(site, azurite_connection_string, containers[1], renewed=HOUR_AGO)

    timer_fires(function_app)
    taken = report(azurite_connection_string, containers[1])
    (entry,) = taken.instances
    assert (entry.instance_id, entry.result, entry.epoch, entry.from_seq) == (
        "order-1",
        "started",
        1,
        waiting.seq,
    )
    status = function_app.instance("order-1").custom_status
    assert (status["epoch"], status["seq"], status["positions"]) == (1, waiting.seq, ["Approve"])

    site.conductor.signal("order-1", "approval", {"by": "bob"})  # the site, unaware
    while agent.replicator.ship_round("azure").handled:
        pass
    # the cloud's copy is the cloud's: the site's segment is outranked, its folding refused
    replicas = replica_container(containers[1], connection_string=azurite_connection_string)
    replica = BlobReplicaStore(replicas, SITE).read("order-1")
    assert replica is not None and (replica.header.epoch, replica.header.owner) == (1, "azure")
    agent.replicator.compact("azure", everything=True)
    assert agent.replicator.status["azure"].fenced >= 1

    agent.keeper.now = lambda: datetime.now(UTC)
    assert agent.keeper.renew("azure").state == "held"
    info = site.store.info("order-1")
    assert (info.owner, info.epoch, info.seq) == ("azure", 1, waiting.seq)
    with pytest.raises(FencedError):
        site.conductor.apply("order-1", EventReceived("approval", {"by": "carol"}))

    sent = site.cli("signal", "order-1", "approval", "--data", json.dumps(APPROVAL))
    assert "lives in azure" in sent.stdout
    function_app.run_all()
    result = function_app.instance("order-1").output
    assert (result["status"], result["output"]) == ("succeeded", EXPECTED)
    (row,) = site.cli_json("failback", "--from", "azure", "order-1")
    assert (row["result"], row["status"], row["epoch"]) == ("resumed", "succeeded", 2)
    assert site.store.load("order-1", fresh=True).state.output == EXPECTED

    timer_fires(function_app)  # the site holds its lease again: nothing more happens
    assert function_app.client.started == ["order-1"]


def test_a_takeover_continues_child_flows_with_their_parent(
    site: Site,
    function_app: ReplayFunctionApp,
    azurite_connection_string: str,
    containers: tuple[str, str],
) -> None:
    site.store.register(PARENT)
    site.conductor.start("parent", {"amount": 41}, instance_id="p-1")
    (child_id,) = [
        entry.command.child_instance_id
        for entry in site.wait_at("p-1", "Call").state.pending.values()
        if isinstance(entry.command, StartChildFlow)
    ]
    child_seq = site.wait_at(child_id, "Approve").seq
    agent = lifeboat(site, azurite_connection_string, containers[1], renewed=HOUR_AGO)

    timer_fires(function_app)
    entries = {
        one.instance_id: one for one in report(azurite_connection_string, containers[1]).instances
    }
    assert {i: (e.result, e.parent, e.epoch) for i, e in entries.items()} == {
        "p-1": ("started", None, 1),
        child_id: ("started", "p-1", 1),
    }
    assert function_app.client.started == ["p-1"]  # the child travels with its parent
    child = function_app.instance(child_id)
    assert child.custom_status["positions"] == ["Approve"]  # continued, not started again
    assert child.custom_status["seq"] == child_seq

    agent.keeper.now = lambda: datetime.now(UTC)
    applied = agent.keeper.renew("azure").applied[-1]
    assert sorted(applied.adopted) == sorted(["p-1", child_id])
    assert site.store.info(child_id).owner == "azure"
    site.cli("signal", child_id, "approval", "--data", json.dumps(APPROVAL))
    function_app.run_all()
    assert function_app.instance("p-1").output["output"] == {"amount": 41, "child": EXPECTED}


def test_of_two_watchdog_runs_one_takes_over(
    site: Site,
    function_app: ReplayFunctionApp,
    azurite_connection_string: str,
    containers: tuple[str, str],
) -> None:
    for instance_id in ("race-1", "race-2"):
        site.start(instance_id)
        site.wait_at(instance_id, "Approve")
    lifeboat(site, azurite_connection_string, containers[1], renewed=HOUR_AGO)
    blobs = replica_container(containers[1], connection_string=azurite_connection_string)

    def dog() -> Watchdog:
        return Watchdog(
            WatchdogSettings(site=SITE, cloud="azure", threshold=60.0),
            BlobLeaseStore(blobs),
            BlobReplicaStore(blobs, SITE),
            KEYS,
            lambda: datetime.now(UTC),
        )

    first, second = dog(), dog()
    seen = [first.check(), second.check()]
    assert [v.kind for v in seen] == ["stale", "stale"]
    assert [first.begin(seen[0]) is not None, second.begin(seen[1]) is not None] == [True, False]
    timer_fires(function_app)  # a run while the first one's takeover is in progress
    assert function_app.client.started == []
    lease = BlobLeaseStore(blobs).read(SITE)
    assert lease is not None and (lease.lease.holder, lease.lease.term) == ("azure", 2)
