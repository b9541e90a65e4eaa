"""The watchdog's procedure, the same in every cloud (the deployables wire it up).

A scheduled run (``lambda_aws/watchdog.py`` every minute; ``functions_azure``'s timer):

1. ``check``: read the site lease. Fresh, held by the site: nothing to do. Stale (not
   renewed for longer than the threshold) and naming this cloud as the site's lifeboat:
   take it over. Taken over by this cloud already, the takeover incomplete and older than
   ``resume_after`` (its run died): finish it.
2. ``begin``: the conditional write of the takeover (holder = this cloud, term + 1): of
   two watchdogs racing (or a watchdog and the site renewing), exactly one write wins;
   the loser stops here.
3. For each replicated in-flight instance (``core.lifeboat.takeover.choose``: owned by
   the site, or claimed by an earlier run of this takeover), opened with the cloud's keys
   and grouped with its child flows (``group``), the deployable continues the group at
   epoch + 1 (``Takeover.sealed``: the snapshots re-sealed at that epoch) and reports the
   outcome (``continued`` / ``failed``). A continued instance's replica is then written
   at the new epoch, owned by the cloud (the *claim*): the site's replicator can no
   longer overwrite it, and a repeated run continues it again at the same epoch, which
   the cloud answers with the existing run (idempotent).
4. ``finish``: the report (instances, the seq each continues from, the epoch, where it
   runs) next to the replicas, and the lease marked complete with it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from rustyflower.core.errors import RustyFlowerError
from rustyflower.core.lifeboat.lease import (
    LeaseConflictError,
    LeaseStore,
    TakeoverMark,
    VersionedLease,
    check_site_id,
)
from rustyflower.core.lifeboat.replica import ReplicaHeader, ReplicaStore
from rustyflower.core.lifeboat.takeover import (
    Candidate,
    TakenInstance,
    TakeoverGroup,
    TakeoverReport,
    choose,
    group,
    takeover_epoch,
    takeover_id,
)
from rustyflower.core.snapshot import SnapshotKeys
from rustyflower.core.snapshot.document import decode_snapshot, encode_snapshot
from rustyflower.core.timeutil import format_timestamp, parse_timestamp

__all__ = [
    "Continued",
    "Takeover",
    "Verdict",
    "Watchdog",
    "WatchdogSettings",
    "run_takeover",
]

log = logging.getLogger("rustyflower.watchdog")

DEFAULT_THRESHOLD = 300.0
DEFAULT_RESUME_AFTER = 900.0
"""A takeover left incomplete this long is finished by the next run: longer than a Lambda
(15 min at most) or an Azure Function (10 min on Consumption) can run, so two runs never
continue the same takeover at once."""

VerdictKind = Literal["no-lease", "fresh", "not-ours", "taken", "stale", "resume"]


@dataclass(frozen=True)
class WatchdogSettings:
    site: str
    cloud: str
    threshold: float = DEFAULT_THRESHOLD
    """Seconds without a renewal after which the site counts as gone."""
    resume_after: float = DEFAULT_RESUME_AFTER
    parallel: int = 8
    """Replicas read at once."""

    def __post_init__(self) -> None:
        check_site_id(self.site)
        if self.threshold <= 0:
            raise ValueError("the takeover threshold must be above zero seconds")


@dataclass(frozen=True)
class Verdict:
    """What ``check`` found."""

    kind: VerdictKind
    detail: str
    lease: VersionedLease | None = None
    age: float | None = None

    def document(self) -> dict[str, object]:
        lease = self.lease.lease if self.lease is not None else None
        return {
            "verdict": self.kind,
            "detail": self.detail,
            "age_seconds": None if self.age is None else round(self.age, 1),
            "holder": None if lease is None else lease.holder,
            "term": None if lease is None else lease.term,
            "renewed_at": None if lease is None else lease.renewed_at,
        }


@dataclass(frozen=True)
class Continued:
    """Where a group runs in the cloud (``existing``: a repeated continuation)."""

    where: str
    result: Literal["started", "existing"]
    children: dict[str, str] = field(default_factory=dict)
    """Child instance id -> where it runs (an execution ARN; Azure: the orchestration)."""


class Watchdog:
    def __init__(
        self,
        settings: WatchdogSettings,
        leases: LeaseStore,
        replicas: ReplicaStore,
        keys: SnapshotKeys,
        now: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.leases = leases
        self.replicas = replicas
        self.keys = keys
        self.now = now

    def check(self) -> Verdict:
        settings = self.settings
        found = self.leases.read(settings.site)
        if found is None:
            return Verdict("no-lease", f"site {settings.site!r} has never written a lease here")
        lease = found.lease
        now = self.now()
        age = lease.age(now)
        if not lease.held_by_site:
            mark = lease.takeover
            if lease.holder == settings.cloud and mark is not None and not mark.complete:
                started = parse_timestamp(mark.at)
                if started is not None and now - started > timedelta(seconds=settings.resume_after):
                    return Verdict("resume", f"finishing takeover {mark.takeover_id}", found, age)
            return Verdict("taken", f"held by {lease.holder} since term {lease.term}", found, age)
        if lease.takeover_by != settings.cloud:
            stale = "stale" if lease.stale(now, settings.threshold) else "fresh"
            return Verdict(
                "not-ours",
                f"the lease is {stale} ({age:.0f} s) but the site's lifeboat is "
                f"{lease.takeover_by or 'no cloud'}, not {settings.cloud}",
                found,
                age,
            )
        if not lease.stale(now, settings.threshold):
            return Verdict("fresh", f"renewed {age:.0f} s ago", found, age)
        return Verdict(
            "stale", f"not renewed for {age:.0f} s (threshold {settings.threshold:g} s)", found, age
        )

    def begin(self, verdict: Verdict) -> Takeover | None:
        """Take the lease over (or pick up an unfinished takeover); None: nothing to do, or
        another writer won the conditional write."""
        if verdict.kind not in ("stale", "resume") or verdict.lease is None:
            return None
        found = verdict.lease
        lease = found.lease
        now = self.now()
        if verdict.kind == "stale":
            at = format_timestamp(now)
            taken = lease.taken_over(
                self.settings.cloud, now, takeover_id(self.settings.cloud, lease.term + 1, at)
            )
            try:
                found = self.leases.replace(taken, found.version)
            except LeaseConflictError:
                log.info("site %s: another writer changed the lease first", lease.site)
                return None
            lease = found.lease
        assert lease.takeover is not None
        report = TakeoverReport(
            site=lease.site,
            cloud=self.settings.cloud,
            takeover_id=lease.takeover.takeover_id,
            started_at=format_timestamp(now),
            lease_renewed_at=lease.renewed_at,
            threshold_seconds=self.settings.threshold,
        )
        return Takeover(self, found, report)


class Takeover:
    """One takeover in progress: its groups, their outcomes, the report."""

    def __init__(self, watchdog: Watchdog, lease: VersionedLease, report: TakeoverReport) -> None:
        self.watchdog = watchdog
        self.lease = lease
        self.report = report
        self.groups, orphans = self._plan()
        for orphan in orphans:
            self._note(orphan, "skipped", error="its parent flow has no replica")

    @property
    def cloud(self) -> str:
        return self.watchdog.settings.cloud

    def _plan(self) -> tuple[list[TakeoverGroup], list[Candidate]]:
        replicas = self.watchdog.replicas
        chosen, left = choose(replicas.headers(), self.cloud)
        for header, reason in left:
            self.report.instances.append(
                TakenInstance(header.instance_id, "skipped", flow=header.flow, error=reason)
            )
        with ThreadPoolExecutor(max_workers=self.watchdog.settings.parallel) as pool:
            opened = list(pool.map(self._open, chosen))
        return group([candidate for candidate in opened if candidate is not None])

    def _open(self, header: ReplicaHeader) -> Candidate | None:
        try:
            replica = self.watchdog.replicas.read(header.instance_id)
            if replica is None:
                return None  # finished and removed since the listing
            epoch = takeover_epoch(replica.header, self.cloud)
            if epoch is None or replica.header.finished:
                return None
            snapshot = decode_snapshot(replica.data, self.watchdog.keys)
        except RustyFlowerError as error:
            self.report.instances.append(
                TakenInstance(
                    header.instance_id,
                    "failed",
                    flow=header.flow,
                    error=f"{type(error).__name__}: {error}",
                )
            )
            return None
        return Candidate(replica.header, replace(snapshot, epoch=epoch))

    def sealed(self, taken: TakeoverGroup) -> tuple[bytes, tuple[bytes, ...]]:
        """The group's snapshots sealed at their takeover epochs with the cloud's keys."""
        keys = self.watchdog.keys
        return (
            encode_snapshot(taken.root.snapshot, keys),
            tuple(encode_snapshot(child.snapshot, keys) for child in taken.children),
        )

    def continued(self, taken: TakeoverGroup, outcome: Continued) -> None:
        """The cloud runs the group now: claim its replicas, report them."""
        root_data, children_data = self.sealed(taken)
        members = [(taken.root, root_data), *zip(taken.children, children_data, strict=True)]
        running_since = format_timestamp(self.watchdog.now())
        for candidate, data in members:
            snapshot = candidate.snapshot
            header = replace(candidate.header, epoch=snapshot.epoch, owner=self.cloud)
            claim = self.watchdog.replicas.put(header, data)
            where = (
                outcome.where
                if candidate is taken.root
                else outcome.children.get(candidate.instance_id, outcome.where)
            )
            self._note(
                candidate,
                outcome.result,
                where=where,
                error=None if claim != "fenced" else "a newer epoch holds its replica",
                continued_at=running_since,
            )

    def failed(self, taken: TakeoverGroup, error: BaseException) -> None:
        """The cloud refused the group: it stays the site's (nothing is claimed)."""
        text = f"{type(error).__name__}: {error}"
        for candidate in (taken.root, *taken.children):
            self._note(candidate, "failed", error=text[:500])

    def _note(
        self,
        candidate: Candidate,
        result: Literal["started", "existing", "failed", "skipped"],
        *,
        where: str | None = None,
        error: str | None = None,
        continued_at: str | None = None,
    ) -> None:
        snapshot = candidate.snapshot
        parent = snapshot.state.parent
        self.report.instances.append(
            TakenInstance(
                candidate.instance_id,
                result,
                flow=snapshot.definition.key,
                epoch=snapshot.epoch,
                from_seq=snapshot.seq,
                where=where,
                parent=None if parent is None else parent.instance_id,
                error=error,
                continued_at=continued_at,
            )
        )

    def finish(self) -> TakeoverReport:
        """Write the report and mark the takeover complete in the lease."""
        watchdog = self.watchdog
        report = self.report
        report.finished_at = format_timestamp(watchdog.now())
        report.instances.sort(key=lambda one: one.instance_id)
        name = watchdog.replicas.write_report(report.takeover_id, report.encode())
        lease = self.lease
        for _ in range(5):
            mark = lease.lease.takeover
            assert mark is not None
            complete = TakeoverMark(
                mark.takeover_id, mark.cloud, mark.at, True, name, len(report.taken)
            )
            try:
                watchdog.leases.replace(lease.lease.with_takeover(complete), lease.version)
                break
            except LeaseConflictError:
                again = watchdog.leases.read(report.site)
                if again is None or again.lease.takeover is None:
                    break
                if (
                    again.lease.takeover.takeover_id != mark.takeover_id
                    or again.lease.takeover.complete
                ):
                    break  # another run finished it (or the site moved on)
                lease = again
        return report


