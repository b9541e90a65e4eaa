"""The HTTP API served for real: uvicorn on loopback over a real Valkey or Redis 7.

``api`` is the running app (its own key prefix, one bearer token) with a worker that
runs ``activities``; ``http`` is an httpx client that sends the token.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis

from rustyflower import ActivityRegistry, Flow, Retry, SnapshotKeys, current_call
from rustyflower.adapters.web import ApiSettings, create_app
from rustyflower.adapters.web.serving import ApiServer
from rustyflower.adapters.web.settings import WebhookPolicy
from rustyflower.client import AsyncClient, Client
from rustyflower.worker import Worker
from tests.redis.servers import ServerProcess, redis_binary, valkey_binary
from tests.tooling import missing_tool

pytestmark = pytest.mark.emulator

TOKEN = "test-token-0123456789abcdef"
activities = ActivityRegistry()


class Flaky(Exception):
    """Fails the first attempt of ``flaky``."""


@activities.activity
def double(payload: dict[str, Any]) -> dict[str, Any]:
    return {"value": payload["value"] * 2}


@activities.activity(retry=[Retry(errors=["Flaky"], max_attempts=3, interval_seconds=1)])
def flaky(payload: dict[str, Any]) -> dict[str, Any]:
    if current_call().attempt == 1:
        raise Flaky("first attempt")
    time.sleep(0.5)  # the slowest step of the known run, by far (reports rank steps by it)
    return {"value": payload["value"], "attempt": current_call().attempt}


@activities.activity
def refuse(payload: Any) -> None:
    raise PermissionError("not today")


FLOWS = [
    Flow("doubling", version="1").task("Double", "double").build(),
    Flow("twice", version="1").task("First", "flaky").task("Second", "double").build(),
    Flow("refusing", version="1").task("Refuse", "refuse").build(),
    Flow("approval", version="1")
    .wait_for_event("Wait", "approval", result_path="$.answer")
    .succeed("Done")
    .build(),
]


@pytest.fixture(scope="session", params=["valkey", "redis"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    kind = request.param
    binary = valkey_binary() if kind == "valkey" else redis_binary()
    if binary is None:
        missing_tool("redis-server is not installed (.ci/run installs Debian's redis-server)")
    process = ServerProcess(kind, binary, tmp_path_factory.mktemp(f"api-{kind}"))
    process.start()
    yield process
    process.stop()


@dataclass
class Api:
    url: str
    client: Client
    """A synchronous client on the same store, to set up and check."""
    prefix: str
    server: ServerProcess

    def http(self, token: str | None = TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def serve(
    server: ServerProcess,
    prefix: str,
    settings: ApiSettings,
    transport: httpx.AsyncBaseTransport | None = None,
    *,
    keys: SnapshotKeys | None = None,
) -> ApiServer:
    """The app served on loopback; its client signs snapshots with ``keys`` (none by
    default: a cloud refuses unsigned ones, so the lifeboat's tests give theirs)."""
    chosen = SnapshotKeys.none() if keys is None else keys
    client = AsyncClient.connect(server.url, prefix=prefix, keys=chosen)
    app = create_app(client, settings, webhook_transport=transport)
    api = ApiServer(app, "127.0.0.1", 0)
    api.start()
    return api


@pytest.fixture
def prefix() -> str:
    return f"a{uuid.uuid4().hex[:10]}"


@pytest.fixture
def api(server: ServerProcess, prefix: str) -> Iterator[Api]:
    settings = ApiSettings(
        tokens=frozenset({TOKEN}),
        webhook_policy=WebhookPolicy(first_delay=0.2, factor=2, max_attempts=3, poll_seconds=0.1),
    )
    running = serve(server, prefix, settings)
    with Client.connect(server.url, prefix=prefix, keys=SnapshotKeys.none()) as client:
        for flow in FLOWS:
            client.register(flow, activities=activities)
        with Worker(client, activities, concurrency=2, name=f"api-{prefix}"):
            yield Api(running.url, client, prefix, server)
        running.stop()
    cleaner = redis.Redis.from_url(server.url)
    for key in cleaner.scan_iter(match=f"{prefix}:*", count=1000):
        cleaner.delete(key)
    cleaner.close()


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)
