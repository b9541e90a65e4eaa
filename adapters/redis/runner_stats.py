"""The runner's numbers at one moment: what the commits counted, and how full the queues are.

Read straight from Redis, so every process (an API server, a CLI) sees the same figures
whichever worker did the work: the counters and histograms ``observing`` keeps, the work
streams' backlog, the timers, the dead letters and the workers' heartbeats. Nothing
here is kept in the reading process, so a restarted API server loses no count.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from rustyflower.adapters.redis.fleet import fleet_report
from rustyflower.adapters.redis.keys import CONSUMER_GROUP, PRIORITIES, Keyspace
from rustyflower.adapters.redis.observing import DURATION_BUCKETS

STATUSES = ("running", "succeeded", "failed", "cancelled")
WORKER_ALIVE_SECONDS = 15.0
"""A worker whose last heartbeat is older than this is counted as gone (it beats every
5 s by default: three missed beats)."""


@dataclass(frozen=True)
class Histogram:
    """Counts per bucket (not cumulative; the last one is above every bound) and the sum."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total_seconds: float

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it), ending with (+inf, count)."""
        running = 0
        found: list[tuple[float, int]] = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            found.append((bound, running))
        return found


@dataclass(frozen=True)
class ThreadReport:
    """One worker thread's health as its heartbeat says (``adapters.redis.health``)."""

    healthy: bool
    """Alive and not failing (a failing thread has failed every round since its last success)."""
    restarts: int
    failures: int
    consecutive_failures: int


@dataclass(frozen=True)
class ReplicationTarget:
    """Replication to one cloud (``adapters.continuity.replication``'s report)."""

    lag_seconds: float
    """The RPO now: age of the oldest change the cloud has not confirmed (0: none waits)."""
    backlog: int
    """Instances with a change waiting to be shipped."""
    write_lag_seconds: Mapping[str, float]
    """``p50``/``p99``/``max`` of the lags of the writes of the last minute (commit to the
    cloud's answer); empty when nothing was shipped in that minute."""
    reachable: bool
    shipped: int
    failures: int


@dataclass(frozen=True)
class ReplicationStats:
    """The leading replicator's report (the ``<prefix>:lifeboat:status`` key)."""

    site: str
    targets: Mapping[str, ReplicationTarget]
    """cloud -> its replication."""
    leases: Mapping[str, str]
    """cloud -> the site lease's state there: ``held``, ``waiting``, ``unreachable``..."""


@dataclass(frozen=True)
class RunnerStats:
    """Every figure the metrics endpoint exposes (``rustyflower.client.Client.stats``)."""

    started: Mapping[str, int]
    """flow -> instances started (since the store began counting)."""
    finished: Mapping[tuple[str, str], int]
    """(flow, status) -> instances finished."""
    steps: Mapping[tuple[str, str, str], int]
    """(flow, step, outcome) -> step attempts finished (``core.observations``)."""
    step_durations: Mapping[tuple[str, str], Histogram]
    flow_durations: Mapping[str, Histogram]
    instances: Mapping[str, int]
    """status -> instances in the store now."""
    queue_waiting: Mapping[str, int]
    """priority -> work not yet taken by any worker."""
    queue_in_progress: Mapping[str, int]
    """priority -> work taken by a worker and not yet acknowledged."""
    deferred: int
    """Work parked by a concurrency or rate limit."""
    timers_scheduled: int
    timers_overdue: int
    oldest_overdue_seconds: float
    """How late the most overdue timer is (0 when none is)."""
    dead_letters: int
    worker_heartbeat_ages: Mapping[str, float] = field(default_factory=dict)
    """worker name -> seconds since its last heartbeat (a worker's heartbeat key expires
    three beats after it stops, so only live or just-stopped workers appear)."""
    worker_threads: Mapping[tuple[str, str], ThreadReport] = field(default_factory=dict)
    """(worker, thread) -> that thread's health, from the worker's heartbeat."""
    replication: ReplicationStats | None = None
    """The lifeboat's replication and site lease, as its leading replicator last reported
    them; None when no replicator has reported in the last seconds (none runs, or it died)."""

    @property
    def workers_alive(self) -> int:
        return sum(1 for age in self.worker_heartbeat_ages.values() if age <= WORKER_ALIVE_SECONDS)


