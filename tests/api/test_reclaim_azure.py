"""``POST /v1/failback`` from Azure through the HTTP API: Azure's ``hold`` and
``safe_point_timeout`` reach the failback, and ``force`` takes an instance back from an
app that cannot be reached.

The site and the Function App are ``tests/continuity/test_where_azure``'s (a real Redis
with a worker here, the app's real HTTP functions and the real Durable SDK orchestrator on
the replay host, checkpoints in Azurite); the API is served on loopback as in
``test_lifeboat_aws``, with the app's settings in the process environment.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from rustyflower.adapters.redis.conductor import Conductor
from rustyflower.adapters.redis.keys import Keyspace
from rustyflower.adapters.redis.store import RedisStore
from rustyflower.adapters.web import ApiSettings
from tests.api.conftest import TOKEN, serve
from tests.azure.azurite import (  # noqa: F401 - pytest fixtures used by name
    azurite_connection_string_fixture,
    azurite_fixture,
)
from tests.azure.support import KEYS
from tests.continuity.azure_kit import FUNCTION_KEY, ReplayFunctionApp
from tests.continuity.kit import APPROVAL, EXPECTED, Site
from tests.continuity.test_where_azure import UNREACHABLE, container, function_app
from tests.redis.conftest import Runtime
from tests.redis.servers import ServerProcess

pytestmark = pytest.mark.emulator
__all__ = ["container", "function_app"]  # the fixtures, shared with test_where_azure


@pytest.fixture
def site(
    server: ServerProcess,
    function_app: ReplayFunctionApp,
    azurite_connection_string: str,
    container: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Site]:
    client = redis.Redis.from_url(server.url)
    keys = Keyspace(prefix=f"z{uuid.uuid4().hex[:10]}")
    store = RedisStore(client, keys)
    store.ensure_groups()
    made = Site(
        Runtime(server, client, keys, store, Conductor(store)),
        KEYS,
        environment={
            "RUSTYFLOWER_AZURE_FUNCTION_URL": function_app.url,
            "RUSTYFLOWER_AZURE_FUNCTION_KEY": FUNCTION_KEY,
            "RUSTYFLOWER_AZURE_STORAGE": azurite_connection_string,
            "RUSTYFLOWER_SNAPSHOT_CONTAINER": container,
        },
    )
    made.settle_environment(monkeypatch)  # as `serve` would read them
    with made.worker():
        yield made
    for key in client.scan_iter(match=f"{keys.prefix}:*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture
def http(site: Site) -> Iterator[httpx.Client]:
    settings = ApiSettings(tokens=frozenset({TOKEN}), webhooks=False, dashboard=False)
    running = serve(site.runtime.server, site.runtime.keys.prefix, settings, keys=KEYS)
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=running.url, headers=headers, timeout=60) as client:
            yield client
    finally:
        running.stop()


def in_azure(site: Site, http: httpx.Client, instance_id: str) -> None:
    site.start(instance_id)
    site.wait_at(instance_id, "Approve")
    (moved,) = posted(http, "/v1/failover", {"to": "azure", "instance_ids": [instance_id]})
    assert (moved["result"], moved["epoch"]) == ("started", 1), moved


def posted(http: httpx.Client, path: str, body: dict[str, Any]) -> Any:
    answer = http.post(path, json=body)
    assert answer.status_code == 200, (path, answer.status_code, answer.text)
    return answer.json()


def kinds(site: Site, instance_id: str) -> list[str]:
    return [str(entry["kind"]) for entry in site.store.history(instance_id)]


def test_api_failback_from_azure_takes_hold_and_safe_point_timeout(
    http: httpx.Client, site: Site, function_app: ReplayFunctionApp
) -> None:
    # held first (the default): the hold is in its history, released once it is back
    in_azure(site, http, "az-api-1")
    (held,) = posted(
        http,
        "/v1/failback",
        {"from": "azure", "instance_ids": ["az-api-1"], "safe_point_timeout": 30},
    )
    assert (held["result"], held["ok"], held["epoch"]) == ("resumed", True, 2), held
    assert {"Held", "Released"} <= set(kinds(site, "az-api-1"))

    # hold false: terminated at a checkpoint without being held
    in_azure(site, http, "az-api-2")
    (plain,) = posted(
        http,
        "/v1/failback",
        {"from": "azure", "instance_ids": ["az-api-2"], "hold": False, "safe_point_timeout": 30},
    )
    assert (plain["result"], plain["ok"], plain["epoch"]) == ("resumed", True, 2), plain
    assert function_app.instance("az-api-2").status == "Terminated"
    assert not {"Held", "Released"} & set(kinds(site, "az-api-2"))
    for instance_id in ("az-api-1", "az-api-2"):
        assert site.store.load(instance_id, fresh=True).positions == ["Approve"]
        site.conductor.signal(instance_id, "approval", APPROVAL)
        assert site.wait_finished(instance_id).state.output == EXPECTED


def test_api_force_from_azure_unreachable_and_ask_cloud(
    http: httpx.Client, site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_azure(site, http, "az-api-3")
    asked = http.get("/v1/instances/az-api-3", params={"ask_cloud": "true"}).json()["cloud"]
    assert (asked["cloud"], asked["asked"], asked["where"]) == ("azure", True, "az-api-3")
    assert asked["status"] == "Running" and asked["positions"] == ["Approve"]

    for name, value in UNREACHABLE.items():  # the server runs in this process
        monkeypatch.setenv(name, value)
    offline = http.get("/v1/instances/az-api-3", params={"ask_cloud": "true"})
    assert offline.status_code == 200, offline.text
    assert offline.json()["cloud"]["problem"].startswith("could not be asked:")
    (row,) = posted(
        http,
        "/v1/failback",
        {"from": "azure", "instance_ids": ["az-api-3"], "force": True, "reason": "app deleted"},
    )
    assert (row["result"], row["epoch"], row["detail"]["source"]) == ("reclaimed", 2, "site")
    assert "may be done again" in row["detail"]["warning"]
    site.conductor.signal("az-api-3", "approval", APPROVAL)
    assert site.wait_finished("az-api-3").state.output == EXPECTED
