"""Fixtures: the client against a real embedded Valkey and Debian's redis-server 7."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from rustyflower import SnapshotKeys
from rustyflower.client import Client
from tests.redis.servers import ServerProcess, redis_binary, valkey_binary
from tests.tooling import missing_tool

pytestmark = pytest.mark.emulator


@pytest.fixture(scope="session", params=["valkey", "redis"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    kind = request.param
    binary = valkey_binary() if kind == "valkey" else redis_binary()
    if binary is None:
        missing_tool("redis-server is not installed (.ci/run installs Debian's redis-server)")
    process = ServerProcess(kind, binary, tmp_path_factory.mktemp(f"client-{kind}"))
    process.start()
    yield process
    process.stop()


@pytest.fixture
def prefix() -> str:
    return f"c{uuid.uuid4().hex[:10]}"


@pytest.fixture
def client(server: ServerProcess, prefix: str) -> Iterator[Client]:
    """A client under a key prefix of its own, without snapshot keys."""
    with Client.connect(server.url, prefix=prefix, keys=SnapshotKeys.none()) as connected:
        yield connected
    cleaner = redis.Redis.from_url(server.url)
    for key in cleaner.scan_iter(match=f"{prefix}:*", count=1000):
        cleaner.delete(key)
    cleaner.close()
