"""The instance store port: what continuity needs of a runtime's store, and the resume rule.

Continuity (``adapters/continuity``) composes runtimes: it fences an instance in the
site's store, seals its snapshot for a cloud, and resumes what comes back. It sees the
store only through :class:`InstanceStore`; the Redis runner's ``RedisStore`` implements it
(structurally: nothing here imports a runtime). The contract lives in core because both
sides of it (a runtime and continuity) import it, and adapters never import each other.

Words: an instance's **owner** is who may advance it (``local``, ``aws``, ``azure``) and
its **epoch** a number that only grows with each change of owner; a store refuses a
commit of an older epoch than the stored one. Every transition increments **seq**.

:func:`plan_resume` is the one rule for continuing a snapshot in a store that may hold
the instance already (``rustyflower resume``, failback, give-back). It is pure so every
store applies the same rule: a snapshot older than what the store holds is refused, even
with ``take_ownership``; only ``discard_newer_state`` rolls back, and on the record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, Protocol

from rustyflower.core.engine.state import Snapshot, Transition
from rustyflower.core.errors import EpochConflictError
from rustyflower.core.model import FlowDefinition
from rustyflower.core.snapshot.keys import SnapshotKeys

__all__ = [
    "DISCARDED_KIND",
    "FAILED_BACK_KIND",
    "FAILED_OVER_KIND",
    "LOCAL",
    "OWNER_KINDS",
    "RECLAIMED_KIND",
    "CommitResult",
    "InstanceInfo",
    "InstanceStore",
    "Priority",
    "ResumePlan",
    "plan_resume",
]

LOCAL = "local"
"""The owner name of the site's own runner."""
DISCARDED_KIND = "NewerStateDiscarded"
"""The history entry a resume that rolled back newer state leaves behind."""
FAILED_OVER_KIND = "FailedOver"
"""The history entry of a fence for a cloud (detail: ``cloud``, ``epoch``), written by the
store in the same atomic step as the fence."""
FAILED_BACK_KIND = "FailedBack"
"""The history entry of an instance resumed here from a cloud (detail: ``cloud``,
``epoch``), written in the resume's own commit. AWS stops the execution it leaves with the
error ``RF.FailedBack`` (``adapters.aws.failback.STOP_ERROR``)."""
RECLAIMED_KIND = "Reclaimed"
"""The history entry of ``failback --force``: an instance taken back from a cloud that could
not be reached or would not stop (detail: ``cloud``, ``epoch``, ``reason``, ``source``)."""
OWNER_KINDS = frozenset({FAILED_OVER_KIND, FAILED_BACK_KIND, RECLAIMED_KIND})
"""The history entries that record a change of owner (besides ``TakenOver``, a cloud's)."""

Priority = Literal["high", "normal", "low"]
"""The queue priority an instance's work is dispatched with (fixed when it starts)."""

CommitResult = Literal["ok", "conflict", "fenced", "exists"]
"""``ok``; ``conflict``: the stored seq was not the expected one; ``fenced``: the stored
epoch is newer than the transition's; ``exists``: a create found the instance there."""


@dataclass(frozen=True)
class InstanceInfo:
    """What the store knows of an instance without decoding its snapshot."""

    instance_id: str
    flow: str
    version: str
    status: str
    held: bool
    seq: int
    epoch: int
    priority: Priority
    updated_at: str
    created_at: str
    owner: str
    owner_since: str = ""
    """When the owner last changed (a fence, a failback, a takeover); empty when it never
    did."""


class InstanceStore(Protocol):
    """The store contract continuity needs (``RedisStore`` implements it).

    Lookups of an instance that is not there raise ``UnknownInstanceError``, of a flow
    that is not registered ``UnknownFlowError`` (both in ``core.errors``).
    """

    @property
    def snapshot_keys(self) -> SnapshotKeys:
        """The keys the store seals and opens snapshots with (the site's keys)."""
        ...

    def info(self, instance_id: str) -> InstanceInfo: ...

    def exists(self, instance_id: str) -> bool: ...

    def load(self, instance_id: str, fresh: bool = False) -> Snapshot:
        """The instance's latest snapshot (``fresh``: read from the store, no cache)."""
        ...

    def list_instances(
        self, status: str | None = None, flow: str | None = None, limit: int = 1000
    ) -> list[InstanceInfo]: ...

    def definition(self, name: str, version: str | None = None) -> FlowDefinition:
        """A registered flow (``version`` None: the latest one)."""
        ...

    def fence(
        self, instance_id: str, epoch: int, owner: str, note: Mapping[str, Any] | None = None
    ) -> bool:
        """Give the instance to ``owner`` at ``epoch``; False when it was there already.
        From then on the store refuses commits of an older epoch. A ``FailedOver`` history
        entry (``note`` adds to its detail) is written in the same atomic step."""
        ...

    def commit(self, previous: Snapshot | None, transition: Transition) -> CommitResult:
        """Apply ``transition`` if the stored seq is still ``previous``'s (None: create),
        with the work its commands start, atomically."""
        ...

    def resume(
        self,
        snapshot: Snapshot,
        *,
        take_ownership: bool = False,
        discard_newer_state: bool = False,
        now: datetime | None = None,
        note: Mapping[str, Any] | None = None,
    ) -> Snapshot:
        """Continue ``snapshot`` (a value: nothing is sealed or opened) here, owner
        local, as :func:`plan_resume` decides; returns the value stored. ``note`` (a
        ``kind`` and ``detail``) is written to the history in the same commit, at the
        resumed seq."""
        ...

    def adopt(self, snapshot: Snapshot, epoch: int, owner: str, note: Mapping[str, Any]) -> bool:
        """A cloud took the instance over at ``epoch`` and continues it from ``snapshot``:
        store that value (as it is, of an older epoch), fenced for ``owner`` at ``epoch``
        (as ``fence`` leaves a failed-over instance), and dispatch nothing. Only when
        ``epoch`` is above the stored one (False: nothing changed). ``note`` is written to
        the instance's history with it."""
        ...

    def record_ledger(self, instance_id: str, fields: Mapping[str, str]) -> None:
        """Replace the record of where the instance went (the continuity ledger)."""
        ...

    def ledger(self, instance_id: str) -> dict[str, str]:
        """The recorded failover of an instance (empty when none is recorded)."""
        ...

    def forget_ledger(self, instance_id: str) -> None: ...


