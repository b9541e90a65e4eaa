"""The steps every cloud's continuity takes in the same order; each cloud fills in its own.

Failover: fence the instance here and seal its snapshot (``hand_over``), continue it in
the cloud, and record where it went; a refusal the cloud is certain about (nothing
started) gives the instance back to the site. Failback: bring the instance back, then
each child that went with it, and forget the record.

Reclaim (``failback --force``): the escape hatch for a cloud that cannot be reached or
will not stop. It tries to stop the cloud's run and read its state (briefly), and whatever
happens takes the instance back at epoch + 1, from the cloud's state when it could be read,
else from the site's own snapshot (the state at failover time). The raised epoch is what
makes it safe: anything the cloud still sends for the old epoch is refused by the store.
"""

from __future__ import annotations

import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import ClassVar

from rustyflower.adapters.continuity import ledger
from rustyflower.adapters.continuity.errors import (
    ContinuityConfigError,
    ContinuityError,
    OwnershipError,
)
from rustyflower.adapters.continuity.handover import (
    Handover,
    give_back,
    hand_over,
    hand_over_file,
    notify_parent,
)
from rustyflower.adapters.continuity.outcomes import Cloud, CloudView, Outcome
from rustyflower.core.engine import Snapshot
from rustyflower.core.errors import RustyFlowerError
from rustyflower.core.instance_store import RECLAIMED_KIND, InstanceInfo, InstanceStore
from rustyflower.core.snapshot import SnapshotKeys

Clock = Callable[[], datetime]
log = logging.getLogger("rustyflower.continuity")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Continued:
    """Where the cloud continues an instance."""

    where: str
    """An execution ARN, an orchestration id."""
    result: str
    """``started``, or ``existing`` (a repeated failover of the same epoch)."""
    status: str


