"""The Redis runner's replication feed (adapters.redis.lifeboat_feed) and ``adopt``.

Against the real servers of the runner tests (embedded Valkey and redis-server 7): the
commit and fence scripts note changed instances only while replication is switched on,
one entry per instance with the time of its oldest change; a target's backlog is taken
off only where the instance is still what was shipped.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from rustyflower.adapters.redis.conductor import FencedError
from rustyflower.adapters.redis.lifeboat_feed import RedisReplicationFeed
from rustyflower.core.engine import EventReceived
from rustyflower.core.lifeboat.feed import Shipped
from rustyflower.core.model import parse_definition
from tests.redis.conftest import Runtime

pytestmark = pytest.mark.emulator

FLOW = parse_definition(
    {
        "name": "steps",
        "start_at": "A",
        "states": {
            "A": {"type": "wait_for_event", "event": "go", "next": "B"},
            "B": {"type": "wait_for_event", "event": "go", "next": "C"},
            "C": {"type": "wait_for_event", "event": "go", "end": True},
        },
    }
)


def started(runtime: Runtime, *ids: str) -> None:
    runtime.store.register(FLOW)
    for instance_id in ids:
        runtime.conductor.start(FLOW.name, {}, instance_id=instance_id)


def go(runtime: Runtime, instance_id: str) -> None:
    runtime.conductor.apply(instance_id, EventReceived("go", None))


def test_nothing_is_noted_while_replication_is_off(runtime: Runtime) -> None:
    started(runtime, "a")
    go(runtime, "a")
    runtime.store.fence("a", 1, "aws")
    assert not runtime.client.exists(runtime.keys.lifeboat_changed(0))


def test_a_first_target_gets_every_running_instance_then_only_changes(runtime: Runtime) -> None:
    started(runtime, "a", "b", "done")
    for _ in range(3):
        go(runtime, "done")  # finished before replication began: nothing to ship
    feed = RedisReplicationFeed(runtime.store)
    assert feed.enable("aws") is True
    assert feed.enable("aws") is False
    assert {p.instance_id for p in feed.pending("aws", 10)} == {"a", "b"}

    started(runtime, "c")
    for _ in range(2):
        go(runtime, "c")  # two commits: one entry, with the time of the first
    assert feed.collect(["aws", "azure"]) == 1
    pending = {p.instance_id: p for p in feed.pending("aws", 10)}
    assert set(pending) == {"a", "b", "c"}
    assert [p.instance_id for p in feed.pending("azure", 10)] == ["c"]
    fetched = feed.fetch("aws", ["c", "missing"])
    assert fetched.instances["missing"] is None and fetched.present == frozenset()
    found = fetched.instances["c"]
    assert found is not None
    assert (found.header.seq, found.header.epoch, found.header.owner) == (
        runtime.store.info("c").seq,
        0,
        "local",
    )
    assert found.header.flow == "steps" and found.data == runtime.store.raw_snapshot("c")
    assert feed.backlog("aws").instances == 3
    assert feed.backlog("aws").oldest_ms == min(p.since_ms for p in pending.values())


def test_only_what_was_shipped_leaves_the_backlog(runtime: Runtime) -> None:
    started(runtime, "a", "b")
    feed = RedisReplicationFeed(runtime.store)
    feed.enable("aws")
    entries = feed.pending("aws", 10)
    fetched = feed.fetch("aws", [p.instance_id for p in entries])
    read_ms = fetched.read_ms
    assert all(p.since_ms <= read_ms for p in entries)
    go(runtime, "b")  # changes after it was read: it must go again
    done = [Shipped(p, fetched.instances[p.instance_id].header, read_ms) for p in entries]  # type: ignore[union-attr]
    removed = feed.shipped("aws", done)
    assert [p.instance_id for p in removed] == ["a"]
    assert removed[0].since_ms == next(p.since_ms for p in entries if p.instance_id == "a")
    (left,) = feed.pending("aws", 10)
    assert left.instance_id == "b" and left.since_ms == read_ms  # counted from the read


def test_a_fence_is_a_change_too(runtime: Runtime) -> None:
    started(runtime, "a")
    feed = RedisReplicationFeed(runtime.store)
    feed.enable("aws")
    fetched = feed.fetch("aws", ["a"])
    header = fetched.instances["a"].header  # type: ignore[union-attr]
    feed.shipped("aws", [Shipped(p, header, fetched.read_ms) for p in feed.pending("aws", 5)])
    assert feed.pending("aws", 5) == []
    assert runtime.store.fence("a", 1, "azure")
    feed.collect(["aws"])
    (entry,) = feed.pending("aws", 5)
    found = feed.fetch("aws", ["a"]).instances["a"]
    assert found is not None and (found.header.epoch, found.header.owner) == (1, "azure")
    assert entry.instance_id == "a"


def test_adopting_the_clouds_state_dispatches_nothing_and_is_idempotent(runtime: Runtime) -> None:
    started(runtime, "a")
    replicated = runtime.store.load("a", fresh=True)
    go(runtime, "a")  # the site went on after the last replication
    go(runtime, "a")
    local_seq = runtime.store.info("a").seq
    note = {"seq": replicated.seq, "at": "2026-01-01T00:00:00Z", "kind": "TakenOver", "detail": {}}
    assert runtime.store.adopt(replicated, 1, "aws", note) is True
    info = runtime.store.info("a")
    assert (info.owner, info.epoch, info.seq) == ("aws", 1, replicated.seq)
    assert runtime.store.load("a", fresh=True).positions == ["A"]
    assert runtime.store.history("a")[-1]["kind"] == "TakenOver"
    assert local_seq > replicated.seq
    assert runtime.store.adopt(replicated, 1, "aws", note) is False  # already there
    with pytest.raises(FencedError, match="taken over by a newer epoch"):
        go(runtime, "a")  # the site's runner may not advance it any more
    assert runtime.store.info("a").seq == replicated.seq
    with pytest.raises(ValueError, match="must be below"):
        runtime.store.adopt(replace(replicated, epoch=2), 2, "aws", note)


def test_one_replicator_leads_and_reports(runtime: Runtime) -> None:
    feed = RedisReplicationFeed(runtime.store)
    assert feed.lead("one", 5) and feed.lead("one", 5)
    assert not feed.lead("two", 5)
    assert feed.leader() == "one"
    feed.resign("one")
    assert feed.lead("two", 5)
    assert feed.last_report() is None
    feed.report({"site": "s", "targets": {}}, 5)
    assert feed.last_report() == {"site": "s", "targets": {}}


def test_the_present_set_says_which_replicas_may_exist(runtime: Runtime) -> None:
    started(runtime, "a", "b")
    feed = RedisReplicationFeed(runtime.store)
    feed.enable("aws")
    feed.will_write("aws", ["a"])
    assert feed.fetch("aws", ["a", "b"]).present == frozenset({"a"})
    entries = feed.pending("aws", 5)
    fetched = feed.fetch("aws", ["a", "b"])
    done = [
        Shipped(p, fetched.instances[p.instance_id].header, fetched.read_ms, absent=True)  # type: ignore[union-attr]
        for p in entries
    ]
    feed.shipped("aws", done)
    assert feed.fetch("aws", ["a", "b"]).present == frozenset()


def test_only_changes_old_enough_are_ready(runtime: Runtime) -> None:
    started(runtime, "a")
    feed = RedisReplicationFeed(runtime.store)
    feed.enable("aws")
    (entry,) = feed.pending("aws", 5)
    assert feed.pending("aws", 5, ready_ms=entry.since_ms - 1) == []
    assert feed.pending("aws", 5, ready_ms=entry.since_ms) == [entry]
