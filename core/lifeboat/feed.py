"""The replication feed: what the replicator needs of the site's store (a port).

The store notes every instance that changed (one entry per instance, with the time of
its oldest change not shipped yet: ``since_ms``, on the store's clock) while replication
is switched on; the replicator *collects* those notes into each target's backlog, ships
the instances of a backlog, and takes off it what it shipped, unless the instance changed
again meanwhile (then it stays, and goes again). A target's backlog lives in the store,
so a replicator that dies or a cloud that is unreachable for hours loses nothing: the
backlog waits, bounded by the number of instances, never by the number of transitions.

The Redis runner implements it (``adapters.redis.lifeboat_feed``); the replicator
(``adapters.continuity.replication``) sees only this.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rustyflower.core.lifeboat.replica import ReplicaHeader

__all__ = ["Backlog", "Fetched", "Pending", "ReplicationFeed", "Shipped", "StoredInstance"]


@dataclass(frozen=True)
class Pending:
    """An instance in a target's backlog."""

    instance_id: str
    since_ms: int
    """When (store clock, ms) its oldest change not yet shipped was committed."""


@dataclass(frozen=True)
class StoredInstance:
    """An instance as the store holds it, ready to ship."""

    header: ReplicaHeader
    data: bytes
    """The snapshot as stored (sealed with the site's keys)."""


@dataclass(frozen=True)
class Shipped:
    """What the replicator did with a pending instance (``header`` None: it was gone)."""

    pending: Pending
    header: ReplicaHeader | None
    read_ms: int
    """When (store clock) it was read: a change it did not carry is later than this."""
    absent: bool = False
    """The target holds no replica of it now (removed, or there never was one)."""


@dataclass(frozen=True)
class Fetched:
    """Pending instances as stored, read at one moment."""

    instances: dict[str, StoredInstance | None]
    read_ms: int
    """When they were read (the store's clock, ms)."""
    present: frozenset[str]
    """Those the target may hold a replica of (written and not removed since): a finished
    instance outside it needs no request to the cloud."""


@dataclass(frozen=True)
class Backlog:
    """The size of a target's backlog and the age of its oldest entry: the RPO now."""

    instances: int
    oldest_ms: int | None


class ReplicationFeed(Protocol):
    def enable(self, target: str) -> bool:
        """Switch replication on and give ``target`` a backlog; True the first time for
        that target (its backlog then holds every running instance: a first full sync)."""
        ...

    def collect(self, targets: Sequence[str], limit: int = 1000) -> int:
        """Move noted changes into every target's backlog; how many instances moved."""
        ...

    def pending(self, target: str, limit: int, ready_ms: int | None = None) -> list[Pending]:
        """The oldest entries of ``target``'s backlog (only those noted by ``ready_ms``)."""
        ...

    def fetch(self, target: str, instance_ids: Sequence[str]) -> Fetched:
        """The instances as stored now (None: gone, purged)."""
        ...

    def will_write(self, target: str, instance_ids: Sequence[str]) -> None:
        """Note, before writing them, that the target may hold these instances' replicas."""
        ...

    def shipped(self, target: str, done: Sequence[Shipped]) -> list[Pending]:
        """Take ``done`` off the backlog where the instance is still what was shipped;
        returns those taken off. One that changed since it was read stays, its oldest
        change not shipped now no older than ``read_ms`` (so its lag counts from there)."""
        ...

    def backlog(self, target: str) -> Backlog: ...

    def now_ms(self) -> int:
        """The store's clock (the one ``since_ms`` is on)."""
        ...

    def lead(self, holder: str, ttl_seconds: float) -> bool:
        """Take or renew the replicator's leadership (one replicator ships per site)."""
        ...

    def resign(self, holder: str) -> None: ...

    def report(self, document: dict[str, Any], ttl_seconds: float) -> None:
        """Publish the replicator's status (lag, backlog, leases), expiring unless renewed."""
        ...

    def last_report(self) -> dict[str, Any] | None: ...
