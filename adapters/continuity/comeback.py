"""A site that comes back after a takeover: the instances the cloud took live there now.

``apply_takeover`` reads the watchdog's report and, for every instance the cloud
continues, takes the replica it continued (sealed by the watchdog at the new epoch) as
the instance's state here, owned by the cloud (``InstanceStore.adopt``): the local runner
can no longer advance it (its epoch is older), ``rustyflower status`` shows it living in
the cloud at the point the cloud continued from, and ``rustyflower failback`` brings it
back from there (the ledger says where it runs). Whatever the site did after that point
(it was not replicated) is superseded: the cloud redid it, with the same idempotency
keys. Adopting is idempotent: applying a report twice changes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from rustyflower.adapters.continuity import ledger
from rustyflower.adapters.continuity.errors import ContinuityError
from rustyflower.core.errors import RustyFlowerError
from rustyflower.core.instance_store import InstanceStore
from rustyflower.core.lifeboat.lease import TakeoverMark
from rustyflower.core.lifeboat.replica import ReplicaStore
from rustyflower.core.lifeboat.takeover import TakenInstance, TakeoverReport
from rustyflower.core.snapshot import SnapshotKeys
from rustyflower.core.snapshot.document import decode_snapshot
from rustyflower.core.timeutil import format_timestamp

__all__ = ["TAKEN_OVER_KIND", "AppliedTakeover", "apply_takeover"]

TAKEN_OVER_KIND = "TakenOver"
"""The history entry an instance taken over by a cloud gets when its site applies it."""


@dataclass
class AppliedTakeover:
    """What applying one takeover changed here."""

    cloud: str
    takeover_id: str
    adopted: list[str] = field(default_factory=list)
    """Instances now owned by the cloud here."""
    unchanged: list[str] = field(default_factory=list)
    """Already applied (or owned by a newer epoch here)."""
    problems: list[str] = field(default_factory=list)


def apply_takeover(
    store: InstanceStore,
    replicas: ReplicaStore,
    mark: TakeoverMark,
    keys: SnapshotKeys,
    now: Callable[[], datetime],
) -> AppliedTakeover:
    """Apply a complete takeover to the site's store (see the module's docstring)."""
    if not mark.complete or mark.report is None:
        raise ContinuityError(
            f"takeover {mark.takeover_id} by {mark.cloud} is still in progress: its report "
            "is not written yet"
        )
    report = TakeoverReport.decode(replicas.read_report(mark.report))
    applied = AppliedTakeover(mark.cloud, mark.takeover_id)
    children: dict[str, list[str]] = {}
    for entry in report.taken:
        if entry.parent:
            children.setdefault(entry.parent, []).append(entry.instance_id)
    for entry in report.taken:
        try:
            changed = _adopt(store, replicas, report=report, entry=entry, keys=keys, now=now)
        except RustyFlowerError as error:
            applied.problems.append(f"{entry.instance_id}: {error}")
            continue
        (applied.adopted if changed else applied.unchanged).append(entry.instance_id)
        if changed:
            where = "execution_arn" if report.cloud == "aws" else "orchestration"
            ledger.record(
                store,
                entry.instance_id,
                {
                    "cloud": report.cloud,
                    "epoch": str(entry.epoch),
                    "seq": str(entry.from_seq),
                    where: entry.where,
                    "children": children.get(entry.instance_id) or None,
                    "parent": entry.parent,
                    "takeover": report.takeover_id,
                },
            )
    return applied


def _adopt(
    store: InstanceStore,
    replicas: ReplicaStore,
    *,
    report: TakeoverReport,
    entry: TakenInstance,
    keys: SnapshotKeys,
    now: Callable[[], datetime],
) -> bool:
    replica = replicas.read(entry.instance_id)
    if replica is None:
        raise ContinuityError(f"the replica {report.cloud} continued is gone from {replicas.where}")
    epoch = entry.epoch if entry.epoch is not None else replica.header.epoch
    # kept at the epoch before the takeover, as a fence leaves it: the site's runner
    # loading it commits at that epoch and is refused
    snapshot = replace(decode_snapshot(replica.data, keys), epoch=epoch - 1)
    local_seq = store.info(entry.instance_id).seq if store.exists(entry.instance_id) else None
    note = {
        "seq": snapshot.seq,
        "at": format_timestamp(now()),
        "kind": TAKEN_OVER_KIND,
        "detail": {
            "cloud": report.cloud,
            "takeover": report.takeover_id,
            "epoch": epoch,
            "from_seq": snapshot.seq,
            "where": entry.where,
            "superseded_seq": local_seq,
        },
    }
    return store.adopt(snapshot, epoch, report.cloud, note)
