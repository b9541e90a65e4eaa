"""The replication feed of the Redis runner (``core.lifeboat.feed.ReplicationFeed``).

While ``Keyspace.lifeboat_switch`` exists in a shard, the commit and fence scripts note
each changed instance in ``lifeboat_changed`` (ZADD NX: the score is its oldest change
not collected yet). ``collect`` moves those notes into each target's backlog
(``lifeboat_pending``), ``shipped`` takes an instance off a backlog only while the
instance is still what was shipped; both are scripts of one shard, so they are atomic
against the commits of that shard. Also here: the replicator's leadership lease and its
status report, both plain keys (``lifeboat_leader``, ``lifeboat_status``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import redis

from rustyflower.adapters.redis import scripts
from rustyflower.adapters.redis.store import LOCAL_OWNER, RedisStore
from rustyflower.core.lifeboat.feed import Backlog, Fetched, Pending, Shipped, StoredInstance
from rustyflower.core.lifeboat.replica import ReplicaHeader

__all__ = ["RedisReplicationFeed"]

_FIELDS = ("snap", "seq", "epoch", "status", "owner", "updated_at", "flow", "version")
_SYNC_PAGE = 500


class RedisReplicationFeed:
    """``ReplicationFeed`` over a ``RedisStore``'s keys."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.client: redis.Redis = store.client
        self.keys = store.keys
        self._collect = self.client.register_script(scripts.COLLECT_CHANGES)
        self._shipped = self.client.register_script(scripts.SHIPPED)
        self._lease = self.client.register_script(scripts.LEASE)
        self._release = self.client.register_script(scripts.LEASE_RELEASE)

    # --- the feed -------------------------------------------------------------------------

    def enable(self, target: str) -> bool:
        """Switch on, then give ``target`` its backlog: every running instance, once."""
        first = False
        for shard in range(self.keys.shards):
            self.client.set(self.keys.lifeboat_switch(shard), "1")
            if int(self.client.sadd(self.keys.lifeboat_targets(shard), target)):
                first = True
                self._sync(shard, target)
        return first

    def _sync(self, shard: int, target: str) -> None:
        """Every running instance of the shard into the target's backlog (a first full sync;
        changes from now on are noted by the commits, the switch being on already)."""
        now = self.now_ms()
        pending = self.keys.lifeboat_pending(shard, target)
        running = self.keys.status_index(shard, "running")
        batch: dict[Any, Any] = {}
        for member in self.client.sscan_iter(running, count=_SYNC_PAGE):
            batch[member] = now
            if len(batch) >= _SYNC_PAGE:
                self.client.zadd(pending, batch, nx=True)
                batch = {}
        if batch:
            self.client.zadd(pending, batch, nx=True)

    def collect(self, targets: Sequence[str], limit: int = 1000) -> int:
        moved = 0
        for shard in range(self.keys.shards):
            keys = [
                self.keys.lifeboat_changed(shard),
                *(self.keys.lifeboat_pending(shard, target) for target in targets),
            ]
            while True:
                count = int(self._collect(keys=keys, args=[limit]))
                moved += count
                if count < limit:
                    break
        return moved

    def pending(self, target: str, limit: int, ready_ms: int | None = None) -> list[Pending]:
        pipe = self.client.pipeline(transaction=False)
        for shard in range(self.keys.shards):
            pipe.zrangebyscore(
                self.keys.lifeboat_pending(shard, target),
                "-inf",
                "+inf" if ready_ms is None else ready_ms,
                start=0,
                num=limit,
                withscores=True,
            )
        found = [
            Pending(_text(member), int(score))
            for entries in pipe.execute()
            for member, score in entries
        ]
        found.sort(key=lambda entry: entry.since_ms)
        return found[:limit]

    def fetch(self, target: str, instance_ids: Sequence[str]) -> Fetched:
        by_shard = self._by_shard(instance_ids)
        pipe = self.client.pipeline(transaction=False)
        pipe.time()
        for instance_id in instance_ids:
            pipe.hmget(self.keys.instance(instance_id), _FIELDS)
        for shard, ids in by_shard.items():
            pipe.smismember(self.keys.lifeboat_present(shard, target), ids)
        replies = pipe.execute()
        seconds, micros = replies[0]
        found: dict[str, StoredInstance | None] = {}
        for instance_id, values in zip(
            instance_ids, replies[1 : 1 + len(instance_ids)], strict=True
        ):
            found[instance_id] = _stored(instance_id, values)
        present: set[str] = set()
        for (_, ids), flags in zip(by_shard.items(), replies[1 + len(instance_ids) :], strict=True):
            present.update(i for i, flag in zip(ids, flags, strict=True) if int(flag))
        return Fetched(found, int(seconds) * 1000 + int(micros) // 1000, frozenset(present))

    def will_write(self, target: str, instance_ids: Sequence[str]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for shard, ids in self._by_shard(instance_ids).items():
            pipe.sadd(self.keys.lifeboat_present(shard, target), *ids)
        pipe.execute()

    def _by_shard(self, instance_ids: Sequence[str]) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {}
        for instance_id in instance_ids:
            found.setdefault(self.keys.shard_of(instance_id), []).append(instance_id)
        return found

    def shipped(self, target: str, done: Sequence[Shipped]) -> list[Pending]:
        by_shard: dict[int, list[Shipped]] = {}
        for item in done:
            by_shard.setdefault(self.keys.shard_of(item.pending.instance_id), []).append(item)
        removed: list[Pending] = []
        for shard, items in by_shard.items():
            keys = [
                self.keys.lifeboat_pending(shard, target),
                self.keys.lifeboat_present(shard, target),
            ]
            args: list[str] = [str(min(item.read_ms for item in items))]
            for item in items:
                keys.append(self.keys.instance(item.pending.instance_id))
                header = item.header
                args += [
                    item.pending.instance_id,
                    "" if header is None else str(header.seq),
                    "" if header is None else str(header.epoch),
                    "1" if item.absent else "0",
                ]
            reply = self._shipped(keys=keys, args=args)
            removed += [
                Pending(_text(reply[i]), int(float(reply[i + 1]))) for i in range(0, len(reply), 2)
            ]
        return removed

    def backlog(self, target: str) -> Backlog:
        pipe = self.client.pipeline(transaction=False)
        for shard in range(self.keys.shards):
            key = self.keys.lifeboat_pending(shard, target)
            pipe.zcard(key)
            pipe.zrange(key, 0, 0, withscores=True)
        replies = pipe.execute()
        count = sum(int(replies[i]) for i in range(0, len(replies), 2))
        oldest = [int(entry[0][1]) for entry in replies[1::2] if entry]
        return Backlog(count, min(oldest) if oldest else None)

    def now_ms(self) -> int:
        seconds, micros = self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    # --- leadership and the status report -------------------------------------------------

    def lead(self, holder: str, ttl_seconds: float) -> bool:
        """Take or renew the replicator's leadership; False while another holds it."""
        key = self.keys.lifeboat_leader()
        return bool(int(self._lease(keys=[key], args=[holder, int(ttl_seconds * 1000)])))

    def resign(self, holder: str) -> None:
        self._release(keys=[self.keys.lifeboat_leader()], args=[holder])

    def leader(self) -> str | None:
        found = self.client.get(self.keys.lifeboat_leader())
        return None if found is None else _text(found)

    def report(self, document: dict[str, Any], ttl_seconds: float) -> None:
        self.client.set(
            self.keys.lifeboat_status(), json.dumps(document), px=int(ttl_seconds * 1000)
        )

    def last_report(self) -> dict[str, Any] | None:
        raw = self.client.get(self.keys.lifeboat_status())
        if raw is None:
            return None
        found = json.loads(raw)
        return found if isinstance(found, dict) else None


def _stored(instance_id: str, values: list[Any]) -> StoredInstance | None:
    if values[0] is None or values[1] is None:
        return None
    text = [_text(value) if value is not None else "" for value in values[1:]]
    header = ReplicaHeader(
        instance_id=instance_id,
        seq=int(text[0]),
        epoch=int(text[1] or 0),
        status=text[2],
        owner=text[3] or LOCAL_OWNER,
        updated_at=text[4],
        flow=text[5],
        flow_version=text[6],
    )
    data = values[0] if isinstance(values[0], bytes) else str(values[0]).encode()
    return StoredInstance(header, data)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
