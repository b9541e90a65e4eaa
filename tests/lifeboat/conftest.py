"""Fixtures of the lifeboat tests: a cloud (moto's server or Azurite, behind a cable) and a
site (a real Valkey with the runner's store, signed with the keys the clouds hold)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from rustyflower.adapters.redis.conductor import Conductor
from rustyflower.adapters.redis.keys import Keyspace
from rustyflower.adapters.redis.store import RedisStore
from tests.azure.azurite import Azurite, azurite_fixture
from tests.lifeboat.clouds import CloudSide, MotoServer, aws_side, azure_side
from tests.redis.conftest import Runtime
from tests.redis.servers import ServerProcess, valkey_binary

__all__ = ["azurite_fixture", "cloud", "runtime", "valkey"]


@pytest.fixture(scope="session")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess("valkey", valkey_binary(), tmp_path_factory.mktemp("lifeboat-valkey"))
    process.start()
    yield process
    process.stop()


@pytest.fixture
def runtime(valkey: ServerProcess) -> Iterator[Runtime]:
    """The site's store under a key prefix of its own (signed by the test's keys later)."""
    client = redis.Redis.from_url(valkey.url)
    keys = Keyspace(prefix=f"t{uuid.uuid4().hex[:10]}")
    store = RedisStore(client, keys)
    store.ensure_groups()
    yield Runtime(valkey, client, keys, store, Conductor(store))
    for key in client.scan_iter(match=f"{keys.prefix}:*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    yield server
    server.stop()


@pytest.fixture(params=["aws", "azure"])
def cloud(request: pytest.FixtureRequest) -> Iterator[CloudSide]:
    if request.param == "aws":
        with aws_side(request.getfixturevalue("moto_server")) as side:
            yield side
    else:
        azurite: Azurite = request.getfixturevalue("azurite")
        with azure_side(azurite, f"lifeboat-{uuid.uuid4().hex[:8]}") as side:
            yield side
