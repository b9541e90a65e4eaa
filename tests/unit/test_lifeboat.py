"""The lifeboat's contract (core.lifeboat): the lease's rules, the replica ordering, the
takeover's choice and grouping, the report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rustyflower.core.engine import ParentLink, start
from rustyflower.core.lifeboat.lease import (
    LeaseConflictError,
    LeaseError,
    SiteLease,
    TakeoverMark,
    check_site_id,
)
from rustyflower.core.lifeboat.replica import (
    ReplicaError,
    ReplicaHeader,
    instance_name,
    put_decision,
    remove_decision,
)
from rustyflower.core.lifeboat.takeover import (
    Candidate,
    TakenInstance,
    TakeoverReport,
    choose,
    group,
    takeover_epoch,
    takeover_id,
)
from rustyflower.core.model import parse_definition

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
FLOW = parse_definition(
    {
        "name": "f",
        "start_at": "W",
        "states": {"W": {"type": "wait_for_event", "event": "go", "end": True}},
    }
)


def header(instance_id: str = "i", epoch: int = 0, seq: int = 1, **rest: str) -> ReplicaHeader:
    return ReplicaHeader(instance_id, epoch, seq, rest.pop("status", "running"), **rest)


# --- the lease -------------------------------------------------------------------------------


def test_a_lease_goes_stale_only_past_the_threshold_and_only_while_the_site_holds_it() -> None:
    lease = SiteLease.first("plant-1", NOW, highest_epoch=3, takeover_by="aws")
    assert lease.holder == "site" and lease.term == 1
    assert not lease.stale(NOW + timedelta(seconds=300), 300)
    assert lease.stale(NOW + timedelta(seconds=301), 300)
    assert lease.may_take_over("aws", NOW + timedelta(seconds=301), 300)
    assert not lease.may_take_over("azure", NOW + timedelta(seconds=301), 300)
    taken = lease.taken_over("aws", NOW + timedelta(seconds=301), "aws-t2-x")
    assert (taken.holder, taken.term) == ("aws", 2)
    assert not taken.stale(NOW + timedelta(days=1), 300)  # the cloud holds it now


def test_a_site_that_was_taken_over_cannot_renew_until_it_applied_the_takeover() -> None:
    lease = SiteLease.first("plant-1", NOW, 0, "aws").taken_over("aws", NOW, "aws-t2-x")
    with pytest.raises(LeaseConflictError, match="taken over by aws"):
        lease.renewed(NOW, 0, "aws")
    mark = TakeoverMark("aws-t2-x", "aws", "t", complete=True, report="r")
    pending = lease.with_takeover(mark)
    assert pending.pending_takeover == mark
    back = pending.reclaimed(NOW + timedelta(seconds=5), 4, "aws")
    assert (back.holder, back.term, back.acknowledged, back.highest_epoch) == (
        "site",
        3,
        "aws-t2-x",
        4,
    )
    assert back.pending_takeover is None


def test_the_lease_document_round_trips_and_a_foreign_one_is_refused() -> None:
    lease = SiteLease.first("plant-1", NOW, 2, None).taken_over("azure", NOW, "azure-t2-1")
    assert SiteLease.from_document(lease.document()) == lease
    with pytest.raises(LeaseError, match="not a RustyFlower site lease"):
        SiteLease.from_document({"site": "x"})
    broken = {**lease.document(), "renewed_at": "yesterday"}
    with pytest.raises(LeaseError, match="renewed_at"):
        SiteLease.from_document(broken)


@pytest.mark.parametrize("bad", ["", "a/b", "-x", "x" * 64, "with space"])
def test_site_ids_must_fit_key_names(bad: str) -> None:
    with pytest.raises(ValueError, match="site id"):
        check_site_id(bad)


# --- replicas ------------------------------------------------------------------------------------


def test_a_higher_epoch_wins_and_within_one_epoch_the_later_seq() -> None:
    assert put_decision(None, header(seq=1)) == "write"
    assert put_decision(header(seq=3), header(seq=4)) == "write"
    assert put_decision(header(seq=4), header(seq=4)) == "kept"
    assert put_decision(header(seq=5), header(seq=4)) == "kept"
    assert put_decision(header(epoch=1, seq=2), header(epoch=0, seq=9)) == "fenced"
    assert put_decision(header(epoch=0, seq=9), header(epoch=1, seq=2, owner="aws")) == "write"
    assert remove_decision(None, header(status="succeeded")) == "absent"
    assert remove_decision(header(epoch=0), header(epoch=0, seq=7, status="failed")) == "remove"
    assert remove_decision(header(epoch=1), header(epoch=0, status="succeeded")) == "fenced"


def test_headers_travel_as_ascii_metadata_and_names_hash_any_id() -> None:
    odd = header("ordre/été #7", epoch=2, seq=5, flow="commande", updated_at="2026-01-01T00:00:00Z")
    metadata = odd.metadata()
    assert all(value.isascii() for value in metadata.values())
    assert ReplicaHeader.from_metadata(metadata) == odd
    name = instance_name("plant-1", "ordre/été #7")
    assert (
        name.startswith("lifeboat/plant-1/instances/") and name.isascii() and "/" not in name[27:]
    )
    with pytest.raises(ReplicaError, match="no RustyFlower replica metadata"):
        ReplicaHeader.from_metadata({"epoch": "1"}, "s3://b/k")


# --- the takeover ---------------------------------------------------------------------------------


def test_the_watchdog_continues_the_sites_running_instances_and_its_own_claims() -> None:
    headers = [
        header("a", epoch=0),
        header("b", epoch=2, owner="aws"),  # claimed by an earlier run of this takeover
        header("c", epoch=1, owner="azure"),  # lives in the other cloud
        header("d", status="succeeded"),
    ]
    chosen, left = choose(headers, "aws")
    assert [h.instance_id for h in chosen] == ["a", "b"]
    assert [(h.instance_id, why) for h, why in left] == [
        ("c", "lives in azure"),
        ("d", "already succeeded"),
    ]
    assert [takeover_epoch(h, "aws") for h in chosen] == [1, 2]


def candidate(instance_id: str, parent: str | None = None) -> Candidate:
    link = None if parent is None else ParentLink(parent, "Call~1")
    snapshot = start(FLOW, {}, instance_id, NOW, parent=link).snapshot
    return Candidate(header(instance_id), snapshot)


def test_child_flows_go_with_their_root_and_an_orphan_is_reported() -> None:
    found = [
        candidate("p/c/g", parent="p/c"),
        candidate("p"),
        candidate("p/c", parent="p"),
        candidate("q"),
        candidate("x/c", parent="x"),
    ]
    groups, orphans = group(found)
    assert [(g.root.instance_id, [c.instance_id for c in g.children]) for g in groups] == [
        ("p", ["p/c", "p/c/g"]),
        ("q", []),
    ]
    assert [o.instance_id for o in orphans] == ["x/c"]


def test_takeover_ids_and_reports() -> None:
    assert takeover_id("aws", 3, "2026-01-01T12:00:05.5Z") == "aws-t3-20260101120005"
    report = TakeoverReport("plant-1", "aws", "aws-t3-1", "s", "r", 300.0)
    report.instances += [
        TakenInstance("a", "started", epoch=1, from_seq=7, where="arn"),
        TakenInstance("b", "failed", error="DigestMismatchError: ..."),
    ]
    again = TakeoverReport.decode(report.encode())
    assert again == report
    assert [one.instance_id for one in again.taken] == ["a"]
    with pytest.raises(ValueError, match="unreadable takeover report"):
        TakeoverReport.decode(b'{"kind": "other"}')