def read_stats(client: redis.Redis, keys: Keyspace, now: float | None = None) -> RunnerStats:
    """The figures of every shard, summed."""
    moment = time.time() if now is None else now
    counters: dict[str, float] = defaultdict(float)
    pipe = client.pipeline(transaction=False)
    for shard in range(keys.shards):
        pipe.hgetall(keys.stats(shard))
        for status in STATUSES:
            pipe.scard(keys.status_index(shard, status))
        pipe.zcard(keys.timers(shard))
        pipe.zcount(keys.timers(shard), "-inf", int(moment * 1000))
        pipe.zrange(keys.timers(shard), 0, 0, withscores=True)
        pipe.zcard(keys.deferred(shard))
        pipe.exists(keys.dead_letters(shard))
    replies = iter(pipe.execute())
    instances: dict[str, int] = dict.fromkeys(STATUSES, 0)
    timers = overdue = deferred = 0
    oldest_due: float | None = None
    dead_shards: list[int] = []
    for shard in range(keys.shards):
        for name, value in next(replies).items():
            counters[_text(name)] += float(value)
        for status in STATUSES:
            instances[status] += int(next(replies))
        timers += int(next(replies))
        overdue += int(next(replies))
        first = next(replies)
        if first:
            due = float(first[0][1]) / 1000
            oldest_due = due if oldest_due is None else min(oldest_due, due)
        deferred += int(next(replies))
        if next(replies):
            dead_shards.append(shard)
    workers = fleet_report(client, keys)["workers"]
    waiting, in_progress = _queues(client, keys)
    started, finished, steps, step_durations, flow_durations = _series(counters)
    return RunnerStats(
        started=started,
        finished=finished,
        steps=steps,
        step_durations=step_durations,
        flow_durations=flow_durations,
        instances=instances,
        queue_waiting=waiting,
        queue_in_progress=in_progress,
        deferred=deferred,
        timers_scheduled=timers,
        timers_overdue=overdue,
        oldest_overdue_seconds=max(0.0, moment - oldest_due)
        if oldest_due is not None and overdue
        else 0.0,
        dead_letters=sum(int(client.xlen(keys.dead_letters(shard))) for shard in dead_shards),
        worker_heartbeat_ages={
            str(worker["name"]): max(0.0, moment - float(worker.get("at") or 0.0))
            for worker in workers
        },
        worker_threads=_threads_of(workers),
        replication=replication_stats(client.get(keys.lifeboat_status())),
    )


def replication_stats(raw: bytes | str | None) -> ReplicationStats | None:
    """The replicator's JSON status, typed; a document that is not one reads as absent
    (the figures must not take the whole scrape down)."""
    if raw is None:
        return None
    try:
        document = json.loads(raw)
        targets = {
            str(cloud): ReplicationTarget(
                lag_seconds=float(found.get("lag_seconds") or 0.0),
                backlog=int(found.get("backlog") or 0),
                write_lag_seconds={
                    quantile: float(value)
                    for quantile, value in (found.get("window") or {}).items()
                    if quantile in ("p50", "p99", "max") and value is not None
                },
                reachable=bool(found.get("reachable", True)),
                shipped=int(found.get("shipped") or 0),
                failures=int(found.get("failures") or 0),
            )
            for cloud, found in (document.get("targets") or {}).items()
        }
        leases = {
            str(cloud): str(found.get("state") or "unknown")
            for cloud, found in (document.get("leases") or {}).items()
        }
        return ReplicationStats(
            site=str(document.get("site") or ""), targets=targets, leases=leases
        )
    except (ValueError, TypeError, AttributeError):
        return None


