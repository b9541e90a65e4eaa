"""Failover to AWS and back through the HTTP API, end to end on moto.

The site is the continuity tests' (``tests/continuity/kit.py``): a real Redis, a store
signing with the keys the cloud knows, a worker in this process. AWS is moto with its
Step Functions executor on, whose Lambda integration runs ``lambda_aws``'s real handlers
(``tests/aws/test_lambda_kit.py``). The API is served for real (uvicorn on loopback) with
the cloud's settings in the process environment, as ``rustyflower serve`` reads them; every
step goes through it: start, failover, status, the signal (routed to the cloud), failback.
"""

from __future__ import annotations

import time
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
from tests.aws.test_lambda_kit import KEYS, LambdaWorld, lambda_world, set_environment
from tests.continuity.kit import APPROVAL, EXPECTED, FLOW, INPUT, Site, wait_until
from tests.continuity.test_aws import execution_arn, in_rest
from tests.redis.conftest import Runtime
from tests.redis.servers import ServerProcess

pytestmark = pytest.mark.emulator

INSTANCE = "api-order-1"


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[LambdaWorld]:
    set_environment(monkeypatch)
    with lambda_world() as opened:
        opened.deploy(FLOW)
        yield opened


@pytest.fixture
def site(
    server: ServerProcess, world: LambdaWorld, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Site]:
    client = redis.Redis.from_url(server.url)
    keys = Keyspace(prefix=f"l{uuid.uuid4().hex[:10]}")
    store = RedisStore(client, keys)
    store.ensure_groups()
    made = Site(Runtime(server, client, keys, store, Conductor(store)), KEYS)
    made.settle_environment(monkeypatch)  # the cloud's settings, as `serve` would read them
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


def status(http: httpx.Client) -> dict[str, Any]:
    answer = http.get(f"/v1/instances/{INSTANCE}")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def posted(http: httpx.Client, path: str, body: dict[str, Any]) -> Any:
    answer = http.post(path, json=body)
    assert answer.status_code in (200, 201), (path, answer.status_code, answer.text)
    return answer.json()


def test_failover_signal_and_failback_through_the_api(
    http: httpx.Client, site: Site, world: LambdaWorld
) -> None:
    started = posted(http, "/v1/instances", {"flow": FLOW.name, "input": INPUT, "id": INSTANCE})
    assert (started["instance_id"], started["owner"]) == (INSTANCE, "local")
    before = wait_until("the wait for approval", lambda: _waiting(http))
    assert before["waiting_for"][0]["event"] == "approval"
    epoch = before["epoch"]

    # over to AWS: fenced here (epoch + 1, owner aws), started there
    (moved,) = posted(http, "/v1/failover", {"to": "aws", "instance_ids": [INSTANCE]})
    arn = execution_arn(INSTANCE, epoch + 1)
    assert (moved["instance_id"], moved["action"], moved["cloud"]) == (INSTANCE, "failover", "aws")
    assert (moved["result"], moved["ok"], moved["epoch"], moved["where"]) == (
        "started",
        True,
        epoch + 1,
        arn,
    )
    away = status(http)
    assert (away["owner"], away["epoch"], away["status"]) == ("aws", epoch + 1, "running")
    assert world.stepfunctions.describe_execution(executionArn=arn)["status"] == "RUNNING"
    listed = http.get("/v1/instances", params={"flow": FLOW.name}).json()["items"]
    assert [(row["owner"], row["epoch"]) for row in listed] == [("aws", epoch + 1)]
    for action in ("hold", "cancel"):  # the site is fenced: it cannot move the instance
        refused = http.post(f"/v1/instances/{INSTANCE}/{action}", json={})
        assert (refused.status_code, refused.json()["error"]["code"]) == (409, "fenced"), action

    # the signal goes where the instance lives
    world.wait_for_waiter(INSTANCE, "approval")
    signalled = posted(
        http, f"/v1/instances/{INSTANCE}/signal", {"event": "approval", "data": APPROVAL}
    )
    assert signalled["delivered_to"] == "aws"
    wait_until("the execution to rest", lambda: in_rest(world, arn), timeout=30)

    # back from AWS: the execution stops, the instance resumes here at epoch + 2
    (back,) = posted(http, "/v1/failback", {"from": "aws", "instance_ids": [INSTANCE]})
    assert (back["instance_id"], back["action"], back["cloud"]) == (INSTANCE, "failback", "aws")
    assert (back["result"], back["ok"], back["epoch"], back["status"]) == (
        "resumed",
        True,
        epoch + 2,
        "running",
    )
    assert world.stepfunctions.describe_execution(executionArn=arn)["status"] == "ABORTED"
    home = status(http)
    assert (home["owner"], home["epoch"]) == ("local", epoch + 2)
    assert home["positions"] == ["Rest"]  # the task and the event happened in AWS

    finished = wait_until("the local finish", lambda: _finished(http), timeout=30)
    assert (finished["status"], finished["output"]) == ("succeeded", EXPECTED)
    assert (finished["owner"], finished["epoch"]) == ("local", epoch + 2)
    again = http.post("/v1/failback", json={"from": "aws", "instance_ids": [INSTANCE]})
    assert again.status_code == 200, again.text
    (row,) = again.json()
    assert (row["result"], row["ok"]) == ("failed", False)
    assert "not in AWS (owner local)" in row["error"]


def _waiting(http: httpx.Client) -> dict[str, Any] | None:
    found = status(http)
    return found if found["positions"] == ["Approve"] else None


def _finished(http: httpx.Client) -> dict[str, Any] | None:
    found = status(http)
    if found["status"] == "running":
        time.sleep(0.1)
        return None
    return found
