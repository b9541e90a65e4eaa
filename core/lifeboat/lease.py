"""The site lease: the site says, in each cloud, that it is alive and holds its instances.

One record per site and cloud (a DynamoDB item, a blob), changed only by conditional
writes: every writer names the version it read, so of two writers racing exactly one
wins. The site renews it every few seconds; the cloud's watchdog reads it and, when it
is older than its threshold and the site named that cloud as its lifeboat
(``takeover_by``), takes it over (holder = the cloud, term + 1) before it continues any
instance. A site that comes back reads the takeover, applies it (the instances taken
over live in the cloud from then on) and reclaims the lease (holder = the site, term +
1, ``acknowledged`` = the takeover's id).

Times are RFC 3339 text written by whoever wrote the record; a watchdog compares the
site's ``renewed_at`` with its own clock, so the threshold must be far above the clock
skew between them (minutes against seconds).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from rustyflower.core.errors import RustyFlowerError
from rustyflower.core.timeutil import format_timestamp, parse_timestamp, require_aware

__all__ = [
    "SITE_HOLDER",
    "LeaseConflictError",
    "LeaseError",
    "LeaseStore",
    "SiteLease",
    "TakeoverMark",
    "VersionedLease",
    "check_site_id",
]

SITE_HOLDER = "site"
"""The holder of a lease the site holds (otherwise the holder is the cloud's name)."""
_SITE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


class LeaseError(RustyFlowerError):
    """A lease record that cannot be read (written by something else, or damaged)."""


class LeaseConflictError(RustyFlowerError):
    """A conditional write lost: the record changed since it was read (or already exists)."""


def check_site_id(value: str) -> str:
    """A site id names keys, blobs and table items: 1 to 63 of ``A-Z a-z 0-9 . _ -``."""
    if not _SITE_ID.fullmatch(value):
        raise ValueError(
            f"site id {value!r}: use 1 to 63 letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit)"
        )
    return value


@dataclass(frozen=True)
class TakeoverMark:
    """The last takeover, as the lease records it (the report has the detail)."""

    takeover_id: str
    cloud: str
    at: str
    complete: bool = False
    """False while the watchdog is continuing the instances (a crashed run is finished by
    the next one); True once the report is written."""
    report: str | None = None
    """Where the report is (an S3 key, a blob name)."""
    instances: int = 0

    def document(self) -> dict[str, Any]:
        return {
            "takeover_id": self.takeover_id,
            "cloud": self.cloud,
            "at": self.at,
            "complete": self.complete,
            "report": self.report,
            "instances": self.instances,
        }

    @classmethod
    def from_document(cls, value: Any) -> TakeoverMark:
        if not isinstance(value, dict):
            raise LeaseError("the lease's takeover is not an object")
        try:
            return cls(
                takeover_id=str(value["takeover_id"]),
                cloud=str(value["cloud"]),
                at=str(value["at"]),
                complete=bool(value.get("complete", False)),
                report=None if value.get("report") is None else str(value["report"]),
                instances=int(value.get("instances") or 0),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise LeaseError(f"the lease's takeover is incomplete: {error}") from None


@dataclass(frozen=True)
class SiteLease:
    """One site's lease in one cloud."""

    site: str
    holder: str
    """``site``, or the cloud that took the site's instances over."""
    term: int
    """Grows with every change of holder (a takeover, a reclaim)."""
    renewed_at: str
    """When the holder last wrote it (RFC 3339, the writer's clock)."""
    highest_epoch: int = 0
    """The highest epoch of any instance the site has replicated (for people and drills)."""
    takeover_by: str | None = None
    """The cloud whose watchdog may take the site over (None: no watchdog may)."""
    takeover: TakeoverMark | None = None
    acknowledged: str | None = None
    """The id of the last takeover the site has applied."""

    # --- the rules ----------------------------------------------------------------------

    @property
    def held_by_site(self) -> bool:
        return self.holder == SITE_HOLDER

    def age(self, now: datetime) -> float:
        """Seconds since the lease was renewed (by ``now``, the reader's clock)."""
        renewed = parse_timestamp(self.renewed_at)
        if renewed is None:
            raise LeaseError(f"lease of site {self.site!r}: renewed_at {self.renewed_at!r}")
        return (require_aware(now) - renewed).total_seconds()

    def stale(self, now: datetime, threshold: float) -> bool:
        """The site holds the lease but has not renewed it for longer than ``threshold``."""
        return self.held_by_site and self.age(now) > threshold

    def may_take_over(self, cloud: str, now: datetime, threshold: float) -> bool:
        """Whether ``cloud``'s watchdog may take the site over now."""
        return self.takeover_by == cloud and self.stale(now, threshold)

    @property
    def pending_takeover(self) -> TakeoverMark | None:
        """A takeover the site has not applied yet (None: nothing to apply)."""
        if self.takeover is None or self.held_by_site:
            return None
        return self.takeover if self.takeover.takeover_id != self.acknowledged else None

    # --- the next versions --------------------------------------------------------------

    @classmethod
    def first(
        cls, site: str, now: datetime, highest_epoch: int, takeover_by: str | None
    ) -> SiteLease:
        return cls(
            site=check_site_id(site),
            holder=SITE_HOLDER,
            term=1,
            renewed_at=format_timestamp(require_aware(now)),
            highest_epoch=highest_epoch,
            takeover_by=takeover_by,
        )

    def renewed(self, now: datetime, highest_epoch: int, takeover_by: str | None) -> SiteLease:
        """The site's renewal (only while it holds the lease)."""
        if not self.held_by_site:
            raise LeaseConflictError(
                f"site {self.site!r} was taken over by {self.holder}: apply the takeover first"
            )
        return replace(
            self,
            renewed_at=format_timestamp(require_aware(now)),
            highest_epoch=max(self.highest_epoch, highest_epoch),
            takeover_by=takeover_by,
        )

    def taken_over(self, cloud: str, now: datetime, takeover_id: str) -> SiteLease:
        """The watchdog's takeover: the cloud holds the site's instances from now on."""
        at = format_timestamp(require_aware(now))
        return replace(
            self,
            holder=cloud,
            term=self.term + 1,
            takeover=TakeoverMark(takeover_id, cloud, at),
        )

    def with_takeover(self, mark: TakeoverMark) -> SiteLease:
        return replace(self, takeover=mark)

    def reclaimed(self, now: datetime, highest_epoch: int, takeover_by: str | None) -> SiteLease:
        """The site, back, having applied the takeover: it holds the lease again."""
        acknowledged = self.takeover.takeover_id if self.takeover is not None else None
        return replace(
            self,
            holder=SITE_HOLDER,
            term=self.term + 1,
            renewed_at=format_timestamp(require_aware(now)),
            highest_epoch=max(self.highest_epoch, highest_epoch),
            takeover_by=takeover_by,
            acknowledged=acknowledged,
        )

    # --- the record ---------------------------------------------------------------------

    def document(self) -> dict[str, Any]:
        return {
            "kind": "rustyflower.site-lease",
            "site": self.site,
            "holder": self.holder,
            "term": self.term,
            "renewed_at": self.renewed_at,
            "highest_epoch": self.highest_epoch,
            "takeover_by": self.takeover_by,
            "takeover": None if self.takeover is None else self.takeover.document(),
            "acknowledged": self.acknowledged,
        }

    @classmethod
    def from_document(cls, value: Any) -> SiteLease:
        if not isinstance(value, dict) or value.get("kind") != "rustyflower.site-lease":
            raise LeaseError("not a RustyFlower site lease (kind rustyflower.site-lease)")
        try:
            lease = cls(
                site=str(value["site"]),
                holder=str(value["holder"]),
                term=int(value["term"]),
                renewed_at=str(value["renewed_at"]),
                highest_epoch=int(value.get("highest_epoch") or 0),
                takeover_by=None if value.get("takeover_by") is None else str(value["takeover_by"]),
                takeover=None
                if value.get("takeover") is None
                else TakeoverMark.from_document(value["takeover"]),
                acknowledged=None
                if value.get("acknowledged") is None
                else str(value["acknowledged"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise LeaseError(f"the site lease is incomplete: {error}") from None
        if parse_timestamp(lease.renewed_at) is None:
            raise LeaseError(f"the site lease's renewed_at is not a time: {lease.renewed_at!r}")
        return lease


@dataclass(frozen=True)
class VersionedLease:
    """A lease as read, with the version a conditional write must name."""

    lease: SiteLease
    version: str
    """Opaque: an ETag, a counter."""


class LeaseStore(Protocol):
    """Where one cloud keeps site leases (``adapters.aws.lifeboat``,
    ``adapters.azure.lifeboat``)."""

    cloud: str

    @property
    def where(self) -> str:
        """The table or container, for messages."""
        ...

    def read(self, site: str) -> VersionedLease | None:
        """The site's lease (None: the site never wrote one)."""
        ...

    def create(self, lease: SiteLease) -> VersionedLease:
        """Write the first lease; ``LeaseConflictError`` when one exists already."""
        ...

    def replace(self, lease: SiteLease, version: str) -> VersionedLease:
        """Replace the lease read at ``version``; ``LeaseConflictError`` when it changed."""
        ...
