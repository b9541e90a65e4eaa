"""Listing instances newest first by start time, through the store and `rustyflower list`.

Issue 10, item 12: ``list --limit N`` took a prefix of the sorted ids (4 x N of them)
and sorted that by update time, so with more than 4 x N instances the newest were
missing. The store now keeps a start-time index per shard.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from rustyflower.adapters.cli.main import app
from rustyflower.adapters.redis.conductor import Conductor
from rustyflower.adapters.redis.keys import Keyspace
from rustyflower.adapters.redis.listing import CursorError, page_instances
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


# --- pages with a cursor (Client.list_instances, the HTTP API, the dashboard) ----------------


def pages(runtime: Runtime, limit: int, **filters: object) -> list[list[str]]:
    """Every page of a listing, followed cursor by cursor."""
    found: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = page_instances(
            runtime.store.indexes, runtime.store.infos, limit=limit, cursor=cursor, **filters
        )  # type: ignore[arg-type]
        found.append([info.instance_id for info in page.items])
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


def test_pages_follow_the_start_time_index_and_read_only_their_rows(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = started_in_order(runtime, 23)
    read: list[int] = []
    infos = runtime.store.infos
    monkeypatch.setattr(runtime.store, "infos", lambda rows: read.append(len(rows)) or infos(rows))
    assert pages(runtime, 5) == [ids[::-1][n : n + 5] for n in range(0, 23, 5)]
    # the last page holds 3 rows; no page read more summaries than it shows
    assert read == [5, 5, 5, 5, 3]


def test_pages_hold_while_instances_arrive_and_change(runtime: Runtime) -> None:
    clock = ticking_clock()
    ids = started_in_order(runtime, 10, clock=clock)
    first = page_instances(runtime.store.indexes, runtime.store.infos, limit=4)
    assert [info.instance_id for info in first.items] == ids[::-1][:4]
    Conductor(runtime.store, clock=clock).start("waits", {}, instance_id="waits-new")
    runtime.conductor.signal(ids[5], "go")  # listed next, now succeeded: still listed once
    rest = page_instances(
        runtime.store.indexes, runtime.store.infos, limit=100, cursor=first.next_cursor
    )
    assert [info.instance_id for info in rest.items] == ids[::-1][4:]
    assert rest.next_cursor is None


def test_instances_started_in_the_same_millisecond_are_paged_by_id(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rustyflower.adapters.redis.indexes.PAGE", 2)  # walk in small steps
    ids = started_in_order(runtime, 7, clock=lambda: BASE)  # one start time for all
    for limit, filters in ((3, {}), (2, {"status": "running"})):
        listed_ids = [i for page in pages(runtime, limit, **filters) for i in page]
        assert listed_ids == sorted(ids, reverse=True)


def test_a_cursor_of_the_earlier_form_and_a_forged_one(runtime: Runtime) -> None:
    ids = started_in_order(runtime, 6)
    third = runtime.store.info(ids[3])
    earlier = base64.urlsafe_b64encode(
        json.dumps([third.created_at, third.instance_id]).encode()
    ).decode()
    page = page_instances(runtime.store.indexes, runtime.store.infos, limit=10, cursor=earlier)
    assert [info.instance_id for info in page.items] == ids[:3][::-1]
    for forged in ("not a cursor", base64.urlsafe_b64encode(b'[0, "x"]').decode()):
        with pytest.raises(CursorError):
            page_instances(runtime.store.indexes, runtime.store.infos, cursor=forged)
