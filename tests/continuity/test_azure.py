"""Failover to Azure and back, against the app's real functions on a replay host, Azurite.

The site runs on a real Redis with a worker in this process. The Function App is
``azure_kit.ReplayFunctionApp``: an HTTP server on 127.0.0.1 whose routes call the app's
wired HTTP functions, with the real SDK orchestrator replayed by the product's
``DurableHost`` (``rustyflower.adapters.localcloud``); the app's checkpoint function writes
to Azurite, where failback reads.
Everything goes through the CLI as an operator would type it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from rustyflower.adapters.azure.blob_store import BlobSnapshotStore
from rustyflower.adapters.continuity import ContinuityError
from rustyflower.adapters.continuity.azure import AzureContinuity, AzureSettings
from rustyflower.adapters.redis.conductor import Conductor, FencedError
from rustyflower.adapters.redis.store import RedisStore
from rustyflower.core.engine import EventReceived, StartChildFlow
from rustyflower.core.model import parse_definition
from rustyflower.core.snapshot import SnapshotKeys, generate_signing_key
from tests.azure.azurite import (  # noqa: F401 - pytest fixtures used by name
    azurite_connection_string_fixture,
    azurite_fixture,
)
from tests.azure.support import KEYS, SIGNING_KEY, app_settings
from tests.continuity.azure_kit import FUNCTION_KEY, ReplayFunctionApp, running_app
from tests.continuity.kit import APPROVAL, EXPECTED, Site
from tests.redis.conftest import Runtime

pytestmark = pytest.mark.emulator


@pytest.fixture
def container(azurite_connection_string: str) -> str:
    name = f"rf-{uuid.uuid4().hex[:12]}"
    BlobSnapshotStore.from_connection_string(azurite_connection_string, name).ensure_container()
    return name


@pytest.fixture
def function_app(
    monkeypatch: pytest.MonkeyPatch, azurite_connection_string: str, container: str
) -> Iterator[ReplayFunctionApp]:
    settings = app_settings(
        RUSTYFLOWER_SNAPSHOT_SINK="blob",
        RUSTYFLOWER_SNAPSHOT_CONNECTION=azurite_connection_string,
        RUSTYFLOWER_SNAPSHOT_CONTAINER=container,
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
    container: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Site]:
    made = Site(
        runtime,
        KEYS,
        environment={
            "RUSTYFLOWER_AZURE_FUNCTION_URL": function_app.url,
            "RUSTYFLOWER_AZURE_FUNCTION_KEY": FUNCTION_KEY,
            "RUSTYFLOWER_AZURE_STORAGE": azurite_connection_string,
            "RUSTYFLOWER_SNAPSHOT_CONTAINER": container,
        },
    )
    made.settle_environment(monkeypatch)
    with made.worker():
        yield made


def waiting_site(site: Site, instance_id: str) -> None:
    site.start(instance_id)
    site.wait_at(instance_id, "Approve")


def test_failover_fences_the_instance_and_is_idempotent(
    site: Site, function_app: ReplayFunctionApp
) -> None:
    waiting_site(site, "order-1")
    before = site.store.info("order-1")
    (row,) = site.cli_json("failover", "--to", "azure", "order-1")
    assert (row["result"], row["epoch"], row["where"]) == ("started", before.epoch + 1, "order-1")

    info = site.store.info("order-1")
    assert (info.owner, info.epoch, info.seq) == ("azure", before.epoch + 1, before.seq)
    with pytest.raises(FencedError):
        site.conductor.apply("order-1", EventReceived("approval", APPROVAL))
    status = function_app.instance("order-1").custom_status
    assert (status["positions"], status["epoch"], status["seq"]) == (
        ["Approve"],
        info.epoch,
        info.seq,
    )

    (again,) = site.cli_json("failover", "--to", "azure", "order-1")
    assert (again["result"], again["epoch"]) == ("existing", info.epoch)
    assert site.store.info("order-1").epoch == info.epoch
    assert function_app.client.started == ["order-1"]


def test_a_signal_reaches_the_instance_in_azure_and_completes_it(
    site: Site, function_app: ReplayFunctionApp
) -> None:
    waiting_site(site, "order-2")
    site.cli("failover", "--to", "azure", "order-2")
    sent = site.cli("signal", "order-2", "approval", "--data", json.dumps(APPROVAL))
    assert "lives in azure" in sent.stdout
    assert function_app.client.raised == [("order-2", "approval", APPROVAL)]
    assert function_app.instance("order-2").custom_status["positions"] == ["Rest"]
    function_app.run_all()  # the wait passes on the virtual clock
    result = function_app.instance("order-2").output
    assert (result["status"], result["output"]) == ("succeeded", EXPECTED)

    # failing back a completed orchestration brings its final snapshot home
    (row,) = site.cli_json("failback", "--from", "azure", "order-2")
    assert (row["result"], row["status"], row["epoch"]) == ("resumed", "succeeded", 2)
    assert row["detail"] == {"runtime_status": "Completed"}
    assert site.store.load("order-2", fresh=True).state.output == EXPECTED
    assert site.store.info("order-2").owner == "local"


def test_failback_terminates_at_the_checkpoint_and_resumes_on_premises(
    site: Site, function_app: ReplayFunctionApp, azurite_connection_string: str, container: str
) -> None:
    reference = site.reference_run("reference")
    waiting_site(site, "order-3")
    site.cli("failover", "--to", "azure", "order-3")
    site.cli("signal", "order-3", "approval", "--data", json.dumps(APPROVAL))
    assert function_app.instance("order-3").custom_status["positions"] == ["Rest"]

    (row,) = site.cli_json("failback", "--from", "azure", "order-3")
    assert (row["result"], row["epoch"], row["status"]) == ("resumed", 2, "running")
    orchestration = function_app.instance("order-3")
    assert orchestration.status == "Terminated"
    held = [e for e in function_app.client.raised if e[1] == "rustyflower.hold"]
    assert held == [("order-3", "rustyflower.hold", {"reason": "failback to on-premises"})]
    terminates = [r for r in function_app.requests if r[0] == "terminate_flow_instance"]
    assert len(terminates) == 1

    checkpoints = BlobSnapshotStore.from_connection_string(azurite_connection_string, container)
    latest = checkpoints.latest_info("order-3")
    assert (latest.epoch, latest.seq) == (1, orchestration.custom_status["seq"])
    info = site.store.info("order-3")
    assert (info.owner, info.epoch) == ("local", 2)
    back = site.store.load("order-3", fresh=True)
    assert back.positions == ["Rest"] and not back.state.held  # held there, released here
    assert back.state.tokens["Rest"].data["decision"] == APPROVAL

    finished = site.wait_finished("order-3")
    assert (finished.status, finished.state.output) == ("succeeded", reference.state.output)


def test_failback_of_an_instance_azure_never_started_takes_it_back(site: Site) -> None:
    """The failover died between the fence and the POST: failback reclaims the snapshot."""
    waiting_site(site, "order-4")
    site.store.fence("order-4", 1, "azure")
    (row,) = site.cli_json("failback", "--from", "azure", "order-4")
    assert (row["result"], row["epoch"]) == ("reclaimed", 2)
    assert site.store.info("order-4").owner == "local"
    site.conductor.signal("order-4", "approval", APPROVAL)
    assert site.wait_finished("order-4").state.output == EXPECTED


def test_a_refused_snapshot_gives_the_instance_back(
    site: Site, function_app: ReplayFunctionApp
) -> None:
    """The site signs with a key the app does not know: nothing starts, it stays here.

    (Through the API: in this process the app would read the CLI's environment.)
    """
    waiting_site(site, "order-5")
    stranger = generate_signing_key("stranger")
    keys = SnapshotKeys.from_keys([stranger, SIGNING_KEY], [])  # signs with the stranger
    store = RedisStore(site.store.client, site.store.keys, keys)
    settings = AzureSettings(function_url=function_app.url, function_key=FUNCTION_KEY)
    with pytest.raises(ContinuityError) as refused:
        AzureContinuity(store, settings).failover("order-5")
    assert "UnknownKeyError" in str(refused.value)
    assert "stays on-premises, epoch 2" in str(refused.value)
    info = site.store.info("order-5")
    assert (info.owner, info.epoch) == ("local", 2)
    assert function_app.client.started == []
    assert Conductor(store).cancel("order-5").snapshot.status == "cancelled"  # the site's


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


def test_child_flows_in_flight_travel_with_their_parent_and_come_back(
    site: Site, function_app: ReplayFunctionApp
) -> None:
    site.store.register(PARENT)
    site.conductor.start("parent", {"amount": 41}, instance_id="p-1")
    (child_id,) = [
        entry.command.child_instance_id
        for entry in site.wait_at("p-1", "Call").state.pending.values()
        if isinstance(entry.command, StartChildFlow)
    ]
    site.wait_at(child_id, "Approve")

    (row,) = site.cli_json("failover", "--to", "azure", "--all")  # the root only
    assert (row["instance_id"], row["result"], row["detail"]) == (
        "p-1",
        "started",
        {"children": [child_id]},
    )
    assert site.store.info(child_id).owner == "azure"
    child = function_app.instance(child_id)
    assert child.custom_status["positions"] == ["Approve"]  # continued, not started again

    (back,) = site.cli_json("failback", "--from", "azure", "--all")
    assert (back["instance_id"], back["result"]) == ("p-1", "resumed")
    assert back["detail"]["children"] == {child_id: "resumed (running, epoch 2)"}
    assert function_app.instance(child_id).status == "Terminated"  # with its parent
    assert site.store.info(child_id).owner == "local"
    site.cli("signal", child_id, "approval", "--data", json.dumps(APPROVAL))
    finished = site.wait_finished("p-1")
    assert finished.state.output == {"amount": 41, "child": EXPECTED}