def _threads_of(workers: list[dict[str, Any]]) -> dict[tuple[str, str], ThreadReport]:
    found: dict[tuple[str, str], ThreadReport] = {}
    for worker in workers:
        for name, thread in (worker.get("threads") or {}).items():
            found[(str(worker["name"]), str(name))] = ThreadReport(
                healthy=bool(thread.get("alive", True)) and thread.get("failing_since") is None,
                restarts=int(thread.get("restarts") or 0),
                failures=int(thread.get("failures") or 0),
                consecutive_failures=int(thread.get("consecutive_failures") or 0),
            )
    return found


def _queues(client: redis.Redis, keys: Keyspace) -> tuple[dict[str, int], dict[str, int]]:
    """Per priority: entries no consumer has read yet (the group's lag), and entries read
    and not yet acknowledged (pending)."""
    waiting: dict[str, int] = dict.fromkeys(PRIORITIES, 0)
    in_progress: dict[str, int] = dict.fromkeys(PRIORITIES, 0)
    for shard in range(keys.shards):
        for priority in PRIORITIES:
            stream = keys.stream(shard, priority)
            try:
                groups: Any = client.xinfo_groups(stream)
            except redis.ResponseError:  # no such stream yet: nothing was ever queued
                continue
            ours = [g for g in groups if _text(g.get("name", b"")) == CONSUMER_GROUP]
            if not ours:  # no worker has ever read it: everything in it waits
                waiting[priority] += int(client.xlen(stream))
            for group in ours:
                in_progress[priority] += int(group.get("pending") or 0)
                lag = group.get("lag")
                if lag is None:  # the server cannot tell (entries deleted): count them
                    last = _text(group.get("last-delivered-id") or "0-0")
                    undelivered: Any = client.xrange(stream, min=f"({last}", max="+")
                    lag = len(undelivered)
                waiting[priority] += int(lag)
    return waiting, in_progress


def _series(
    counters: Mapping[str, float],
) -> tuple[
    dict[str, int],
    dict[tuple[str, str], int],
    dict[tuple[str, str, str], int],
    dict[tuple[str, str], Histogram],
    dict[str, Histogram],
]:
    started: dict[str, int] = {}
    finished: dict[tuple[str, str], int] = {}
    steps: dict[tuple[str, str, str], int] = {}
    step_buckets: dict[tuple[str, str], list[int]] = {}
    step_sums: dict[tuple[str, str], float] = defaultdict(float)
    flow_buckets: dict[str, list[int]] = {}
    flow_sums: dict[str, float] = defaultdict(float)
    width = len(DURATION_BUCKETS) + 1
    for name, value in counters.items():
        try:
            parts = json.loads(name)
        except ValueError:
            continue  # not ours: the hash holds only JSON-named fields
        if not isinstance(parts, list) or not parts:
            continue
        kind, rest = parts[0], parts[1:]
        if kind == "started" and len(rest) == 1:
            started[rest[0]] = int(value)
        elif kind == "finished" and len(rest) == 2:
            finished[(rest[0], rest[1])] = int(value)
        elif kind == "step" and len(rest) == 3:
            steps[(rest[0], rest[1], rest[2])] = int(value)
        elif kind == "step_bucket" and len(rest) == 3 and 0 <= int(rest[2]) < width:
            step_buckets.setdefault((rest[0], rest[1]), [0] * width)[int(rest[2])] += int(value)
        elif kind == "step_seconds" and len(rest) == 2:
            step_sums[(rest[0], rest[1])] += value
        elif kind == "flow_bucket" and len(rest) == 2 and 0 <= int(rest[1]) < width:
            flow_buckets.setdefault(rest[0], [0] * width)[int(rest[1])] += int(value)
        elif kind == "flow_seconds" and len(rest) == 1:
            flow_sums[rest[0]] += value
    step_durations = {
        key: Histogram(DURATION_BUCKETS, tuple(counts), step_sums[key])
        for key, counts in sorted(step_buckets.items())
    }
    flow_durations = {
        flow: Histogram(DURATION_BUCKETS, tuple(counts), flow_sums[flow])
        for flow, counts in sorted(flow_buckets.items())
    }
    return started, finished, steps, step_durations, flow_durations


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
