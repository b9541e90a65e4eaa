"""Fixtures: every runner test runs against the embedded Valkey and Debian's redis-server 7."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from rustyflower.adapters.redis.conductor import Conductor
from rustyflower.adapters.redis.keys import Keyspace
from rustyflower.adapters.redis.store import RedisStore
from tests.redis.servers import ServerProcess, redis_binary, valkey_binary
from tests.tooling import missing_tool

pytestmark = pytest.mark.emulator

SERVER_KINDS = ["valkey", "redis"]


@pytest.fixture(scope="session", params=SERVER_KINDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    kind = request.param
    binary = valkey_binary() if kind == "valkey" else redis_binary()
    if binary is None:
        missing_tool("redis-server is not installed (.ci/run installs Debian's redis-server)")
    process = ServerProcess(kind, binary, tmp_path_factory.mktemp(f"{kind}-data"))
    process.start()
    yield process
    process.stop()


@dataclass
class Runtime:
    server: ServerProcess
    client: redis.Redis
    keys: Keyspace
    store: RedisStore
    conductor: Conductor

    def fresh_store(self) -> RedisStore:
        """Another store object on the same data (a second process would see this)."""
        return RedisStore(redis.Redis.from_url(self.server.url), self.keys)


@pytest.fixture
def runtime(server: ServerProcess) -> Iterator[Runtime]:
    """A store under a key prefix of its own, so tests share a server without interfering."""
    client = redis.Redis.from_url(server.url)
    keys = Keyspace(prefix=f"t{uuid.uuid4().hex[:10]}")
    store = RedisStore(client, keys)
    store.ensure_groups()
    yield Runtime(server, client, keys, store, Conductor(store))
    for key in client.scan_iter(match=f"{keys.prefix}:*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path
