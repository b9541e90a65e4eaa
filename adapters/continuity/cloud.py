"""The steps every cloud's continuity takes in the same order; each cloud fills in its own.

Failover: fence the instance here and seal its snapshot (``hand_over``), continue it in
the cloud, and record where it went; a refusal the cloud is certain about (nothing
started) gives the instance back to the site. Failback: bring the instance back, then
each child that went with it, and forget the record.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
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
)
from rustyflower.adapters.continuity.outcomes import Cloud, Outcome
from rustyflower.core.engine import Snapshot
from rustyflower.core.errors import RustyFlowerError
from rustyflower.core.instance_store import InstanceInfo, InstanceStore
from rustyflower.core.snapshot import SnapshotKeys

Clock = Callable[[], datetime]


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
