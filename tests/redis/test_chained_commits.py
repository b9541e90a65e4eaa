"""Several events of one instance in a batch, committed as one chain (issue 13: cost as work
grows). A wide Map's items finish in bursts; each used to rewrite the whole snapshot, so
a 10,000-item Map cost O(width) per item. A chain applies the batch's events of one
instance one after another and writes the result once: it must store exactly what
committing them one by one stores, and lose nothing when it loses a race.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from rustyflower.adapters.redis.conductor import Applied, Conductor, PendingEvent, Rejected
from rustyflower.adapters.redis.keys import PRIORITIES, Keyspace
from rustyflower.adapters.redis.step_log import read_steps
from rustyflower.adapters.redis.store import RedisStore
from rustyflower.core.builder import Flow, Steps
from rustyflower.core.engine import ActivityCompleted, ActivityFailed, RunActivity
from tests.redis import activities
from tests.redis.activities import running_worker, wait_finished
from tests.redis.conftest import Runtime

pytestmark = pytest.mark.emulator

AT = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


@dataclass
class Site:
    client: redis.Redis
    keys: Keyspace
    store: RedisStore
    conductor: Conductor


@pytest.fixture
def two_sites(runtime: Runtime) -> Iterator[tuple[Site, Site]]:
    """Two stores under prefixes of their own on one server, with one fixed clock, so what
    they store can be compared byte for byte."""
    sites = []
    for _ in range(2):
        client = redis.Redis.from_url(runtime.server.url)
        keys = Keyspace(prefix=f"t{uuid.uuid4().hex[:10]}")
        store = RedisStore(client, keys)
        store.ensure_groups()
        sites.append(Site(client, keys, store, Conductor(store, clock=lambda: AT)))
    yield sites[0], sites[1]
    for site in sites:
        for key in site.client.scan_iter(match=f"{site.keys.prefix}:*", count=1000):
            site.client.delete(key)
        site.client.close()


def wide_map(max_concurrency: int = 0, body: Any = None) -> Any:
    return (
        Flow("wide", version="1")
        .map("Each", body or Steps().task("T", "echo"), max_concurrency=max_concurrency)
        .task("After", "echo")
        .build()
    )


def completions(site: Site, instance_id: str) -> list[PendingEvent]:
    """A completion (result 1) for every activity the instance waits for."""
    state = site.store.load(instance_id, fresh=True).state
    found = []
    for entry in state.pending.values():
        command = entry.command
        assert isinstance(command, RunActivity)
        found.append(PendingEvent(instance_id, ActivityCompleted(command.call_id, 1)))
    return sorted(found, key=lambda item: item.event.call_id)  # type: ignore[attr-defined]


def started_map(runtime: Runtime, width: int) -> list[PendingEvent]:
    """A wide Map of ``width`` items started as "w"; a completion for each item."""
    runtime.store.register(wide_map())
    runtime.conductor.start("wide", list(range(width)), instance_id="w")
    return completions(Site(runtime.client, runtime.keys, runtime.store, runtime.conductor), "w")


def stored(site: Site, instance_id: str) -> dict[str, Any]:
    """Everything a commit writes for the instance, without ids that name the site."""

    def fields(key: str) -> list[dict[bytes, bytes]]:
        return [entry for _, entry in site.client.xrange(key)]

    return {
        "snapshot": site.store.raw_snapshot(instance_id),
        "history": site.store.history(instance_id),
        "steps": fields(site.keys.steps(instance_id)),
        "work": [fields(site.keys.stream(0, priority)) for priority in PRIORITIES],
        "stats": site.client.hgetall(site.keys.stats(0)),
        "flow_events": fields(site.keys.flow_events(0)),
        "step_events": fields(site.keys.step_events(0)),
        "timers": site.client.zrange(site.keys.timers(0), 0, -1, withscores=True),
        "visits": read_steps(site.client, site.keys, instance_id),
    }


@pytest.mark.parametrize("max_concurrency", [0, 3])
def test_a_chain_stores_what_one_commit_per_event_stores(
    two_sites: tuple[Site, Site], max_concurrency: int
) -> None:
    one_by_one, chained = two_sites
    for site in two_sites:
        site.store.register(wide_map(max_concurrency))
        site.conductor.start("wide", list(range(12)), instance_id="w")
    rounds = 0
    while True:
        alone, batch = completions(one_by_one, "w"), completions(chained, "w")
        assert [item.event for item in alone] == [item.event for item in batch]
        if not alone:
            break
        for item in alone:
            assert isinstance(one_by_one.conductor.apply("w", item.event), Applied)
        outcomes = chained.conductor.apply_many(batch)
        assert all(isinstance(outcome, Applied) for outcome in outcomes)
        rounds += 1
    assert rounds >= 2  # the items, in one or several waves, then "After"
    assert one_by_one.store.load("w", fresh=True).status == "succeeded"
    expected = stored(one_by_one, "w")
    assert expected["stats"] and expected["step_events"] and len(expected["visits"]) > 12
    assert stored(chained, "w") == expected


def test_a_long_chain_keeps_every_history_entry_the_snapshot_window_dropped(
    two_sites: tuple[Site, Site],
) -> None:
    """The snapshot keeps a window of 100 history entries; a chain of 64 completions
    (CHAIN_LIMIT; the other 6 go alone) adds 128 (each item's first task succeeds, its
    second is scheduled): the stored history still has every entry."""
    one_by_one, chained = two_sites
    for site in two_sites:
        site.store.register(wide_map(body=Steps().task("T", "echo").task("U", "echo")))
        site.conductor.start("wide", list(range(70)), instance_id="w")
    alone, batch = completions(one_by_one, "w"), completions(chained, "w")
    for item in alone:
        one_by_one.conductor.apply("w", item.event)
    assert all(isinstance(done, Applied) for done in chained.conductor.apply_many(batch))
    expected = stored(one_by_one, "w")
    assert len(expected["history"]) > 200
    assert stored(chained, "w") == expected


def test_a_batch_of_one_instances_events_is_one_commit(runtime: Runtime) -> None:
    batch = started_map(runtime, 30)[:16]
    runtime.client.config_resetstat()
    outcomes = runtime.conductor.apply_many(batch)
    assert all(isinstance(outcome, Applied) for outcome in outcomes)
    stats = runtime.client.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 1  # before: 16, each a 30-item snapshot
    assert len(runtime.store.load("w", fresh=True).state.pending) == 30 - 16


def test_an_event_the_chain_rejects_is_judged_alone_and_the_rest_still_apply(
    runtime: Runtime,
) -> None:
    first, second, third, fourth = started_map(runtime, 4)
    repeated = PendingEvent("w", first.event)  # a redelivered result: applied once only
    outcomes = runtime.conductor.apply_many([first, repeated, second, third, fourth])
    assert [type(outcome) for outcome in outcomes] == [
        Applied,
        Rejected,
        Applied,
        Applied,
        Applied,
    ]
    (waiting,) = runtime.store.load("w", fresh=True).state.pending.values()
    assert waiting.command.input == [1, 1, 1, 1]  # "After" has each item's result once
    kinds = [entry["kind"] for entry in runtime.store.history("w")]
    assert kinds.count("TaskSucceeded") == 4


def test_a_chain_that_loses_a_race_applies_every_event_on_the_stored_value(
    runtime: Runtime,
) -> None:
    first, second, third = started_map(runtime, 3)
    other_store = runtime.fresh_store()
    other = Conductor(other_store)
    other_store.load("w")  # cached before the race
    assert isinstance(runtime.conductor.apply("w", first.event), Applied)  # wins it
    outcomes = other.apply_many([second, third])
    assert all(isinstance(outcome, Applied) for outcome in outcomes)
    state = runtime.store.load("w", fresh=True).state
    (waiting,) = state.pending.values()
    assert waiting.command.input == [1, 1, 1]  # "After" has every item's result


def test_a_failure_in_a_chain_cancels_the_items_dispatched_earlier_in_it(
    two_sites: tuple[Site, Site],
) -> None:
    """A failed item fails the Map (ASL: a Map fails when an iteration fails) and
    cancels the rest: here some of those were dispatched by the chain's own earlier
    links; the stored result equals that of one commit per event."""
    one_by_one, chained = two_sites
    for site in two_sites:
        site.store.register(wide_map(max_concurrency=2))
        site.conductor.start("wide", list(range(6)), instance_id="w")
    alone, batch = completions(one_by_one, "w"), completions(chained, "w")
    for item in alone:
        one_by_one.conductor.apply("w", item.event)
    chained.conductor.apply_many(batch)
    alone, batch = completions(one_by_one, "w"), completions(chained, "w")
    failing = ActivityFailed(alone[0].event.call_id, "Boom", "the item broke")  # type: ignore[attr-defined]
    for site, items in ((one_by_one, alone), (chained, batch)):
        events = [PendingEvent("w", failing), *items[1:]]
        if site is one_by_one:
            for item in events:
                site.conductor.apply("w", item.event)
        else:
            site.conductor.apply_many(events)
    assert one_by_one.store.load("w", fresh=True).status == "failed"
    assert stored(chained, "w") == stored(one_by_one, "w")


def test_a_worker_finishes_a_wide_map_with_fewer_commits_than_items(runtime: Runtime) -> None:
    """End to end through a real worker: batches of messages, their acknowledgements in
    the chained commits, nothing left pending."""
    activities.configure(runtime.server.url, runtime.keys.prefix)
    runtime.store.register(wide_map())
    runtime.conductor.start("wide", list(range(200)), instance_id="w")
    runtime.client.config_resetstat()
    with running_worker(runtime.server.url, runtime.keys, concurrency=1):
        wait_finished(runtime.store, "w", 30)
    final = runtime.store.load("w", fresh=True)
    assert final.status == "succeeded"
    assert final.state.output == list(range(200))
    commits = runtime.client.info("commandstats")["cmdstat_evalsha"]["calls"]
    assert commits < 100, commits  # 201 activities; batches of up to 16 share a commit
    for priority in PRIORITIES:
        summary = runtime.client.xpending(runtime.keys.stream(0, priority), "workers")
        assert summary["pending"] == 0
