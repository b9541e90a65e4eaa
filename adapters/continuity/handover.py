"""Handing an instance over to a cloud and taking it back: fencing, sealing, give-back.

Words used throughout (docs/failover.md is the runbook):

* **owner**: who may advance an instance: ``local`` (the site's runner), ``aws`` or
  ``azure``. The store keeps it next to the instance's **epoch**; every commit carries the
  epoch of the snapshot it advanced, and the store refuses a commit whose epoch is older
  than the stored one (``InstanceStore.fence``).
* **handover**: fence the instance locally first (epoch + 1, owner = the cloud), so the
  on-premises runner cannot advance it any more, then seal its snapshot *at the new epoch*
  with the site's keys. The cloud continues that snapshot; its execution (AWS) or
  orchestration (Azure) is named after the instance and the epoch, so sending the same
  handover twice is one run. An instance already fenced for that cloud is sent again at
  its current epoch: the epoch is never raised twice for one failover.
* **give back**: a failover that the cloud refused for certain (a bad snapshot, a flow not
  deployed) returns the instance to the local runner at once (resume with
  ``take_ownership``: epoch + 1, owner local), so a refused failover never leaves it
  stranded.
* **failback**: the cloud's state comes back as a snapshot (the Azure checkpoint, the AWS
  execution history) and is resumed locally with ``take_ownership`` (epoch + 1, owner
  local): whatever the cloud might still do is refused from then on. A snapshot older than
  what the store holds is refused (``core.instance_store.plan_resume``).

The store is reached only through the port (``core.instance_store.InstanceStore``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from rustyflower.adapters.continuity import ledger
from rustyflower.adapters.continuity.errors import ContinuityError, OwnershipError
from rustyflower.adapters.continuity.outcomes import LOCAL, Cloud
from rustyflower.core.engine import ChildFinished, Event, Snapshot, StartChildFlow, advance
from rustyflower.core.errors import EventRejectedError, RustyFlowerError
from rustyflower.core.instance_store import InstanceStore
from rustyflower.core.model import FlowDefinition
from rustyflower.core.snapshot import SnapshotKeys
from rustyflower.core.snapshot.document import decode_snapshot, encode_snapshot
from rustyflower.core.snapshot.handover import encode_handover

__all__ = [
    "Handover",
    "Preflight",
    "apply_event",
    "give_back",
    "hand_over",
    "hand_over_file",
    "notify_parent",
    "resume_from_cloud",
]

MAX_CONFLICTS = 100
"""Attempts at applying one event while the site's runner keeps changing the instance."""


@dataclass(frozen=True)
class Handover:
    """An instance fenced for a cloud, and its signed snapshot at the cloud's epoch."""

    snapshot: Snapshot
    data: bytes
    fenced: bool
    """True when this handover raised the epoch (False: it was fenced for the cloud before,
    or it came from a snapshot file)."""
    previous_epoch: int
    children: tuple[Snapshot, ...] = ()
    """Child flows in flight (running locally when the parent was fenced), fenced too."""
    children_data: tuple[bytes, ...] = ()

    @property
    def instance_id(self) -> str:
        return self.snapshot.instance_id

    @property
    def epoch(self) -> int:
        return self.snapshot.epoch

    def request(self, keys: SnapshotKeys, flows: Sequence[FlowDefinition] = ()) -> bytes:
        """The handover envelope the cloud reads (``core.snapshot.handover``): the sealed
        snapshot, its children and ``flows``, signed with ``keys``."""
        return encode_handover(self.data, keys, children=self.children_data, flows=flows)


Preflight = Callable[[Snapshot], None]
"""Checks a snapshot (at the epoch it would be sent with) before the instance is fenced;
raises to refuse the failover while the instance is still local."""


def hand_over(
    store: InstanceStore,
    instance_id: str,
    cloud: Cloud,
    *,
    preflight: Preflight | None = None,
) -> Handover:
    """Fence ``instance_id`` for ``cloud`` (once) and seal its snapshot at the new epoch.

    The order matters: the store refuses the local runner's commits from the moment the
    epoch is raised, so the snapshot read *after* fencing is the last one the site wrote.
    """
    info = store.info(instance_id)
    if info.owner not in (LOCAL, cloud):
        raise OwnershipError(
            f"instance {instance_id!r} lives in {info.owner} (epoch {info.epoch}); fail it "
            f"back from {info.owner} before failing it over to {cloud}"
        )
    current = store.load(instance_id, fresh=True)
    if current.state.parent is not None:
        raise OwnershipError(
            f"instance {instance_id!r} is a child flow of {current.state.parent.instance_id!r}:"
            " fail over its root instance (child flows in flight travel with it)"
        )
    previous_epoch = info.epoch
    fenced = False
    if info.owner == LOCAL:
        if current.finished:
            raise OwnershipError(
                f"instance {instance_id!r} already {current.status}: nothing to fail over"
            )
        if preflight is not None:
            preflight(replace(current, epoch=info.epoch + 1))
        fenced = store.fence(instance_id, info.epoch + 1, cloud)
        info = store.info(instance_id)
        if info.owner != cloud:  # another failover (to another cloud) was first
            raise OwnershipError(
                f"instance {instance_id!r} was just taken by {info.owner} (epoch {info.epoch})"
            )
    snapshot = replace(store.load(instance_id, fresh=True), epoch=info.epoch)
    if preflight is not None and (fenced or snapshot.seq != current.seq):
        try:  # it may have moved between the check and the fence
            preflight(snapshot)
        except RustyFlowerError:
            if fenced:
                give_back(store, snapshot)
            raise
    children = _fence_children(store, snapshot, cloud)
    keys = store.snapshot_keys
    return Handover(
        snapshot=snapshot,
        data=encode_snapshot(snapshot, keys),
        fenced=fenced,
        previous_epoch=previous_epoch,
        children=tuple(children),
        children_data=tuple(encode_snapshot(child, keys) for child in children),
    )