@dataclass(frozen=True)
class ResumePlan:
    """What a store writes to resume a snapshot: the value and, after a rollback, the
    history entry saying what was discarded."""

    snapshot: Snapshot
    discarded: dict[str, Any] | None = None
    """The detail of the ``NewerStateDiscarded`` entry (None: nothing was discarded)."""


def plan_resume(
    snapshot: Snapshot,
    stored: InstanceInfo | None,
    *,
    take_ownership: bool = False,
    discard_newer_state: bool = False,
) -> ResumePlan:
    """Decide how ``snapshot`` continues in a store holding ``stored`` (None: not there).

    * Stored at a newer epoch than the snapshot's: refused (another owner advanced it).
    * Same epoch: a snapshot further along is taken; the same seq only with
      ``take_ownership`` (the same point, a new owner: failback, give-back); an older
      seq is refused.
    * ``take_ownership`` raises the epoch past both the snapshot's and the stored one, so
      whoever advanced it before is fenced off.
    * ``discard_newer_state`` (with ``take_ownership`` only) accepts an older snapshot
      anyway: the stored state is dropped, the seq still grows past the stored one, and
      the plan carries the history entry that records the rollback.

    The staleness check is made on the snapshot as given, before any epoch is raised.
    Raises ``EpochConflictError`` (its message names the way out) and ``ValueError`` for
    ``discard_newer_state`` without ``take_ownership``.
    """
    if discard_newer_state and not take_ownership:
        raise ValueError("discarding newer state needs take_ownership (a new epoch)")
    epoch, seq = snapshot.epoch, snapshot.seq
    discarded: dict[str, Any] | None = None
    if stored is not None:
        newer = _newer_here(snapshot, stored, take_ownership)
        if newer is not None:
            if not discard_newer_state:
                advice = (
                    "; to roll it back anyway, say so: `rustyflower resume --take-ownership "
                    "--discard-newer-state` (recorded in the instance's history)"
                    if take_ownership
                    else ""
                )
                raise EpochConflictError(f"instance {snapshot.instance_id!r} {newer}{advice}")
            discarded = {
                "discarded_seq": stored.seq,
                "discarded_epoch": stored.epoch,
                "discarded_status": stored.status,
                "discarded_owner": stored.owner,
                "resumed_seq": snapshot.seq,
                "resumed_epoch": snapshot.epoch,
            }
            seq = max(seq, stored.seq + 1)
    if take_ownership:
        epoch = max(epoch, stored.epoch if stored is not None else 0) + 1
    if (epoch, seq) == (snapshot.epoch, snapshot.seq):
        return ResumePlan(snapshot)
    return ResumePlan(replace(snapshot, epoch=epoch, seq=seq), discarded)


def _newer_here(snapshot: Snapshot, stored: InstanceInfo, take_ownership: bool) -> str | None:
    """Why the store's instance is ahead of ``snapshot`` (None: it is not)."""
    if stored.epoch > snapshot.epoch:
        return (
            f"is owned by epoch {stored.epoch} here ({stored.owner}, seq {stored.seq}); this "
            f"snapshot is epoch {snapshot.epoch} and may not advance it"
        )
    if stored.epoch < snapshot.epoch:
        return None
    if stored.seq > snapshot.seq:
        return (
            f"is here at seq {stored.seq} ({stored.status}), newer than the snapshot's seq "
            f"{snapshot.seq}: resuming it would run that part again"
        )
    if stored.seq == snapshot.seq and not take_ownership:
        return (
            f"is already here at seq {stored.seq} (the snapshot is seq {snapshot.seq}); "
            "nothing to resume"
        )
    return None