class CloudContinuity(ABC):
    """Failover to and failback from one cloud for the instances of one local store."""

    cloud: ClassVar[Cloud]
    cloud_name: ClassVar[str]
    """How messages name the cloud (``AWS``, ``Azure``)."""
    refusals: ClassVar[tuple[type[Exception], ...]] = ()
    """Errors of ``_continue`` that certainly started nothing (the instance may go back)."""
    child_errors: ClassVar[tuple[type[Exception], ...]] = ()
    """Errors besides RustyFlower's that one child's failback reports instead of raising."""

    def __init__(
        self, store: InstanceStore | None, keys: SnapshotKeys | None, *, now: Clock = utc_now
    ) -> None:
        self._store = store
        self.keys = keys if keys is not None else self.store.snapshot_keys
        self.now = now
        """The time events applied here are stamped with (a parent told of its child)."""

    @property
    def has_store(self) -> bool:
        return self._store is not None

    @property
    def store(self) -> InstanceStore:
        """The site's store, through the port (``--snapshot`` failovers have none)."""
        if self._store is None:
            raise ContinuityConfigError("this step needs the local store (--redis-url)")
        return self._store

    # --- what each cloud provides ---------------------------------------------------------

    def _guard(self, doing: str) -> contextlib.AbstractContextManager[None]:
        """Turns the cloud SDK's errors while ``doing`` into one-line ContinuityErrors."""
        return contextlib.nullcontext()

    def _preflight(self, snapshot: Snapshot) -> None:
        """Refuse, before anything is fenced, what the cloud would refuse (default: nothing)."""
        return None

    @abstractmethod
    def _continue(self, handed: Handover) -> Continued:
        """Start (or find) the cloud's run of the handed-over snapshot."""

    @abstractmethod
    def _record(self, handed: Handover, continued: Continued) -> None:
        """Record in the ledger where the instance and its children went."""

    @abstractmethod
    def _failback_one(self, instance_id: str, *, root: bool) -> Outcome:
        """Bring one instance back (``root``: the one asked for, not a child of it)."""

    @abstractmethod
    def _stop_and_read(self, instance_id: str, local: Snapshot) -> Snapshot:
        """Stop the cloud's run of the instance (no waiting for a safe point) and read its
        newest state; raises when the cloud cannot be reached or has no run of it."""

    @abstractmethod
    def describe(self, instance_id: str) -> CloudView:
        """Ask the cloud where the instance stands (its run's status and current state)."""

    # --- failover ---------------------------------------------------------------------------

    def failover(self, instance_id: str) -> Outcome:
        """Continue a local instance in the cloud (idempotent per epoch)."""
        with self._guard(f"failing over {instance_id!r}"):
            handed = hand_over(self.store, instance_id, self.cloud, preflight=self._preflight)
            return self._send(handed, give_back_on_refusal=handed.fenced, record=True)

    def failover_file(self, data: bytes, source: str) -> Outcome:
        """Continue a snapshot file in the cloud at its epoch + 1 (no local store to fence)."""
        handed = hand_over_file(data, self.keys, source=source)
        with self._guard(f"failing over {source}"):
            self._preflight(handed.snapshot)
            return self._send(handed, give_back_on_refusal=False, record=False)

    def _send(self, handed: Handover, *, give_back_on_refusal: bool, record: bool) -> Outcome:
        snapshot = handed.snapshot
        try:
            continued = self._continue(handed)
        except self.refusals as refused:
            message = str(refused)
            if give_back_on_refusal:
                back = give_back(self.store, snapshot)
                message += f" (the instance stays on-premises, epoch {back.epoch})"
            raise ContinuityError(message) from None
        if record:
            self._record(handed, continued)
        children = [child.instance_id for child in handed.children]
        return Outcome(
            snapshot.instance_id,
            "failover",
            self.cloud,
            continued.result,
            flow=snapshot.definition.key,
            epoch=snapshot.epoch,
            seq=snapshot.seq,
            status=continued.status,
            where=continued.where,
            detail={"children": children} if children else {},
        )

    # --- failback ---------------------------------------------------------------------------

    def failback(self, instance_id: str) -> Outcome:
        """Bring the instance back and resume it here, then each child that went with it."""
        with self._guard(f"failing back {instance_id!r}"):
            record = ledger.read(self.store, instance_id)
            outcome = self._failback_one(instance_id, root=True)
            children = {child: self._child_back(child) for child in ledger.children(record)}
            if children:
                outcome.detail["children"] = children
            ledger.forget(self.store, instance_id)
            return outcome

    # --- reclaim (failback --force) -----------------------------------------------------------

    def reclaim(self, instance_id: str, reason: str) -> Outcome:
        """Take the instance (and the children that went with it) back whatever the cloud
        does; see the module's docstring. ``reason`` is written to the history."""
        record = ledger.read(self.store, instance_id)
        outcome = self._reclaim_one(instance_id, reason)
        children: dict[str, str] = {}
        for child_id in ledger.children(record):
            try:
                if self.store.info(child_id).owner != self.cloud:
                    children[child_id] = f"not in {self.cloud_name}"
                    continue
                back = self._reclaim_one(child_id, reason)
                ledger.forget(self.store, child_id)
            except RustyFlowerError as error:
                children[child_id] = f"failed: {error}"
                continue
            children[child_id] = f"reclaimed from the {back.detail['source']} (epoch {back.epoch})"
        if children:
            outcome.detail["children"] = children
        ledger.forget(self.store, instance_id)
        return outcome

    def _reclaim_one(self, instance_id: str, reason: str) -> Outcome:
        store = self.store
        info = self._owned(instance_id)
        local = replace(store.load(instance_id, fresh=True), epoch=info.epoch)
        problem: str | None = None
        taken: Snapshot | None = None
        unreachable: tuple[type[Exception], ...] = (RustyFlowerError, OSError, *self.child_errors)
        try:
            with self._guard(f"stopping {instance_id!r} in {self.cloud_name}"):
                taken = self._stop_and_read(instance_id, local)
        except unreachable as error:
            problem = " ".join(str(error).split()) or type(error).__name__
        if taken is not None and (taken.epoch != info.epoch or taken.seq < local.seq):
            problem = (
                f"the state read from {self.cloud_name} (epoch {taken.epoch}, seq {taken.seq}) "
                f"is not of this failover (epoch {info.epoch}, seq {local.seq} or later)"
            )
            taken = None
        source = "cloud" if taken is not None else "site"
        chosen = taken if taken is not None else local
        detail: dict[str, object] = {
            "cloud": self.cloud,
            "epoch": info.epoch + 1,
            "reason": reason,
            "source": source,
            "from_seq": chosen.seq,
        }
        if problem is not None:
            detail["cloud_error"] = problem
        back = store.resume(
            chosen, take_ownership=True, note={"kind": RECLAIMED_KIND, "detail": detail}
        )
        log.warning(
            "reclaimed %s from %s at epoch %d (from the %s's snapshot, seq %d; reason: %s)%s",
            instance_id,
            self.cloud_name,
            back.epoch,
            source,
            back.seq,
            reason,
            f"; {self.cloud_name} was not stopped: {problem}" if problem else "",
        )
        notify_parent(store, back, self.now())
        outcome_detail: dict[str, object] = {"source": source, "reason": reason}
        if problem is not None:
            outcome_detail["cloud_error"] = problem
        return Outcome(
            instance_id,
            "failback",
            self.cloud,
            "reclaimed",
            flow=back.definition.key,
            epoch=back.epoch,
            seq=back.seq,
            status=back.status,
            where="local",
            detail=outcome_detail,
        )

    def _child_back(self, child_id: str) -> str:
        reported: tuple[type[Exception], ...] = (RustyFlowerError, *self.child_errors)
        try:
            if self.store.info(child_id).owner != self.cloud:
                return f"not in {self.cloud_name}"
            outcome = self._failback_one(child_id, root=False)
            ledger.forget(self.store, child_id)
        except reported as error:
            return f"failed: {error}"
        return f"{outcome.result} ({outcome.status}, epoch {outcome.epoch})"

    def _owned(self, instance_id: str) -> InstanceInfo:
        """The instance's record, when it lives in this cloud."""
        info = self.store.info(instance_id)
        if info.owner != self.cloud:
            raise OwnershipError(
                f"instance {instance_id!r} is not in {self.cloud_name} (owner {info.owner}): "
                "nothing to fail back"
            )
        return info
