"""Listing instances newest first by start time, through the store and `rustyflower list`.

Issue 10, item 12: ``list --limit N`` took a prefix of the sorted ids (4 x N of them)
and sorted that by update time, so with more than 4 x N instances the newest were
missing. The store now keeps a start-time index per shard.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from rustyflower.adapters.cli.main import app
from rustyflower.adapters.redis.conductor import Conductor
from rustyflower.adapters.redis.keys import Keyspace
from rustyflower.adapters.redis.store import RedisStore
from rustyflower.core.builder import Flow
from tests.redis.conftest import Runtime

pytestmark = pytest.mark.emulator

BASE = datetime(2030, 1, 1, tzinfo=UTC)


def ticking_clock() -> Callable[[], datetime]:
    """Each call is one second after the previous one (start times are distinct)."""
    moments = (BASE + timedelta(seconds=n) for n in range(1_000_000))
    return lambda: next(moments)


def started_in_order(
    runtime: Runtime,
    count: int,
    flow: str = "waits",
    clock: Callable[[], datetime] | None = None,
) -> list[str]:
    """``count`` instances whose ids sort in the order they were started (like real ids)."""
    runtime.store.register(Flow(flow).wait_for_event("W", "go").build())
    conductor = Conductor(runtime.store, clock=clock or ticking_clock())
    return [
        conductor.start(flow, {}, instance_id=f"{flow}-{n:03d}").instance_id for n in range(count)
    ]


def listed(runtime: Runtime, **filters: object) -> list[str]:
    return [info.instance_id for info in runtime.store.list_instances(**filters)]  # type: ignore[arg-type]


def test_the_newest_come_first_beyond_four_times_the_limit(runtime: Runtime) -> None:
    ids = started_in_order(runtime, 25)
    assert listed(runtime, limit=3) == ids[::-1][:3]
    assert listed(runtime, limit=25) == ids[::-1]
    assert listed(runtime, limit=100) == ids[::-1]


def test_order_is_by_start_time_not_by_the_last_update(runtime: Runtime) -> None:
    clock = ticking_clock()
    ids = started_in_order(runtime, 6, clock=clock)
    Conductor(runtime.store, clock=clock).signal(ids[0], "go")  # the oldest is updated last
    assert listed(runtime, limit=2) == [ids[5], ids[4]]
    assert listed(runtime, status="succeeded") == [ids[0]]


def test_filters_keep_the_order(runtime: Runtime) -> None:
    clock = ticking_clock()
    waits = started_in_order(runtime, 30, flow="waits", clock=clock)
    others = started_in_order(runtime, 5, flow="others", clock=clock)
    for instance_id in waits[:12]:
        runtime.conductor.signal(instance_id, "go")
    for instance_id in (waits[20], waits[13]):
        runtime.conductor.hold(instance_id)
    running = waits[12:]
    assert listed(runtime, status="running", flow="waits", limit=4) == running[::-1][:4]
    assert listed(runtime, status="succeeded", limit=3) == waits[:12][::-1][:3]
    assert listed(runtime, flow="others", limit=10) == others[::-1]
    assert listed(runtime, status="running", held=True, limit=5) == [waits[20], waits[13]]
    assert listed(runtime, held=False, limit=2) == others[::-1][:2]


def test_the_walk_of_the_index_is_used_for_large_sets(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rustyflower.adapters.redis.indexes.SMALL_FILTER", 2)
    monkeypatch.setattr("rustyflower.adapters.redis.indexes.PAGE", 3)
    ids = started_in_order(runtime, 20)
    for instance_id in ids[::2]:
        runtime.conductor.signal(instance_id, "go")
    assert listed(runtime, status="running", limit=3) == ids[1::2][::-1][:3]
    assert listed(runtime, status="succeeded", flow="waits", limit=2) == ids[::2][::-1][:2]


def test_instances_from_before_the_index_are_listed(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rustyflower.adapters.redis.indexes.PAGE", 3)  # several pages
    ids = started_in_order(runtime, 8)
    runtime.conductor.signal(ids[1], "go")
    shard = 0
    runtime.client.delete(
        runtime.keys.started_index(shard),
        runtime.keys.finished_index(shard),
        runtime.keys.indexes_built(shard),
    )
    store = RedisStore(runtime.client, runtime.keys)  # a new process: builds the index once
    assert [info.instance_id for info in store.list_instances(limit=3)] == ids[::-1][:3]
    assert runtime.client.zcard(runtime.keys.started_index(shard)) == 8
    assert runtime.client.zrange(runtime.keys.finished_index(shard), 0, -1) == [ids[1].encode()]


def test_listing_spans_shards(runtime: Runtime) -> None:
    keys = Keyspace(prefix=f"{runtime.keys.prefix}x", shards=4)
    store = RedisStore(runtime.client, keys)
    store.register(Flow("waits").wait_for_event("W", "go").build())
    conductor = Conductor(store, clock=ticking_clock())
    ids = [conductor.start("waits", {}, instance_id=f"w-{n:03d}").instance_id for n in range(40)]
    assert len({keys.shard_of(i) for i in ids}) == 4
    assert [info.instance_id for info in store.list_instances(limit=7)] == ids[::-1][:7]
    for key in runtime.client.scan_iter(match=f"{keys.prefix}:*"):
        runtime.client.delete(key)


def test_cli_list_limit_is_newest_first(runtime: Runtime) -> None:
    ids = started_in_order(runtime, 25)
    env = {"RUSTYFLOWER_REDIS_URL": runtime.server.url, "RUSTYFLOWER_PREFIX": runtime.keys.prefix}
    result = CliRunner().invoke(app, ["list", "--limit", "3", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert [row["instance_id"] for row in json.loads(result.stdout)] == ids[::-1][:3]
    runtime.conductor.hold(ids[2])
    held = CliRunner().invoke(app, ["list", "--status", "held", "--limit", "1", "--json"], env=env)
    assert [row["instance_id"] for row in json.loads(held.stdout)] == [ids[2]]