def run_takeover(
    takeover: Takeover,
    continue_group: Callable[[TakeoverGroup, Takeover], Continued],
    *,
    concurrency: int = 1,
) -> TakeoverReport:
    """Continue every group with ``continue_group`` (one cloud's way), then finish.

    With ``concurrency`` > 1 that many groups are continued at once (each is a round trip
    to the cloud: the last instance's recovery waits for all before it otherwise); what
    each outcome claims and reports is still done one at a time, here.
    """
    if concurrency <= 1 or len(takeover.groups) <= 1:
        for taken in takeover.groups:
            _settle(takeover, taken, functools.partial(continue_group, taken, takeover))
        return takeover.finish()
    with ThreadPoolExecutor(concurrency, thread_name_prefix="takeover") as pool:
        running = {pool.submit(continue_group, taken, takeover): taken for taken in takeover.groups}
        for done in as_completed(running):
            _settle(takeover, running[done], done.result)
    return takeover.finish()


def _settle(takeover: Takeover, taken: TakeoverGroup, outcome: Callable[[], Continued]) -> None:
    try:
        continued = outcome()
    except Exception as error:  # one group's refusal must not stop the others
        log.exception("takeover: %s could not be continued", taken.root.instance_id)
        takeover.failed(taken, error)
    else:
        takeover.continued(taken, continued)
