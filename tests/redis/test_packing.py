"""The command packer sends exactly the bytes redis-py's default packer sends."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from redis.connection import Connection
from redis.exceptions import DataError

from rustyflower.adapters.redis.conductor import Conductor
from rustyflower.adapters.redis.connection import connect
from rustyflower.adapters.redis.keys import Keyspace
from rustyflower.adapters.redis.packing import FastPacker, packer_options
from rustyflower.adapters.redis.store import Placement, RedisStore
from rustyflower.core.builder import Flow
from rustyflower.core.engine import ActivityCompleted, advance
from tests.redis.servers import ServerProcess

pytestmark = pytest.mark.skipif(
    "command_packer" not in packer_options({}), reason="needs hiredis (a dependency)"
)

COMMANDS: list[tuple[Any, ...]] = [
    ("EVALSHA", "a" * 40, 2, "rf:{0}:i:x", "rf:{0}:h:x", "", "1", b"\x00\xffsnap", -7, 0),
    ("SET", "clé ☃ 𝄞", "välue"),
    ("CONFIG GET", "maxmemory"),
    (b"XADD", b"stream", "*", "m", '{"k":"activity"}'),
    ("HSET", "h", "n", 2**70, "m", -(2**63)),
    ("SET", "", ""),
]


def default_pack(*args: Any) -> bytes:
    return b"".join(Connection().pack_command(*args))


@pytest.mark.parametrize("command", COMMANDS)
def test_plain_arguments_pack_to_the_same_bytes(command: tuple[Any, ...]) -> None:
    assert b"".join(FastPacker().pack(*command)) == default_pack(*command)


@pytest.mark.parametrize(
    "command",
    [("HINCRBYFLOAT", "h", "f", 0.1), ("SET", "k", memoryview(b"value")), ("SET", "k", 1e100)],
)
def test_other_arguments_are_packed_by_redis_py_itself(command: tuple[Any, ...]) -> None:
    assert b"".join(FastPacker().pack(*command)) == default_pack(*command)


def test_what_redis_py_refuses_is_still_refused() -> None:
    for bad in (True, None, object()):
        with pytest.raises(DataError):
            default_pack("SET", "k", bad)
        with pytest.raises(DataError):
            FastPacker().pack("SET", "k", bad)
    with pytest.raises(UnicodeEncodeError):
        FastPacker().pack("SET", "k", "\ud800")


def test_another_encoding_or_a_packer_of_the_callers_own_is_left_alone() -> None:
    assert "command_packer" not in packer_options({"encoding": "latin-1"})
    assert "command_packer" not in packer_options({"encoding_errors": "replace"})
    mine = object()
    assert packer_options({"command_packer": mine})["command_packer"] is mine


def test_connected_clients_commit_through_it(server: ServerProcess) -> None:
    client = connect(server.url)
    connection = client.connection_pool.get_connection()
    try:
        assert isinstance(connection._command_packer, FastPacker)
    finally:
        client.connection_pool.release(connection)
    keys = Keyspace(prefix=f"t{uuid.uuid4().hex[:10]}")
    store = RedisStore(client, keys)
    store.ensure_groups()
    store.register(Flow("packing", version="1").task("A", "a").build())
    started = Conductor(store).start("packing", {"n": 1.5, "text": "ü ☃"}, instance_id="ï-1")
    call = next(iter(started.state.pending.values())).command
    done = advance(started, ActivityCompleted(call.call_id, {"out": "é"}), datetime.now(UTC))
    assert store.commit(started, done, Placement()) == "ok"
    # read back through a client with redis-py's own packer: the same bytes were stored
    other = RedisStore(redis.Redis.from_url(server.url), keys)
    assert other.load("ï-1", fresh=True) == done.snapshot
    assert [h["kind"] for h in other.history("ï-1")][-1] == done.snapshot.state.history[-1].kind
    for key in client.scan_iter(match=f"{keys.prefix}:*", count=1000):
        client.delete(key)
