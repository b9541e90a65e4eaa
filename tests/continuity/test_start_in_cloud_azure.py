# ruff: noqa: F811 - the fixtures of test_azure.py, imported by name, are the parameters
"""``rustyflower start FLOW --on azure`` then ``failback``: the app's real functions on a
replay host (tests/continuity/azure_kit.py), checkpoints in Azurite.

The instance starts in Durable Functions (the orchestration named after it), shows in
``status``/``list`` as living there, takes its signal there, and comes back with
``failback`` to finish on premises with the output of an uninterrupted run; a start the
app refuses (a snapshot signed with a key it does not know) is cancelled here.
"""

from __future__ import annotations

import json

import pytest

from rustyflower.adapters.continuity import ContinuityError
from rustyflower.adapters.continuity.azure import AzureContinuity, AzureSettings
from rustyflower.adapters.continuity.start import start_in_cloud
from rustyflower.adapters.redis.store import RedisStore
from rustyflower.core.snapshot import SnapshotKeys, generate_signing_key
from tests.azure.azurite import (  # noqa: F401 - pytest fixtures used by name
    azurite_connection_string_fixture,
    azurite_fixture,
)
from tests.azure.support import SIGNING_KEY
from tests.continuity.azure_kit import FUNCTION_KEY, ReplayFunctionApp
from tests.continuity.kit import APPROVAL, EXPECTED, FLOW, INPUT, Site
from tests.continuity.test_azure import container, function_app, site  # noqa: F401 - fixtures

pytestmark = pytest.mark.emulator


def test_start_on_azure_then_failback_finishes_with_the_uninterrupted_output(
    site: Site, function_app: ReplayFunctionApp
) -> None:
    reference = site.reference_run("reference")
    assert reference.state.output == EXPECTED
    row = site.cli_json(
        "start", FLOW.name, "--on", "azure", "--id", "z-1", "--input", json.dumps(INPUT)
    )
    assert (row["action"], row["result"], row["epoch"], row["where"]) == (
        "start",
        "started",
        1,
        "z-1",
    )
    info = site.store.info("z-1")
    assert (info.owner, info.epoch) == ("azure", 1)
    assert "z-1" in {item["instance_id"] for item in site.cli_json("list")}
    status = function_app.instance("z-1").custom_status
    assert status["positions"] == ["Approve"]  # the first activity ran in Azure
    assert site.store.load("z-1", fresh=True).seq == 1  # the site advanced nothing

    sent = site.cli("signal", "z-1", "approval", "--data", json.dumps(APPROVAL))
    assert "lives in azure" in sent.stdout
    assert function_app.instance("z-1").custom_status["positions"] == ["Rest"]

    (back,) = site.cli_json("failback", "--from", "azure", "z-1")
    assert (back["result"], back["epoch"]) == ("resumed", 2)
    assert function_app.instance("z-1").status == "Terminated"
    finished = site.wait_finished("z-1")
    assert (finished.status, finished.state.output) == ("succeeded", reference.state.output)


def test_a_start_the_app_refuses_is_cancelled_here(
    site: Site, function_app: ReplayFunctionApp
) -> None:
    stranger = generate_signing_key("stranger")
    keys = SnapshotKeys.from_keys([stranger, SIGNING_KEY], [])  # signs with the stranger
    store = RedisStore(site.store.client, site.store.keys, keys)
    settings = AzureSettings(function_url=function_app.url, function_key=FUNCTION_KEY)
    with pytest.raises(ContinuityError) as refused:
        start_in_cloud(AzureContinuity(store, settings), FLOW.name, INPUT, instance_id="z-2")
    assert "UnknownKeyError" in str(refused.value)
    assert "cancelled here" in str(refused.value)
    info = site.store.info("z-2")
    assert (info.owner, info.status, info.epoch) == ("local", "cancelled", 2)
    assert function_app.client.started == []
