"""Where an instance lives in Azure, and taking it back by force (issue 11, items 2 and 3).

The site and the Function App as in ``test_azure``: a real Redis with a worker here, the
app's real HTTP functions and the real Durable SDK orchestrator on the replay host,
checkpoints in Azurite. An unreachable app is a URL where nothing listens.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from rustyflower.adapters.azure.blob_store import BlobSnapshotStore
from rustyflower.core.errors import EpochConflictError
from rustyflower.core.snapshot.document import decode_snapshot
from tests.azure.azurite import (  # noqa: F401 - pytest fixtures used by name
    azurite_connection_string_fixture,
    azurite_fixture,
)
from tests.azure.support import KEYS, app_settings
from tests.continuity.azure_kit import FUNCTION_KEY, ReplayFunctionApp, running_app
from tests.continuity.kit import APPROVAL, EXPECTED, Site, command_output
from tests.continuity.test_where_aws import list_row, rows
from tests.redis.conftest import Runtime

pytestmark = pytest.mark.emulator

UNREACHABLE = {"RUSTYFLOWER_AZURE_FUNCTION_URL": "http://127.0.0.1:9"}


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
    for name, value in settings.items():
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


def in_azure(site: Site, instance_id: str) -> None:
    site.start(instance_id)
    site.wait_at(instance_id, "Approve")
    site.cli("failover", "--to", "azure", instance_id)


def test_status_and_list_show_the_instance_in_azure_and_what_azure_says(
    site: Site, function_app: ReplayFunctionApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_azure(site, "az-1")
    site.cli("signal", "az-1", "approval", "--data", json.dumps(APPROVAL))  # moves on there
    shown = rows(site.cli("status", "az-1").stdout)
    assert shown["where"].startswith("azure (epoch 1, since 20")
    assert shown["cloud status"] == "Running"
    seq = function_app.instance("az-1").custom_status["seq"]
    assert shown["cloud at"] == f"Rest (seq {seq})"
    assert shown["cloud run"]  # the orchestration's Durable id
    assert shown["at"] == "Approve (the site's view at failover time)"
    assert "azure (epoch 1)" in list_row(site, "az-1")
    cloud = site.cli_json("status", "az-1")["cloud"]
    assert (cloud["asked"], cloud["status"], cloud["positions"], cloud["seq"]) == (
        True,
        "Running",
        ["Rest"],
        seq,
    )

    unreachable = rows(site.cli("status", "az-1", env=UNREACHABLE).stdout)
    assert unreachable["cloud"].startswith("could not be asked:")
    assert unreachable["at"] == "Approve (the site's view at failover time)"
    # no settings at all: not asked, and says which setting is missing
    monkeypatch.delenv("RUSTYFLOWER_AZURE_FUNCTION_URL")
    site.environment.pop("RUSTYFLOWER_AZURE_FUNCTION_URL")
    unset = rows(site.cli("status", "az-1").stdout)
    assert unset["cloud"].startswith("not asked:")
    assert "RUSTYFLOWER_AZURE_FUNCTION_URL" in unset["cloud"]
    assert unset["where"].startswith("azure (epoch 1")


def test_history_shows_the_round_trip_through_azure(
    site: Site, function_app: ReplayFunctionApp
) -> None:
    in_azure(site, "az-2")
    site.cli("signal", "az-2", "approval", "--data", json.dumps(APPROVAL))
    (row,) = site.cli_json("failback", "--from", "azure", "az-2")
    assert row["result"] == "resumed"
    assert site.wait_finished("az-2").state.output == EXPECTED
    moves = [
        (entry["kind"], entry["detail"])
        for entry in site.cli_json("history", "az-2")
        if entry["kind"] in ("FailedOver", "FailedBack", "Reclaimed")
    ]
    assert moves == [
        ("FailedOver", {"cloud": "azure", "epoch": 1}),
        ("FailedBack", {"cloud": "azure", "epoch": 2}),
    ]


def test_force_with_the_app_unreachable_takes_the_site_snapshot(
    site: Site, function_app: ReplayFunctionApp, azurite_connection_string: str, container: str
) -> None:
    in_azure(site, "az-3")
    site.cli("signal", "az-3", "approval", "--data", json.dumps(APPROVAL))  # only Azure knows
    result = site.cli(
        "failback", "--from", "azure", "az-3", "--force", "--reason", "region outage", "--json",
        env=UNREACHABLE,
    )  # fmt: skip
    (row,) = json.loads(command_output(result.stdout))
    assert (row["result"], row["epoch"], row["detail"]["source"]) == ("reclaimed", 2, "site")
    assert "WARNING: az-3 was taken back from the site's own snapshot" in result.stderr
    assert site.store.load("az-3", fresh=True).positions == ["Approve"]
    (entry,) = [e for e in site.store.history("az-3") if e["kind"] == "Reclaimed"]
    assert (entry["detail"]["reason"], entry["detail"]["source"]) == ("region outage", "site")

    # the app comes back with its checkpoint of epoch 1: refused here
    checkpoints = BlobSnapshotStore.from_connection_string(azurite_connection_string, container)
    late = decode_snapshot(checkpoints.latest("az-3"), KEYS)
    assert late.epoch == 1
    with pytest.raises(EpochConflictError, match="owned by epoch 2"):
        site.store.resume(late, take_ownership=True)
    later = site.cli("failback", "--from", "azure", "az-3", ok=False)
    assert later.exit_code == 1 and "not in Azure (owner local)" in later.stderr
    # a signal now goes to the site (its owner), not to the orchestration of epoch 1
    sent = site.cli("signal", "az-3", "approval", "--data", json.dumps(APPROVAL))
    assert "lives in azure" not in sent.stdout
    assert site.wait_finished("az-3").state.output == EXPECTED


def test_force_with_the_app_reachable_terminates_it_and_takes_its_checkpoint(
    site: Site, function_app: ReplayFunctionApp
) -> None:
    in_azure(site, "az-4")
    site.cli("signal", "az-4", "approval", "--data", json.dumps(APPROVAL))
    result = site.cli("failback", "--from", "azure", "az-4", "--force", "--reason", "stuck")
    assert "reclaimed" in command_output(result.stdout) and "WARNING" not in result.stderr
    assert function_app.instance("az-4").status == "Terminated"
    assert site.store.load("az-4", fresh=True).positions == ["Rest"]  # Azure's progress kept
    assert site.wait_finished("az-4").state.output == EXPECTED


def test_force_reports_an_instance_that_is_not_in_the_cloud(site: Site) -> None:
    site.start("az-5")
    site.wait_at("az-5", "Approve")
    result = site.cli(
        "failback", "--from", "azure", "az-5", "--force", "--reason", "x", "--json", ok=False
    )
    assert result.exit_code == 1
    (row,) = json.loads(command_output(result.stdout))
    assert row["result"] == "failed" and "not in Azure" in row["error"]
