"""The time indexes of a shard: instances by start time (listings) and by finish time (retention).

Every commit keeps both (``index_operations``, applied by the commit script): an instance
enters the start-time index when it is created, the finish-time index when it finishes,
and leaves the latter when a retry revives it. Instances written before these indexes
existed are added once per shard (``ensure_built``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import redis

from rustyflower.adapters.redis import scripts
from rustyflower.adapters.redis.keys import Keyspace
from rustyflower.core.engine import FINISHED, Snapshot
from rustyflower.core.timeutil import parse_timestamp

STATUSES = ("running", "succeeded", "failed", "cancelled")
SMALL_FILTER = 5000
"""A status or flow with at most this many instances (in a shard) is listed from its set."""
PAGE = 500

# positions of the two indexes in the commit script's KEYS (store.RedisStore.prepare)
STARTED_KEY = 10
FINISHED_KEY = 11


def index_operations(previous: Snapshot | None, snapshot: Snapshot) -> list[str | bytes | int]:
    """The commit script's ops that keep both indexes for one transition."""
    ops: list[str | bytes | int] = []
    if previous is None:  # created, or resumed here for the first time: keep the first time
        ops += ["n", STARTED_KEY, millis_of(snapshot.updated_at)]
    if snapshot.finished:
        ops += ["s", FINISHED_KEY, millis_of(snapshot.state.finished_at or snapshot.updated_at)]
    elif previous is not None and previous.finished:  # retried after it failed
        ops += ["d", FINISHED_KEY]
    return ops


