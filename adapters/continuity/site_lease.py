"""The site's side of the lease: renew it in every cloud, apply a takeover found there.

Each renewal reads the lease and writes the next version conditionally (the version
read): a watchdog that took the site over meanwhile makes the write fail, and the next
read shows the takeover. Then, before it goes on, the site applies the takeover
(``comeback.apply_takeover``) and reclaims the lease (holder = the site, term + 1,
``acknowledged`` = that takeover): the instances the cloud took live there from then on,
every other instance goes on here. A takeover still in progress (no report yet) is
waited for: nothing is renewed or applied until the watchdog has finished it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rustyflower.adapters.continuity.comeback import AppliedTakeover, apply_takeover
from rustyflower.core.errors import RustyFlowerError
from rustyflower.core.instance_store import InstanceStore
from rustyflower.core.lifeboat.lease import (
    LeaseConflictError,
    LeaseStore,
    SiteLease,
    check_site_id,
)
from rustyflower.core.lifeboat.replica import ReplicaStore
from rustyflower.core.snapshot import SnapshotKeys

__all__ = ["CloudLink", "LeaseState", "SiteLeaseKeeper", "utc_now"]

log = logging.getLogger("rustyflower.lifeboat")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CloudLink:
    """What the site reaches in one cloud: its replicas and its lease."""

    replicas: ReplicaStore
    lease: LeaseStore


@dataclass
class LeaseState:
    """The site's lease in one cloud, as the last renewal saw it."""

    cloud: str
    where: str
    state: str = "unknown"
    """``held`` (renewed), ``waiting`` (a takeover in progress), ``unreachable``."""
    term: int | None = None
    renewed_at: str | None = None
    takeover_by: str | None = None
    last_error: str | None = None
    applied: list[AppliedTakeover] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        return {
            "where": self.where,
            "state": self.state,
            "term": self.term,
            "renewed_at": self.renewed_at,
            "takeover_by": self.takeover_by,
            "last_error": self.last_error,
            "takeovers_applied": [
                {
                    "takeover": one.takeover_id,
                    "adopted": len(one.adopted),
                    "unchanged": len(one.unchanged),
                    "problems": one.problems[:20],
                }
                for one in self.applied
            ],
        }


class SiteLeaseKeeper:
    """Renews one site's lease in each cloud and applies the takeovers it finds."""

    def __init__(
        self,
        site: str,
        clouds: Mapping[str, CloudLink],
        store: InstanceStore,
        keys: SnapshotKeys,
        *,
        takeover_by: str | None,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        if takeover_by is not None and takeover_by not in clouds:
            raise ValueError(f"the takeover cloud {takeover_by!r} is not one the site reaches")
        self.site = check_site_id(site)
        self.clouds = dict(clouds)
        self.store = store
        self.keys = keys
        self.takeover_by = takeover_by
        self.now = now
        self.states = {
            cloud: LeaseState(cloud, link.lease.where) for cloud, link in self.clouds.items()
        }

    def renew(self, cloud: str, highest_epoch: int = 0) -> LeaseState:
        """One renewal in ``cloud`` (applying a takeover first when one is there)."""
        state = self.states[cloud]
        try:
            lease = self._renew(cloud, highest_epoch)
        except RustyFlowerError as error:
            state.state = "waiting" if isinstance(error, _InProgress) else "unreachable"
            state.last_error = str(error)
            return state
        state.state = "held"
        state.last_error = None
        state.term = lease.term
        state.renewed_at = lease.renewed_at
        state.takeover_by = lease.takeover_by
        return state

    def _renew(self, cloud: str, highest_epoch: int) -> SiteLease:
        leases = self.clouds[cloud].lease
        for _ in range(5):  # a conflict means someone wrote in between: read it again
            found = leases.read(self.site)
            try:
                if found is None:
                    lease = SiteLease.first(self.site, self.now(), highest_epoch, self.takeover_by)
                    return leases.create(lease).lease
                current = found.lease
                if current.held_by_site:
                    renewed = current.renewed(self.now(), highest_epoch, self.takeover_by)
                    return leases.replace(renewed, found.version).lease
                mark = current.pending_takeover
                if mark is not None:
                    if not mark.complete:
                        raise _InProgress(
                            f"{cloud} is taking the site over ({mark.takeover_id}, since "
                            f"{mark.at}): waiting for its report before anything runs here"
                        )
                    applied = apply_takeover(
                        self.store, self.clouds[cloud].replicas, mark, self.keys, self.now
                    )
                    self.states[cloud].applied.append(applied)
                    log.warning(
                        "site %s was taken over by %s (%s): %d instance(s) live there now%s",
                        self.site,
                        cloud,
                        mark.takeover_id,
                        len(applied.adopted) + len(applied.unchanged),
                        f"; problems: {applied.problems}" if applied.problems else "",
                    )
                reclaimed = current.reclaimed(self.now(), highest_epoch, self.takeover_by)
                return leases.replace(reclaimed, found.version).lease
            except LeaseConflictError:
                continue
        raise RustyFlowerError(f"the site lease in {cloud} kept changing while renewing it")

    def report(self) -> dict[str, Any]:
        return {cloud: state.document() for cloud, state in self.states.items()}


class _InProgress(RustyFlowerError):
    """A takeover has begun and has no report yet."""
