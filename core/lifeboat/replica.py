"""Replicas: the newest sealed snapshot of every in-flight instance, kept in cloud storage.

The site ships each changed instance's snapshot, exactly as its store holds it (signed,
and encrypted when the site encrypts), to one object per instance. The object carries a
:class:`ReplicaHeader` as metadata (unverified, for choosing what to read; whoever
continues a replica opens the bytes with its keys). A finished instance's replica is
removed: what is left is what a watchdog would continue.

Every write is conditional on what is there (an ETag), under one ordering rule,
:func:`put_decision`: a higher epoch wins over any lower one, and within one epoch the
higher ``seq`` wins. So a site that lost its instances to a cloud (which wrote them at
epoch + 1 when it took them over) can no longer overwrite them: its write is
``fenced``. The site's replicator ships a round's instances as one *segment*
(``core.lifeboat.segments``), folded into the per-instance objects later; readers see
both as one view. Layout, under one bucket or container::

    lifeboat/<site>/instances/<sha256 of the instance id>.snapshot
    lifeboat/<site>/segments/<ms>-<random>.json      many instances' changes at once
    lifeboat/<site>/takeovers/<takeover id>.json     the watchdog's reports
    lifeboat/<site>/lease.json                       the site lease (Azure; AWS: DynamoDB)
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol
from urllib.parse import quote, unquote

from rustyflower.core.errors import RustyFlowerError
from rustyflower.core.instance_store import LOCAL

if TYPE_CHECKING:
    from rustyflower.core.lifeboat.segments import SegmentEntry

__all__ = [
    "ROOT",
    "CloudUnreachableError",
    "PutOutcome",
    "RemoveOutcome",
    "Replica",
    "ReplicaError",
    "ReplicaHeader",
    "ReplicaStore",
    "instance_name",
    "lease_name",
    "put_decision",
    "remove_decision",
    "report_name",
    "site_root",
]

ROOT = "lifeboat"
FINISHED = frozenset({"succeeded", "failed", "cancelled"})

PutOutcome = Literal["written", "kept", "fenced"]
"""``written``; ``kept``: the same or a later point of the same epoch is there already;
``fenced``: a higher epoch is there (the instance was taken over)."""
RemoveOutcome = Literal["removed", "absent", "fenced"]


class ReplicaError(RustyFlowerError):
    """A replica object whose metadata is not a RustyFlower replica header."""


class CloudUnreachableError(RustyFlowerError):
    """The cloud's storage could not be reached (or refused the credentials): the
    replicator keeps its backlog and tries again."""


def site_root(site: str) -> str:
    return f"{ROOT}/{site}/"


def instance_name(site: str, instance_id: str) -> str:
    """The object of an instance: its id hashed (any id fits, of any length or alphabet)."""
    digest = hashlib.sha256(instance_id.encode("utf-8")).hexdigest()
    return f"{site_root(site)}instances/{digest}.snapshot"


def instances_prefix(site: str) -> str:
    return f"{site_root(site)}instances/"


def report_name(site: str, takeover_id: str) -> str:
    return f"{site_root(site)}takeovers/{takeover_id}.json"


def lease_name(site: str) -> str:
    return f"{site_root(site)}lease.json"


@dataclass(frozen=True)
class ReplicaHeader:
    """What a replica object says about the snapshot it holds (as metadata)."""

    instance_id: str
    epoch: int
    """The instance's epoch in the store that wrote it (a fence raises it before the
    snapshot itself moves; whoever continues the replica continues it at this epoch)."""
    seq: int
    status: str
    owner: str = LOCAL
    """Who advances the instance: ``local`` (the site), or the cloud that continues it."""
    updated_at: str = ""
    flow: str = ""
    flow_version: str = ""

    @property
    def order(self) -> tuple[int, int]:
        return (self.epoch, self.seq)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def metadata(self) -> dict[str, str]:
        """As object metadata: HTTP headers, so ASCII only (the rest percent-encoded)."""
        values = {
            "instance_id": self.instance_id,
            "epoch": str(self.epoch),
            "seq": str(self.seq),
            "status": self.status,
            "owner": self.owner,
            "updated_at": self.updated_at,
            "flow": self.flow,
            "flow_version": self.flow_version,
        }
        return {
            name: quote(value, safe=" !#$&'()*+,-./:;=?@[]^_`{|}~")
            for name, value in values.items()
        }

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], where: str = "") -> ReplicaHeader:
        values = {name.lower(): unquote(value or "") for name, value in metadata.items()}
        try:
            return cls(
                instance_id=values["instance_id"],
                epoch=int(values["epoch"]),
                seq=int(values["seq"]),
                status=values["status"],
                owner=values.get("owner") or LOCAL,
                updated_at=values.get("updated_at", ""),
                flow=values.get("flow", ""),
                flow_version=values.get("flow_version", ""),
            )
        except (KeyError, ValueError):
            raise ReplicaError(
                f"{where or 'object'} has no RustyFlower replica metadata "
                "(instance_id, epoch, seq, status): was it written by something else?"
            ) from None


@dataclass(frozen=True)
class Replica:
    header: ReplicaHeader
    data: bytes
    """The sealed snapshot (open it with ``decode_snapshot`` and the site's keys)."""


def put_decision(
    there: ReplicaHeader | None, new: ReplicaHeader
) -> Literal["write", "kept", "fenced"]:
    """Whether ``new`` may replace what is ``there`` (None: nothing is)."""
    if there is None:
        return "write"
    if there.epoch > new.epoch:
        return "fenced"
    return "write" if new.order > there.order else "kept"


def remove_decision(
    there: ReplicaHeader | None, finished: ReplicaHeader
) -> RemoveOutcome | Literal["remove"]:
    """Whether the replica may go now that the instance ``finished`` (at that epoch)."""
    if there is None:
        return "absent"
    if there.epoch > finished.epoch:
        return "fenced"
    return "remove"


class ReplicaStore(Protocol):
    """One cloud's replicas of one site (``adapters.aws.lifeboat``, ``adapters.azure.lifeboat``)."""

    cloud: str
    site: str

    @property
    def where(self) -> str:
        """The bucket or container and prefix, for messages."""
        ...

    def put(self, header: ReplicaHeader, data: bytes) -> PutOutcome:
        """Write the replica if it is newer than what is there (:func:`put_decision`)."""
        ...

    def remove(self, header: ReplicaHeader) -> RemoveOutcome:
        """Remove the replica of a finished instance, unless a higher epoch is there."""
        ...

    def headers(self) -> list[ReplicaHeader]:
        """Every in-flight replica's newest header, segments included (what a watchdog
        chooses from)."""
        ...

    def read(self, instance_id: str) -> Replica | None:
        """The instance's newest replica, segments included."""
        ...

    def put_segment(self, entries: Sequence[SegmentEntry], written_ms: int) -> str:
        """Write many instances' changes as one new segment; its name."""
        ...

    def segment_names(self) -> list[str]:
        """The segments not compacted yet, oldest first."""
        ...

    def segment_entries(self, names: Sequence[str]) -> dict[str, list[SegmentEntry]]: ...

    def current_segments(self) -> dict[str, list[SegmentEntry]]:
        """Every segment there now, read whole (listed again when one went meanwhile)."""
        ...

    def base_names(self) -> set[str]:
        """The names of the per-instance replicas there now."""
        ...

    def delete_segments(self, names: Sequence[str]) -> None: ...

    def write_report(self, takeover_id: str, body: bytes) -> str:
        """Store a takeover report; returns its name."""
        ...

    def read_report(self, name: str) -> bytes: ...