class TimeIndexes:
    """Reads and maintains the start-time and finish-time indexes of every shard."""

    def __init__(self, client: redis.Redis, keys: Keyspace) -> None:
        self.client = client
        self.keys = keys
        self._purge = client.register_script(scripts.PURGE_FINISHED)
        self._built = False

    # --- listing ----------------------------------------------------------------------------

    def newest(
        self,
        status: str | None,
        flow: str | None,
        held: bool | None,
        limit: int,
        before: tuple[float, str] | None = None,
    ) -> list[tuple[float, str]]:
        """Up to ``limit`` matching instances as (start time in ms, id), latest started
        first over all shards; ``before``: only those that sort after this pair (a page's
        last row), so each page reads its own rows, not every candidate."""
        self.ensure_built()
        found: list[tuple[float, str]] = []
        for shard in range(self.keys.shards):
            found += self._newest_in_shard(shard, status, flow, held, limit=limit, before=before)
        found.sort(reverse=True)
        return found[:limit]

    def _newest_in_shard(
        self,
        shard: int,
        status: str | None,
        flow: str | None,
        held: bool | None,
        *,
        limit: int,
        before: tuple[float, str] | None,
    ) -> list[tuple[float, str]]:
        filters = [self.keys.status_index(shard, status)] if status is not None else []
        if flow is not None:
            filters.append(self.keys.flow_index(shard, flow))
        started = self.keys.started_index(shard)
        if filters:
            sizes = [int(self.client.scard(key)) for key in filters]
            if min(sizes) <= max(limit, SMALL_FILTER):
                # few candidates: rank them all by start time instead of walking the index
                smallest = filters[sizes.index(min(sizes))]
                members = [_text(m) for m in self.client.smembers(smallest)]
                ranked = self._ranked(started, members, filters, held)
                if before is not None:
                    ranked = [row for row in ranked if row < before]
                ranked.sort(reverse=True)
                return ranked[:limit]
        highest: float | str = "+inf" if before is None else before[0]
        picked: list[tuple[float, str]] = []
        page = max(limit, PAGE)
        offset = 0
        while len(picked) < limit:
            rows: Any = self.client.zrevrangebyscore(
                started, highest, "-inf", start=offset, num=page, withscores=True
            )
            if not rows:
                break
            offset += len(rows)
            scores = {_text(member): float(score) for member, score in rows}
            if before is not None:  # the same millisecond as the last row: ids after it only
                scores = {m: score for m, score in scores.items() if (score, m) < before}
            for instance_id in self._matching(list(scores), filters, held):
                picked.append((scores[instance_id], instance_id))
        return picked[:limit]

    def _ranked(
        self, started: str, members: list[str], filters: list[str], held: bool | None
    ) -> list[tuple[float, str]]:
        if not members:
            return []
        scores = self.client.zmscore(started, members)
        known = {m: float(s) for m, s in zip(members, scores, strict=True) if s is not None}
        return [(known[m], m) for m in self._matching(list(known), filters, held)]

    def _matching(self, members: list[str], filters: list[str], held: bool | None) -> list[str]:
        """``members`` (in their order) that are in every filter set and held as asked."""
        if not members:
            return []
        pipe = self.client.pipeline(transaction=False)
        for key in filters:
            pipe.smismember(key, members)
        if held is not None:
            for instance_id in members:
                pipe.hget(self.keys.instance(instance_id), "held")
        replies = pipe.execute()
        keep = [True] * len(members)
        for flags in replies[: len(filters)]:
            keep = [k and bool(f) for k, f in zip(keep, flags, strict=True)]
        if held is not None:
            marks = [v is not None and _text(v) == "1" for v in replies[len(filters) :]]
            keep = [k and mark == held for k, mark in zip(keep, marks, strict=True)]
        return [m for m, k in zip(members, keep, strict=True) if k]

    # --- instances from before the indexes ------------------------------------------------

    def ensure_built(self) -> None:
        """Index instances written before these indexes existed (once per shard, idempotent)."""
        if self._built:
            return
        for shard in range(self.keys.shards):
            if self.client.exists(self.keys.indexes_built(shard)):
                continue
            for status in STATUSES:
                page: list[str] = []
                for member in self.client.sscan_iter(
                    self.keys.status_index(shard, status), count=PAGE
                ):
                    page.append(_text(member))
                    if len(page) >= PAGE:
                        self._index_existing(shard, page)
                        page = []
                if page:
                    self._index_existing(shard, page)
            self.client.set(self.keys.indexes_built(shard), "1")
        self._built = True

    def _index_existing(self, shard: int, instance_ids: list[str]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for instance_id in instance_ids:
            pipe.hmget(self.keys.instance(instance_id), ["created_at", "updated_at", "status"])
        rows = pipe.execute()
        pipe = self.client.pipeline(transaction=False)
        for instance_id, (created, updated, status) in zip(instance_ids, rows, strict=True):
            if status is None:
                continue
            started = {instance_id: millis_of(created or updated)}
            pipe.zadd(self.keys.started_index(shard), started, nx=True)
            if _text(status) in FINISHED:
                finished = {instance_id: millis_of(updated)}
                pipe.zadd(self.keys.finished_index(shard), finished, nx=True)
        pipe.execute()

    # --- retention ------------------------------------------------------------------------

    def purge_finished(self, finished_before: datetime, limit: int) -> int:
        """Delete up to ``limit`` instances per shard that finished before the cutoff."""
        self.ensure_built()
        cutoff = int(finished_before.timestamp() * 1000)
        deleted = 0
        for shard in range(self.keys.shards):
            finished = self.keys.finished_index(shard)
            members: Any = self.client.zrangebyscore(finished, "-inf", cutoff, start=0, num=limit)
            ids = [_text(m) for m in members]
            if ids:
                deleted += self._purge_in_shard(shard, ids, cutoff)
        return deleted

    def count_finished(self, finished_before: datetime) -> int:
        """How many instances finished before the cutoff (what a purge would delete)."""
        self.ensure_built()
        cutoff = int(finished_before.timestamp() * 1000)
        return sum(
            int(self.client.zcount(self.keys.finished_index(shard), "-inf", cutoff))
            for shard in range(self.keys.shards)
        )

    def _purge_in_shard(self, shard: int, ids: list[str], cutoff: int) -> int:
        pipe = self.client.pipeline(transaction=False)
        for instance_id in ids:
            pipe.hmget(self.keys.instance(instance_id), ["status", "flow"])
        rows = pipe.execute()
        finished = self.keys.finished_index(shard)
        pipe = self.client.pipeline(transaction=False)
        scripted: list[str | None] = []  # the instance of each purge script's reply
        for instance_id, (status, flow) in zip(ids, rows, strict=True):
            if status is None:  # the entry outlived its instance: tidy the indexes
                pipe.zrem(finished, instance_id)
                pipe.zrem(self.keys.started_index(shard), instance_id)
                scripted += [None, None]
                continue
            keys = [
                self.keys.instance(instance_id),
                self.keys.history(instance_id),
                self.keys.status_index(shard, _text(status)),
                self.keys.flow_index(shard, _text(flow) if flow is not None else ""),
                self.keys.started_index(shard),
                finished,
                self.keys.steps(instance_id),
            ]
            self._purge(keys=keys, args=[instance_id, _text(status), cutoff], client=pipe)
            scripted.append(instance_id)
        replies = pipe.execute()
        purged = [
            instance_id
            for instance_id, reply in zip(scripted, replies, strict=True)
            if instance_id is not None and reply == 1
        ]
        if purged:
            # the continuity ledger lives outside the instance's slot (it is never written
            # with a transition), so the purge script cannot delete it with the rest
            self.client.delete(*[self.keys.ledger(instance_id) for instance_id in purged])
        return len(purged)


def millis_of(timestamp: Any) -> int:
    """Milliseconds since the epoch of a stored timestamp (0 when missing or unreadable)."""
    if timestamp is None:
        return 0
    try:
        moment = parse_timestamp(_text(timestamp))
    except ValueError:
        return 0
    return int(moment.timestamp() * 1000) if moment is not None else 0


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
