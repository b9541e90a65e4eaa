"""The replica and lease stores of each cloud, for real: S3 and DynamoDB on moto's server,
Blob on Azurite, each reached through a cable the test can unplug.

The ordering rule holds across writers that share nothing but the cloud (a replicator
that restarted, a watchdog claiming at a higher epoch); of two conditional lease writes
from the same version exactly one wins; an unreachable cloud is one clear error.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from rustyflower.adapters.continuity.replication import CompactionResult, Replicator
from rustyflower.core.lifeboat.lease import LeaseConflictError, SiteLease
from rustyflower.core.lifeboat.replica import CloudUnreachableError, ReplicaHeader, ReplicaStore
from rustyflower.core.lifeboat.segments import SegmentEntry, segments_prefix
from tests.lifeboat.clouds import CloudSide
from tests.lifeboat.site import KEYS, Site
from tests.redis.conftest import Runtime

pytestmark = pytest.mark.emulator

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def header(seq: int, epoch: int = 0, **rest: str) -> ReplicaHeader:
    return ReplicaHeader("order/7 é", epoch, seq, rest.pop("status", "running"), **rest)


def test_replicas_follow_the_ordering_rule_across_writers(cloud: CloudSide) -> None:
    site = cloud.link("plant-1").replicas
    assert site.put(header(3), b"s3") == "written"
    assert site.put(header(3), b"s3") == "kept"
    assert site.put(header(5), b"s5") == "written"
    restarted = cloud.link("plant-1").replicas  # knows nothing of what was written
    assert restarted.put(header(4), b"s4") == "kept"
    assert restarted.put(header(6), b"s6") == "written"
    assert site.put(header(7), b"s7") == "written"  # its ETag was stale: it looked again
    watchdog = cloud.direct_link("plant-1").replicas
    assert watchdog.put(header(7, epoch=1, owner=cloud.kind), b"claimed") == "written"
    assert site.put(header(8), b"s8") == "fenced"
    assert site.remove(header(9, status="succeeded")) == "fenced"
    (found,) = cloud.replicas("plant-1").values()
    assert (found.instance_id, found.epoch, found.seq, found.owner) == (
        "order/7 é",
        1,
        7,
        cloud.kind,
    )
    replica = site.read("order/7 é")
    assert replica is not None and replica.data == b"claimed"
    assert cloud.replicas("plant-2") == {}


def test_a_finished_instance_leaves_no_replica(cloud: CloudSide) -> None:
    site = cloud.link("plant-1").replicas
    site.put(header(3), b"s3")
    assert site.remove(header(4, status="succeeded")) == "removed"
    assert site.remove(header(4, status="succeeded")) == "absent"
    assert cloud.replicas("plant-1") == {}


def test_reports_are_kept_next_to_the_replicas(cloud: CloudSide) -> None:
    stores = cloud.link("plant-1").replicas
    name = stores.write_report("aws-t2-1", b'{"kind": "x"}')
    assert name == "lifeboat/plant-1/takeovers/aws-t2-1.json"
    assert stores.read_report(name) == b'{"kind": "x"}'


def test_of_two_lease_writes_from_one_version_exactly_one_wins(cloud: CloudSide) -> None:
    leases = cloud.link("plant-1").lease
    assert leases.read("plant-1") is None
    first = leases.create(SiteLease.first("plant-1", NOW, 0, cloud.kind))
    with pytest.raises(LeaseConflictError):
        leases.create(SiteLease.first("plant-1", NOW, 0, cloud.kind))
    read = leases.read("plant-1")
    assert read is not None and read.lease == first.lease
    outcomes: list[str] = []
    start = threading.Barrier(2)

    def write(lease: SiteLease) -> None:
        start.wait()
        try:
            leases.replace(lease, read.version)
            outcomes.append(lease.holder)
        except LeaseConflictError:
            outcomes.append("lost")

    racers = [
        threading.Thread(target=write, args=(read.lease.renewed(NOW, 1, cloud.kind),)),
        threading.Thread(target=write, args=(read.lease.taken_over(cloud.kind, NOW, "t"),)),
    ]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert sorted(outcomes).count("lost") == 1, outcomes
    winner = leases.read("plant-1")
    assert winner is not None and winner.lease.holder == next(o for o in outcomes if o != "lost")


def test_an_unplugged_cloud_is_one_clear_error(cloud: CloudSide) -> None:
    link = cloud.link("plant-1")
    cloud.cable.unplug()
    with pytest.raises(CloudUnreachableError, match="while writing the replica"):
        link.replicas.put(header(1), b"x")
    with pytest.raises(CloudUnreachableError, match="lease"):
        link.lease.read("plant-1")
    cloud.cable.plug()
    assert link.replicas.put(header(1), b"x") == "written"


def entry(instance_id: str, seq: int, data: bytes | None, epoch: int = 0) -> SegmentEntry:
    status = "running" if data is not None else "succeeded"
    return SegmentEntry(ReplicaHeader(instance_id, epoch, seq, status), data)


def test_segments_and_replicas_are_read_as_one_view(cloud: CloudSide) -> None:
    site = cloud.link("plant-1").replicas
    site.put(ReplicaHeader("moved-on", 0, 3, "running"), b"m3")
    site.put(ReplicaHeader("finished", 0, 3, "running"), b"f3")
    site.put_segment([entry("moved-on", 5, b"m5"), entry("new é", 1, b"n1")], 1_000)
    site.put_segment([entry("finished", 6, None), entry("moved-on", 4, b"m4")], 2_000)
    for reader in (site, cloud.direct_link("plant-1").replicas):  # the writer, and a stranger
        seen = {h.instance_id: h.seq for h in reader.headers()}
        assert seen == {"moved-on": 5, "new é": 1}
        moved_on = reader.read("moved-on")
        assert moved_on is not None and moved_on.data == b"m5"
        assert reader.read("finished") is None
        assert reader.segment_names() == sorted(reader.segment_names())
        assert len(reader.segment_names()) == 2


def test_a_segment_never_undoes_a_takeover(cloud: CloudSide) -> None:
    site = cloud.link("plant-1").replicas
    site.put(ReplicaHeader("order", 0, 3, "running"), b"s3")
    watchdog = cloud.direct_link("plant-1").replicas
    watchdog.put(ReplicaHeader("order", 1, 3, "running", owner=cloud.kind), b"claimed")
    site.put_segment([entry("order", 9, b"s9"), entry("order", 10, None)], 1_000)
    (found,) = cloud.replicas("plant-1").values()
    assert (found.epoch, found.seq, found.owner) == (1, 3, cloud.kind)
    replica = watchdog.read("order")
    assert replica is not None and replica.data == b"claimed"


@contextlib.contextmanager
def compacting(runtime: Runtime, replicas: ReplicaStore) -> Iterator[Replicator]:
    """A replicator over the site's real feed (its clock is the store's), compacting
    ``replicas`` at once (segments written a second ago are old enough)."""
    replicator = Replicator(
        Site(runtime).feed, {replicas.cloud: replicas}, KEYS, compact_every=1.0, fold_after=60.0
    )
    try:
        yield replicator
    finally:
        replicator.close()


def test_compaction_folds_what_waits_and_drops_what_is_over(
    cloud: CloudSide, runtime: Runtime
) -> None:
    link = cloud.link("plant-1")
    link.replicas.put(ReplicaHeader("finished", 0, 3, "running"), b"f3")
    cloud.direct_link("plant-1").replicas.put(
        ReplicaHeader("taken", 1, 2, "running", owner=cloud.kind), b"claimed"
    )
    # shipped long ago (shipped_ms 0): unchanged since, so each goes to its own replica
    link.replicas.put_segment(
        [entry("a", 1, b"a1"), entry("finished", 4, None), entry("short", 2, None)], 1_000
    )
    link.replicas.put_segment([entry("a", 2, b"a2"), entry("taken", 8, b"site's")], 2_000)
    before = cloud.replicas("plant-1")
    with compacting(runtime, link.replicas) as replicator:
        result = replicator.compact(cloud.kind)
        # "a" and "taken" written (fenced: the takeover's replica holds), "finished"
        # removed, "short" (finished, never had a replica of its own) needs nothing
        assert (result.segments, result.folded, result.carried, result.left) == (2, 3, 0, 0)
        assert replicator.status[cloud.kind].fenced == 1
        assert replicator.compact(cloud.kind).segments == 0
    stranger = cloud.direct_link("plant-1").replicas
    assert stranger.segment_names() == []
    assert cloud.replicas("plant-1") == before  # the same view, now per instance
    assert {h.instance_id: h.seq for h in stranger.base_headers()} == {"a": 2, "taken": 2}


def test_compaction_carries_what_changes_and_keeps_newer_segments(
    cloud: CloudSide, runtime: Runtime
) -> None:
    link = cloud.link("plant-1")
    with compacting(runtime, link.replicas) as replicator:
        now = replicator.feed.now_ms()
        recent = now - 2_000  # changed 2 s ago: likely to change again, carried
        link.replicas.put_segment(
            [
                SegmentEntry(ReplicaHeader("busy", 0, 5, "running"), b"b5", recent),
                SegmentEntry(ReplicaHeader("outranked", 0, 1, "running"), b"o1", recent),
            ],
            now - 5_000,
        )
        fresh = link.replicas.put_segment([entry("outranked", 2, b"o2")], now)  # not old yet
        before = cloud.replicas("plant-1")
        result = replicator.compact(cloud.kind)
        assert (result.segments, result.folded, result.carried) == (1, 0, 1)
    stranger = cloud.direct_link("plant-1").replicas
    names = stranger.segment_names()
    assert fresh in names and len(names) == 2  # the fresh one and the carried entry's
    assert stranger.base_names() == set()  # nothing written per instance
    assert cloud.replicas("plant-1") == before
    carried = stranger.current_segments()[next(name for name in names if name != fresh)]
    assert [(e.header.instance_id, e.data, e.shipped_ms) for e in carried] == [
        ("busy", b"b5", recent)  # its age is its own, not the new segment's
    ]


def test_an_unreadable_segment_is_named_and_left_alone(cloud: CloudSide, runtime: Runtime) -> None:
    link = cloud.link("plant-1")
    link.replicas.put_segment([entry("a", 1, b"a1")], 1_000)
    stranger = cloud.direct_link("plant-1").replicas
    bad = f"{segments_prefix('plant-1')}000000000002000-bad.json"
    stranger._write_object(bad, b"not a segment")
    assert [h.instance_id for h in stranger.headers()] == ["a"]
    assert bad in stranger.unreadable and "not JSON" in stranger.unreadable[bad]
    with compacting(runtime, stranger) as replicator:
        assert replicator.compact(cloud.kind).left == 1
    assert stranger.segment_names() == [bad]  # never deleted: someone must look at it


def test_a_reader_finds_what_a_compaction_carried_while_it_read(
    cloud: CloudSide, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader lists a segment, a compaction carries its entry into a new segment and
    deletes it, then the reader reads it: gone. Listing again finds the new segment."""
    link = cloud.link("plant-1")
    reader = cloud.direct_link("plant-1").replicas
    with compacting(runtime, link.replicas) as replicator:
        now = replicator.feed.now_ms()
        busy = SegmentEntry(ReplicaHeader("busy", 0, 5, "running"), b"b5", now)
        link.replicas.put_segment([busy], now - 5_000)
        reading = reader._read_object
        compactions: list[CompactionResult] = []

        def compacted_first(name: str) -> bytes | None:
            if not compactions:
                compactions.append(replicator.compact(cloud.kind))
            return reading(name)

        monkeypatch.setattr(reader, "_read_object", compacted_first)
        seen = {h.instance_id: h.seq for h in reader.headers()}
    assert compactions and compactions[0].carried == 1
    assert seen == {"busy": 5}
