"""A takeover: which replicated instances a watchdog continues, and the report it writes.

The watchdog continues every replica that is running and owned by the site (``local``),
at its epoch + 1, and again (idempotently, at the same epoch) every replica it already
claimed in an earlier, interrupted run (owner = its cloud). A replica owned by another
cloud lives there: it is left alone. Child flows go with their root instance, as they do
in a failover (they are continued by their parent's run): :func:`group` puts every
running descendant of a root after it; a child whose root has no replica is reported,
not continued on its own (its result would have no parent to go to).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from rustyflower.core.engine.state import Snapshot
from rustyflower.core.errors import RustyFlowerError
from rustyflower.core.instance_store import LOCAL
from rustyflower.core.lifeboat.replica import ReplicaHeader

__all__ = [
    "REPORT_KIND",
    "Candidate",
    "ReportError",
    "TakenInstance",
    "TakeoverGroup",
    "TakeoverReport",
    "choose",
    "group",
    "takeover_epoch",
    "takeover_id",
]

REPORT_KIND = "rustyflower.takeover-report"
TakenResult = Literal["started", "existing", "failed", "skipped"]


class ReportError(RustyFlowerError, ValueError):
    """A takeover report that cannot be read."""


def takeover_id(cloud: str, term: int, at: str) -> str:
    """``<cloud>-t<term>-<time>``: two watchdogs racing for one term make the same id, and
    only one of them wins the lease."""
    compact = "".join(ch for ch in at if ch.isdigit())[:14]
    return f"{cloud}-t{term}-{compact}"


def takeover_epoch(header: ReplicaHeader, cloud: str) -> int | None:
    """The epoch ``cloud`` continues the replica at (None: not its to continue)."""
    if header.owner == LOCAL:
        return header.epoch + 1
    if header.owner == cloud:
        return header.epoch  # claimed by an earlier run of this takeover
    return None


def choose(
    headers: Iterable[ReplicaHeader], cloud: str
) -> tuple[list[ReplicaHeader], list[tuple[ReplicaHeader, str]]]:
    """The replicas to continue, and those left alone with the reason."""
    chosen: list[ReplicaHeader] = []
    left: list[tuple[ReplicaHeader, str]] = []
    for header in sorted(headers, key=lambda found: found.instance_id):
        if header.finished:
            left.append((header, f"already {header.status}"))
        elif takeover_epoch(header, cloud) is None:
            left.append((header, f"lives in {header.owner}"))
        else:
            chosen.append(header)
    return chosen, left


@dataclass(frozen=True)
class Candidate:
    """A chosen replica, opened with the watchdog's keys."""

    header: ReplicaHeader
    snapshot: Snapshot

    @property
    def instance_id(self) -> str:
        return self.header.instance_id


@dataclass(frozen=True)
class TakeoverGroup:
    """A root instance and its running descendants (parents before their children)."""

    root: Candidate
    children: tuple[Candidate, ...] = ()


def group(candidates: Sequence[Candidate]) -> tuple[list[TakeoverGroup], list[Candidate]]:
    """Roots with their descendants, and the children whose root has no replica."""
    by_id = {candidate.instance_id: candidate for candidate in candidates}
    kids: dict[str, list[Candidate]] = {}
    for candidate in candidates:
        parent = candidate.snapshot.state.parent
        if parent is not None:
            kids.setdefault(parent.instance_id, []).append(candidate)
    groups: list[TakeoverGroup] = []
    placed: set[str] = set()
    for candidate in candidates:
        parent = candidate.snapshot.state.parent
        if parent is not None and parent.instance_id in by_id:
            continue  # travels with its parent
        if parent is not None:
            continue  # its parent has no replica: reported below
        descendants: list[Candidate] = []
        pending = list(kids.get(candidate.instance_id, []))
        while pending:
            child = pending.pop(0)
            if child.instance_id in placed:
                continue
            placed.add(child.instance_id)
            descendants.append(child)
            pending.extend(kids.get(child.instance_id, []))
        placed.add(candidate.instance_id)
        groups.append(TakeoverGroup(candidate, tuple(descendants)))
    orphans = [candidate for candidate in candidates if candidate.instance_id not in placed]
    return groups, orphans


@dataclass(frozen=True)
class TakenInstance:
    """What the takeover did with one replica."""

    instance_id: str
    result: TakenResult
    flow: str = ""
    epoch: int | None = None
    """The epoch it continues at in the cloud."""
    from_seq: int | None = None
    """The point it continues from: what the site had replicated."""
    where: str | None = None
    """The execution ARN, the orchestration id."""
    parent: str | None = None
    error: str | None = None
    continued_at: str | None = None
    """When the cloud had its continuation running (started, or found started)."""


@dataclass
class TakeoverReport:
    """The takeover report a watchdog writes next to the replicas."""

    site: str
    cloud: str
    takeover_id: str
    started_at: str
    lease_renewed_at: str
    threshold_seconds: float
    finished_at: str | None = None
    instances: list[TakenInstance] = field(default_factory=list)

    @property
    def taken(self) -> list[TakenInstance]:
        """The instances that live in the cloud now."""
        return [one for one in self.instances if one.result in ("started", "existing")]

    def document(self) -> dict[str, Any]:
        return {
            "kind": REPORT_KIND,
            "site": self.site,
            "cloud": self.cloud,
            "takeover_id": self.takeover_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "lease_renewed_at": self.lease_renewed_at,
            "threshold_seconds": self.threshold_seconds,
            "instances": [asdict(one) for one in self.instances],
        }

    def encode(self) -> bytes:
        return json.dumps(self.document(), indent=1, sort_keys=True).encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> TakeoverReport:
        try:
            document = json.loads(data)
            if not isinstance(document, dict) or document.get("kind") != REPORT_KIND:
                raise ValueError(f"not a {REPORT_KIND}")
            return cls(
                site=str(document["site"]),
                cloud=str(document["cloud"]),
                takeover_id=str(document["takeover_id"]),
                started_at=str(document["started_at"]),
                finished_at=document.get("finished_at"),
                lease_renewed_at=str(document["lease_renewed_at"]),
                threshold_seconds=float(document["threshold_seconds"]),
                instances=[TakenInstance(**one) for one in document["instances"]],
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ReportError(f"unreadable takeover report: {error}") from None