def hand_over_file(data: bytes, keys: SnapshotKeys, *, source: str = "snapshot") -> Handover:
    """A snapshot file (no local store to fence: the site is gone) sent at its epoch + 1.

    The same file always gives the same epoch, hence the same execution or orchestration:
    sending it twice is one run. Nothing on-premises can be fenced from here; the site
    must not come back with that instance (or must be fenced by its own store).
    """
    snapshot = decode_snapshot(data, keys)
    if snapshot.finished:
        raise OwnershipError(f"{source}: instance {snapshot.instance_id!r} already finished")
    raised = replace(snapshot, epoch=snapshot.epoch + 1)
    return Handover(
        snapshot=raised,
        data=encode_snapshot(raised, keys),
        fenced=False,
        previous_epoch=snapshot.epoch,
    )


def _children_in_flight(store: InstanceStore, snapshot: Snapshot) -> Iterator[str]:
    for entry in snapshot.state.pending.values():
        command = entry.command
        if isinstance(command, StartChildFlow) and store.exists(command.child_instance_id):
            yield command.child_instance_id


def _fence_children(store: InstanceStore, parent: Snapshot, cloud: Cloud) -> list[Snapshot]:
    """Fence every running child flow of ``parent`` (and theirs) for ``cloud``."""
    found: list[Snapshot] = []
    pending = list(_children_in_flight(store, parent))
    seen: set[str] = set()
    while pending:
        child_id = pending.pop(0)
        if child_id in seen:
            continue
        seen.add(child_id)
        info = store.info(child_id)
        if info.owner not in (LOCAL, cloud) or info.status != "running":
            continue  # finished (its parent will hear of it) or elsewhere already
        if info.owner == LOCAL:
            store.fence(child_id, info.epoch + 1, cloud, {"parent": parent.instance_id})
            info = store.info(child_id)
            if info.owner != cloud:
                continue
        child = replace(store.load(child_id, fresh=True), epoch=info.epoch)
        if child.finished:
            continue
        found.append(child)
        pending.extend(_children_in_flight(store, child))
    return found


# --- taking it back --------------------------------------------------------------------------


def give_back(store: InstanceStore, snapshot: Snapshot) -> Snapshot:
    """Resume ``snapshot`` (at the cloud's epoch) locally with a raised epoch, owner local."""
    resumed = store.resume(snapshot, take_ownership=True)
    ledger.forget(store, snapshot.instance_id)
    return resumed


def resume_from_cloud(store: InstanceStore, snapshot: Snapshot, cloud: Cloud) -> Snapshot:
    """Failback: resume the cloud's ``snapshot`` here, taking the instance back (epoch + 1)."""
    info = store.info(snapshot.instance_id)
    if info.owner != cloud:
        raise OwnershipError(
            f"instance {snapshot.instance_id!r} is owned by {info.owner} here, not {cloud}: "
            "nothing to fail back"
        )
    if snapshot.epoch != info.epoch:
        raise ContinuityError(
            f"instance {snapshot.instance_id!r}: the snapshot read from {cloud} is of epoch "
            f"{snapshot.epoch}, but the instance went to {cloud} at epoch {info.epoch}; "
            "refusing a snapshot of another failover"
        )
    return give_back(store, snapshot)


def apply_event(store: InstanceStore, instance_id: str, event: Event, now: datetime) -> Snapshot:
    """Advance a local instance by ``event`` through the port (compare-and-set, retried
    while the site's runner changes it); a rejected event raises ``EventRejectedError``."""
    for _ in range(MAX_CONFLICTS):
        snapshot = store.load(instance_id, fresh=True)
        transition = advance(snapshot, event, now)
        result = store.commit(snapshot, transition)
        if result == "ok":
            return transition.snapshot
        if result == "fenced":
            raise OwnershipError(
                f"instance {instance_id!r} was taken by a newer epoch while applying {event.kind}"
            )
    raise ContinuityError(
        f"instance {instance_id!r} changed {MAX_CONFLICTS} times while applying {event.kind}; "
        "try again"
    )


def notify_parent(store: InstanceStore, child: Snapshot, now: datetime) -> None:
    """A child flow failed back *finished*: tell its parent, as the runner would have.

    (Resuming a finished snapshot dispatches nothing, so the parent would wait forever.)
    A parent that already knows (the event is stale) or is not here ignores it.
    """
    parent = child.state.parent
    if not child.finished or parent is None:
        return
    if not store.exists(parent.instance_id) or store.info(parent.instance_id).owner != LOCAL:
        return
    state = child.state
    event = ChildFinished(parent.call_id, child.status, state.output, state.error, state.cause)
    try:
        apply_event(store, parent.instance_id, event, now)
    except EventRejectedError:
        return  # the parent heard of it already
