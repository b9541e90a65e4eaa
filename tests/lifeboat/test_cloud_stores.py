"""The replica and lease stores of each cloud, for real: S3 and DynamoDB on moto's server,
Blob on Azurite, each reached through a cable the test can unplug.

The ordering rule holds across writers that share nothing but the cloud (a replicator
that restarted, a watchdog claiming at a higher epoch); of two conditional lease writes
from the same version exactly one wins; an unreachable cloud is one clear error.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from rustyflower.core.lifeboat.lease import LeaseConflictError, SiteLease
from rustyflower.core.lifeboat.replica import CloudUnreachableError, ReplicaHeader
from tests.lifeboat.clouds import CloudSide

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
