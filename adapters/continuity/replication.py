"""Replication: every changed instance shipped to each cloud's replica store, lag measured.

The store notes changed instances (``core.lifeboat.feed``); for each target (``aws``,
``azure``) a round collects the notes into the target's backlog, takes the oldest
``batch`` entries noted at least ``settle`` seconds ago, reads those instances as stored
and ships them all as one *segment* (``core.lifeboat.segments``; several when their
snapshots pass ``segment_bytes``): a running instance's sealed snapshot, or a tombstone
for one that finished (nothing at all for one that never had a replica: the feed's
``present`` set). One request per round instead of one per instance: the cloud SDK's
CPU per request (2-4 ms) no longer caps how many instances a second can be shipped.
What was shipped leaves the backlog unless the instance changed meanwhile (then it goes
again). The settle time trades a little lag for fewer bytes: an instance that changes
several times (or starts and finishes) within it is shipped once (or never). Nothing
here is on the commit path: a cloud that is slow or unreachable only grows the backlog
(one entry per instance), and the next rounds catch up.

Every ``compact_every`` seconds a thread of its own folds the segments into the
per-instance replicas (conditional writes under ``put_decision``, side by side,
``parallel`` at once: a replica a cloud took over is ``fenced``, never overwritten) and
deletes them, so what a watchdog reads stays bounded.

The lag of a shipped instance is the time from its oldest change not yet shipped (the
store's clock) to the moment the cloud confirmed the write: the RPO it had. Each target
keeps the lags of the last minute (``LagWindow``: p50, p99, max) and the age of its
oldest backlog entry (the RPO now).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from rustyflower.core.errors import RustyFlowerError
from rustyflower.core.lifeboat.feed import Fetched, Pending, ReplicationFeed, Shipped
from rustyflower.core.lifeboat.replica import (
    CloudUnreachableError,
    PutOutcome,
    RemoveOutcome,
    ReplicaHeader,
    ReplicaStore,
    instance_name,
)
from rustyflower.core.lifeboat.segments import SegmentEntry, newest_entries, segment_written_ms
from rustyflower.core.snapshot import SnapshotKeys
from rustyflower.core.snapshot.document import decode_snapshot, encode_snapshot

__all__ = [
    "CompactionResult",
    "LagWindow",
    "Replicator",
    "RoundResult",
    "TargetStatus",
    "percentile",
]

log = logging.getLogger("rustyflower.replication")

DEFAULT_BATCH = 500
DEFAULT_PARALLEL = 4
"""Writes at once while compacting (and segments of one round): few, because every
thread competes for the interpreter with the shipping round, whose lag is the RPO."""
DEFAULT_SEGMENT_BYTES = 8 * 1024 * 1024
"""Snapshot bytes in one segment at most: a round with more writes several."""
DEFAULT_COMPACT_EVERY = 10.0
"""Seconds between two compactions, and the age of the segments they replace."""
DEFAULT_FOLD_AFTER = 60.0
"""Seconds an instance's change waits in segments before it goes into its own replica
(an instance that changes again meanwhile never needs that write)."""
DEFAULT_SETTLE = 0.2
"""Seconds a change waits before it is shipped: an instance that changes again (or
finishes) meanwhile goes once (or not at all), for at most this much more lag."""
LAG_WINDOW_SECONDS = 60.0


class LagWindow:
    """The lags (seconds) of the instances shipped in the last ``seconds``."""

    def __init__(self, seconds: float = LAG_WINDOW_SECONDS, limit: int = 200_000) -> None:
        self.seconds = seconds
        self._entries: deque[tuple[float, float]] = deque(maxlen=limit)
        self._lock = threading.Lock()

    def add(self, at: float, lag: float) -> None:
        with self._lock:
            self._entries.append((at, lag))

    def summary(self, now: float) -> dict[str, Any]:
        """``count``, ``p50``, ``p99`` and ``max`` (seconds; None when nothing was shipped)."""
        with self._lock:
            while self._entries and self._entries[0][0] < now - self.seconds:
                self._entries.popleft()
            lags = sorted(lag for _, lag in self._entries)
        if not lags:
            return {"count": 0, "p50": None, "p99": None, "max": None}
        return {
            "count": len(lags),
            "p50": round(_quantile(lags, 0.50), 4),
            "p99": round(_quantile(lags, 0.99), 4),
            "max": round(lags[-1], 4),
        }


def _quantile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank quantile of sorted values."""
    rank = max(1, int(-(-q * len(ordered) // 1)))  # ceil(q * n)
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class TargetStatus:
    """What one target's replication has done (thread-safe enough: written by its thread)."""

    target: str
    where: str
    shipped: int = 0
    removed: int = 0
    segments: int = 0
    compactions: int = 0
    last_compacted_at: float | None = None
    fenced: int = 0
    failures: int = 0
    rounds: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    failing_since: float | None = None
    last_shipped_at: float | None = None
    lags: LagWindow = field(default_factory=LagWindow)

    def document(self, now: float, backlog: int, oldest_age: float | None) -> dict[str, Any]:
        return {
            "where": self.where,
            "lag_seconds": round(oldest_age, 3) if oldest_age is not None else 0.0,
            "backlog": backlog,
            "window": {"seconds": self.lags.seconds, **self.lags.summary(now)},
            "shipped": self.shipped,
            "removed": self.removed,
            "segments": self.segments,
            "compactions": self.compactions,
            "last_compacted_at": self.last_compacted_at,
            "fenced": self.fenced,
            "failures": self.failures,
            "rounds": self.rounds,
            "reachable": self.failing_since is None,
            "failing_since": self.failing_since,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "last_shipped_at": self.last_shipped_at,
        }


@dataclass(frozen=True)
class RoundResult:
    """One round for one target: instances handled, failed, and shipped."""

    handled: int
    failed: int
    shipped: int


@dataclass(frozen=True)
class CompactionResult:
    """One compaction: old segments replaced (deleted), instances written to (or removed
    from) their own replicas, instances carried into a new segment, and old segments left
    (unreadable, or gone before they were read)."""

    segments: int
    folded: int
    carried: int
    left: int


def _older(name: str, cutoff_ms: int) -> bool:
    written = segment_written_ms(name)
    return written is not None and written <= cutoff_ms


def _fold(store: ReplicaStore, entry: SegmentEntry) -> PutOutcome | RemoveOutcome:
    if entry.data is None:
        return store.remove(entry.header)
    return store.put(entry.header, entry.data)


def _header_of(fetched: Fetched, instance_id: str) -> ReplicaHeader | None:
    found = fetched.instances[instance_id]
    return None if found is None else found.header


class Replicator:
    """Ships a site's changed instances to its replica stores (one thread per target)."""

    def __init__(
        self,
        feed: ReplicationFeed,
        targets: Mapping[str, ReplicaStore],
        keys: SnapshotKeys,
        *,
        batch: int = DEFAULT_BATCH,
        parallel: int = DEFAULT_PARALLEL,
        settle: float = DEFAULT_SETTLE,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        compact_every: float = DEFAULT_COMPACT_EVERY,
        fold_after: float = DEFAULT_FOLD_AFTER,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not targets:
            raise ValueError("replication needs at least one target (aws, azure)")
        if keys.active_signing_key is None:
            raise RustyFlowerError(
                "replication ships signed snapshots only: set RUSTYFLOWER_SIGNING_KEYS "
                "(`rustyflower keygen`), the same key the cloud's functions hold"
            )
        self.feed = feed
        self.targets = dict(targets)
        self.keys = keys
        self.batch = batch
        self.settle_ms = int(settle * 1000)
        self.segment_bytes = segment_bytes
        self.compact_every = compact_every
        self.compact_every_ms = int(compact_every * 1000)
        self.fold_after_ms = int(fold_after * 1000)
        self.clock = clock
        self.status = {
            name: TargetStatus(name, store.where) for name, store in self.targets.items()
        }
        self.highest_epoch = 0
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, parallel) * len(self.targets), thread_name_prefix="rf-replicate"
        )

    def enable(self) -> list[str]:
        """Switch the feed on for every target; the targets that got a first full sync."""
        return [target for target in self.targets if self.feed.enable(target)]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- one round -----------------------------------------------------------------------

    def ship_round(self, target: str) -> RoundResult:
        """Collect, ship the oldest part of ``target``'s backlog as segments, take off what went.

        Raises ``CloudUnreachableError`` when the round's segments could not be written
        (the caller backs off; the instances stay in the backlog).
        """
        status = self.status[target]
        store = self.targets[target]
        self.feed.collect(list(self.targets))
        ready = None if self.settle_ms <= 0 else self.feed.now_ms() - self.settle_ms
        pending = self.feed.pending(target, self.batch, ready)
        status.rounds += 1
        if not pending:
            return RoundResult(0, 0, 0)
        fetched = self.feed.fetch(target, [entry.instance_id for entry in pending])
        entries: list[SegmentEntry] = []
        absent: set[str] = set()
        for entry in pending:
            found = fetched.instances[entry.instance_id]
            if found is None or (
                found.header.finished and entry.instance_id not in fetched.present
            ):
                # gone (purged), or finished before it was ever shipped: nothing to say
                absent.add(entry.instance_id)
            elif found.header.finished:
                entries.append(SegmentEntry(found.header, None, fetched.read_ms))
                absent.add(entry.instance_id)
            else:
                self.highest_epoch = max(self.highest_epoch, found.header.epoch)
                entries.append(
                    SegmentEntry(found.header, self._signed(found.data), fetched.read_ms)
                )
        writes = [entry.header.instance_id for entry in entries if not entry.tombstone]
        if writes:
            self.feed.will_write(target, writes)  # before the writes: a crash keeps track
        try:
            self._write_segments(store, status, entries)
        except Exception as error:
            self._failed(status, error, len(pending), len(pending))
            if isinstance(error, CloudUnreachableError):
                raise
            raise CloudUnreachableError(f"{target}: {error}") from error
        status.failing_since = None
        done = [
            Shipped(
                entry,
                _header_of(fetched, entry.instance_id),
                fetched.read_ms,
                entry.instance_id in absent,
            )
            for entry in pending
        ]
        self.feed.shipped(target, done)
        self._measure(status, pending)
        return RoundResult(len(pending), 0, len(done))

    def _write_segments(
        self, store: ReplicaStore, status: TargetStatus | None, entries: Sequence[SegmentEntry]
    ) -> None:
        """The entries as segments of at most ``segment_bytes`` of snapshots, side by side."""
        if not entries:
            return
        chunks: list[list[SegmentEntry]] = [[]]
        size = 0
        for entry in entries:
            length = 0 if entry.data is None else len(entry.data)
            if chunks[-1] and size + length > self.segment_bytes:
                chunks.append([])
                size = 0
            chunks[-1].append(entry)
            size += length
        written_ms = self.feed.now_ms()
        for future in [self._pool.submit(store.put_segment, chunk, written_ms) for chunk in chunks]:
            future.result()
        if status is None:  # carried by a compaction: nothing new shipped
            return
        status.segments += len(chunks)
        status.shipped += sum(1 for entry in entries if not entry.tombstone)
        status.removed += sum(1 for entry in entries if entry.tombstone)

    # --- compaction ------------------------------------------------------------------------

    def compact(self, target: str, *, everything: bool = False) -> CompactionResult:
        """Replace ``target``'s segments older than ``compact_every`` by what they still say.

        Of each instance's newest entry in those segments: one a newer segment outranks is
        dropped; a tombstone removes the instance's own replica when it has one (else it is
        dropped); a change older than ``fold_after`` goes into the instance's own replica
        (the conditional ``put``: a replica a cloud took over is ``fenced``, never
        overwritten); a younger one is carried into a new segment, since the instance is
        likely to change again. So an instance that changes all the time costs segments
        only, and one that waits costs one write of its own. The old segments are deleted
        once every entry kept is written. ``everything``: every segment is old and every
        change goes to its instance's replica (nothing is carried).
        """
        status = self.status[target]
        store = self.targets[target]
        names = store.segment_names()
        now_ms = self.feed.now_ms()
        old_by, fold_by = (
            (now_ms + 1, now_ms + 1)
            if everything
            else (now_ms - self.compact_every_ms, now_ms - self.fold_after_ms)
        )
        old = [name for name in names if everything or _older(name, old_by)]
        if not old:
            return CompactionResult(0, 0, 0, 0)
        loaded = store.segment_entries(names)
        folding = [name for name in old if name in loaded]
        newer = newest_entries(
            entry for name in names if name in loaded and name not in old for entry in loaded[name]
        )
        bases = store.base_names()
        to_fold: list[SegmentEntry] = []
        to_carry: list[SegmentEntry] = []
        for instance_id, entry in newest_entries(
            entry for name in folding for entry in loaded[name]
        ).items():
            outranked = newer.get(instance_id)
            if outranked is not None and outranked.header.order >= entry.header.order:
                continue
            if entry.tombstone:
                if instance_name(store.site, instance_id) in bases:
                    to_fold.append(entry)
            elif entry.shipped_ms <= fold_by:
                to_fold.append(entry)
            else:
                to_carry.append(entry)
        errors: list[BaseException] = []
        futures = [self._pool.submit(_fold, store, entry) for entry in to_fold]
        try:
            self._write_segments(store, None, to_carry)
        except Exception as error:
            errors.append(error)
        for future in futures:
            try:
                outcome = future.result()
            except Exception as error:  # counted; the segments stay for the next compaction
                errors.append(error)
                continue
            if outcome == "fenced":
                status.fenced += 1
        if errors:
            self._failed(status, errors[0], len(errors), len(futures) + 1)
            first = errors[0]
            if isinstance(first, CloudUnreachableError):
                raise first
            raise CloudUnreachableError(f"{target}: compaction: {first}") from first
        store.delete_segments(folding)
        status.compactions += 1
        status.last_compacted_at = self.clock()
        return CompactionResult(len(folding), len(to_fold), len(to_carry), len(old) - len(folding))

    def _signed(self, data: bytes) -> bytes:
        """The stored snapshot as it is when signed; re-sealed with the site's keys when it
        was written before signing was switched on."""
        try:
            document = json.loads(data)
        except ValueError:
            return data  # the cloud refuses it with a clear error; nothing to fix here
        if isinstance(document, dict) and "signature" in document:
            return data
        return encode_snapshot(decode_snapshot(data, self.keys), self.keys)

    def _measure(self, status: TargetStatus, shipped: Sequence[Pending]) -> None:
        """Each shipped instance's lag: from its oldest change not shipped before to now,
        when the cloud has confirmed it (an instance that changed again meanwhile stays in
        the backlog, counted from when it was read)."""
        if not shipped:
            return
        now = self.clock()
        store_now_ms = self.feed.now_ms()
        for entry in shipped:
            status.lags.add(now, max(0.0, (store_now_ms - entry.since_ms) / 1000.0))
        status.last_shipped_at = now

    def _failed(self, status: TargetStatus, error: BaseException, count: int, of: int) -> None:
        now = self.clock()
        status.failures += count
        status.last_error = f"{type(error).__name__}: {error}"[:500]
        status.last_error_at = now
        status.failing_since = status.failing_since or now
        log.warning(
            "replication to %s: %d of %d instance(s) not shipped (%s); they stay in the backlog",
            status.target,
            count,
            of,
            status.last_error,
        )

    # --- the status ------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        """Per target: lag now (the oldest backlog entry's age), backlog, the last minute's
        lags, counters and errors."""
        now = self.clock()
        now_ms = self.feed.now_ms()
        found: dict[str, Any] = {}
        for name, status in self.status.items():
            backlog = self.feed.backlog(name)
            oldest = (
                None if backlog.oldest_ms is None else max(0.0, (now_ms - backlog.oldest_ms) / 1000)
            )
            found[name] = status.document(now, backlog.instances, oldest)
        return found

    # --- the loop --------------------------------------------------------------------------

    def run(self, target: str, stop: threading.Event, idle: float = 0.05) -> None:
        """Ship ``target``'s backlog until ``stop``; back off while the cloud is unreachable."""
        failures = 0
        while not stop.is_set():
            try:
                result = self.ship_round(target)
            except RustyFlowerError as error:
                failures += 1
                wait = min(30.0, 0.5 * 2 ** min(failures - 1, 6))
                log.warning("replication to %s: %s; retrying in %.1f s", target, error, wait)
                stop.wait(wait)
                continue
            except Exception:
                failures += 1
                log.exception("replication to %s: round failed; retrying", target)
                stop.wait(min(30.0, 0.5 * 2 ** min(failures - 1, 6)))
                continue
            failures = 0
            if result.handled < self.batch:
                stop.wait(idle)

    def run_compaction(self, target: str, stop: threading.Event) -> None:
        """Compact ``target`` every ``compact_every`` seconds until ``stop`` (a thread of its
        own: folding hundreds of instances must not hold up the next round's segment)."""
        while not stop.wait(self.compact_every):
            try:
                self.compact(target)
            except RustyFlowerError as error:
                log.warning("compaction of %s: %s; the segments stay", target, error)
            except Exception:
                log.exception("compaction of %s failed; the segments stay", target)


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank quantile of ``values`` (for reports and benches)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    return _quantile(ordered, q)
