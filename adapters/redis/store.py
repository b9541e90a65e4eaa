"""Instances and definitions in Redis; every transition applied by one compare-and-set.

``RedisStore`` is the Redis runner's implementation of the instance store port
(``core.instance_store.InstanceStore``), which is all continuity sees of it.

Why one module: every write here goes through the one compare-and-set commit script,
and the reads keep the snapshot cache that commits invalidate; definitions, the ledger and
retention share that cache and the key layout, so they change together with the commit.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import redis

from rustyflower.adapters.redis import scripts
from rustyflower.adapters.redis.commit_plan import (
    FULL_HISTORY_LIMIT,
    CommitLayout,
    Placement,
    PreparedCommit,
    SentCommits,
    WorkAck,
    acked_in_commit,
    plan_commit,
)
from rustyflower.adapters.redis.indexes import TimeIndexes
from rustyflower.adapters.redis.keys import CONSUMER_GROUP, PRIORITIES, Keyspace
from rustyflower.adapters.redis.listing import INFO_FIELDS, info_of
from rustyflower.adapters.redis.messages import timer_member
from rustyflower.adapters.redis.observing import EVENTS_MAXLEN
from rustyflower.adapters.redis.scripting import Rider, evalsha_many, send_scripts
from rustyflower.core.engine import (
    Snapshot,
    Transition,
)
from rustyflower.core.engine.machine import outstanding
from rustyflower.core.errors import (
    EpochConflictError,
    RustyFlowerError,
    UnknownFlowError,
    UnknownInstanceError,
)
from rustyflower.core.instance_store import (
    DISCARDED_KIND,
    FAILED_BACK_KIND,
    FAILED_OVER_KIND,
    LOCAL,
    CommitResult,
    InstanceInfo,
    plan_resume,
)
from rustyflower.core.model import FlowDefinition, load_definition
from rustyflower.core.snapshot import SnapshotKeys
from rustyflower.core.snapshot.document import decode_snapshot
from rustyflower.core.timeutil import format_timestamp

__all__ = [
    "FULL_HISTORY_LIMIT",
    "CommitResult",
    "InstanceInfo",
    "Placement",
    "PreparedCommit",
    "RedisStore",
    "SentCommits",
    "UnknownFlowError",
    "UnknownInstanceError",
    "VersionConflictError",
    "WorkAck",
]

LOCAL_OWNER = LOCAL
"""The owner of an instance this runner may advance (a failover writes the cloud's name)."""


_RESULTS: dict[int, CommitResult] = {1: "ok", 0: "conflict", -1: "fenced", -2: "exists"}


class VersionConflictError(RustyFlowerError):
    """A flow version is registered already with different content."""


class RedisStore:
    def __init__(
        self,
        client: redis.Redis,
        keyspace: Keyspace | None = None,
        snapshot_keys: SnapshotKeys | None = None,
        cache_size: int = 2048,
    ) -> None:
        self.client = client
        self.keys = keyspace or Keyspace()
        self.snapshot_keys = snapshot_keys or SnapshotKeys.none()
        self._commit = client.register_script(scripts.COMMIT)
        self._fence = client.register_script(scripts.FENCE)
        self._drop_orphan_timer = client.register_script(scripts.DROP_ORPHAN_TIMER)
        self._trim = client.register_script(scripts.TRIM_ACKNOWLEDGED)
        self.indexes = TimeIndexes(client, self.keys)
        self._cache: OrderedDict[str, Snapshot] = OrderedDict()
        self._cache_size = cache_size
        # a worker's executors and the asyncio client's threads share one store: an
        # OrderedDict changed by two threads at once raises KeyError mid-reorder
        self._cache_lock = threading.Lock()
        self._definitions: dict[tuple[str, str], FlowDefinition] = {}
        self._layout: CommitLayout | None = None
        self.events_maxlen = EVENTS_MAXLEN

    # --- setup ----------------------------------------------------------------------------

    def ensure_groups(self) -> None:
        """Create the consumer group on every work stream (idempotent)."""
        for shard in range(self.keys.shards):
            for stream in self.keys.streams(shard):
                try:
                    self.client.xgroup_create(stream, CONSUMER_GROUP, id="0", mkstream=True)
                except redis.ResponseError as error:
                    if "BUSYGROUP" not in str(error):
                        raise

    # --- definitions ----------------------------------------------------------------------

    def register(self, definition: FlowDefinition) -> bool:
        """Register a flow version; False when that exact version was registered already."""
        key = self.keys.definitions(definition.name)
        document = json.dumps(definition.document(), sort_keys=True)
        # the name first, on its own: on a cluster the two keys live in different slots,
        # and a name listed before its first version is harmless (it is listed again here)
        self.client.sadd(self.keys.definition_names(), definition.name)
        existing = self.client.hget(key, definition.version)
        if existing is not None:
            if json.loads(existing) == json.loads(document):
                return False
            raise VersionConflictError(
                f"flow {definition.name!r} version {definition.version!r} is registered with "
                "different content; give the changed flow a new version (running instances "
                "keep the version they started with)"
            )
        self.client.hset(
            key, mapping={definition.version: document, "__latest__": definition.version}
        )
        return True

    def definition(self, name: str, version: str | None = None) -> FlowDefinition:
        key = self.keys.definitions(name)
        if version is None:
            latest = self.client.hget(key, "__latest__")
            if latest is None:
                raise UnknownFlowError(self._unknown_flow_message(name))
            version = _text(latest)
        cached = self._definitions.get((name, version))
        if cached is not None:
            return cached
        raw = self.client.hget(key, version)
        if raw is None:
            known = sorted(_text(v) for v in self.client.hkeys(key) if _text(v) != "__latest__")
            if not known:
                raise UnknownFlowError(self._unknown_flow_message(name))
            raise UnknownFlowError(
                f"flow {name!r} has no version {version!r} (registered: {', '.join(known)})"
            )
        definition = load_definition(_text(raw), source=f"registered flow {name}@{version}")
        self._definitions[(name, version)] = definition
        return definition

    def _unknown_flow_message(self, name: str) -> str:
        names = sorted(_text(n) for n in self.client.smembers(self.keys.definition_names()))
        hint = f" (registered: {', '.join(names)})" if names else " (none registered yet)"
        return f"unknown flow {name!r}{hint}"

    def flows(self) -> list[dict[str, Any]]:
        result = []
        for raw_name in sorted(self.client.smembers(self.keys.definition_names())):
            name = _text(raw_name)
            versions = {
                _text(k): _text(v)
                for k, v in self.client.hgetall(self.keys.definitions(name)).items()
            }
            latest = versions.pop("__latest__", "")
            result.append({"name": name, "versions": sorted(versions), "latest": latest})
        return result

    # --- instances ------------------------------------------------------------------------

    def load(self, instance_id: str, fresh: bool = False, at_least: int | None = None) -> Snapshot:
        """The latest snapshot; a cached one unless ``fresh`` or older than seq
        ``at_least`` (commits detect any other staleness)."""
        if not fresh:
            with self._cache_lock:
                cached = self._cache.get(instance_id)
                if cached is not None and (at_least is None or cached.seq >= at_least):
                    self._cache.move_to_end(instance_id)
                else:
                    cached = None
            if cached is not None:
                return cached
        raw = self.client.hget(self.keys.instance(instance_id), "snap")
        if raw is None:
            raise UnknownInstanceError(f"no instance {instance_id!r} in this store")
        snapshot = decode_snapshot(raw, self.snapshot_keys)
        self._remember(snapshot)
        return snapshot

    def preload(self, instance_ids: list[str], at_least: Mapping[str, int] | None = None) -> None:
        """Fetch the snapshots the cache lacks, or holds older than their seq in
        ``at_least`` (another process advanced them), in one round trip."""
        wanted = at_least or {}

        def current(instance_id: str) -> bool:
            cached = self._cache.get(instance_id)
            return cached is not None and cached.seq >= wanted.get(instance_id, 0)

        with self._cache_lock:
            missing = [i for i in dict.fromkeys(instance_ids) if not current(i)]
        if not missing:
            return
        if len(missing) == 1:  # a batch of one (work trickling in): no pipeline to build
            raw = self.client.hget(self.keys.instance(missing[0]), "snap")
            if raw is not None:
                self._remember(decode_snapshot(raw, self.snapshot_keys))
            return
        pipe = self.client.pipeline(transaction=False)
        for instance_id in missing:
            pipe.hget(self.keys.instance(instance_id), "snap")
        for raw in pipe.execute():
            if raw is not None:
                self._remember(decode_snapshot(raw, self.snapshot_keys))

    def exists(self, instance_id: str) -> bool:
        return bool(self.client.exists(self.keys.instance(instance_id)))

    def raw_snapshot(self, instance_id: str) -> bytes:
        raw = self.client.hget(self.keys.instance(instance_id), "snap")
        if raw is None:
            raise UnknownInstanceError(f"no instance {instance_id!r} in this store")
        return raw if isinstance(raw, bytes) else raw.encode()

    def forget(self, instance_id: str) -> None:
        with self._cache_lock:
            self._cache.pop(instance_id, None)

    def _remember(self, snapshot: Snapshot) -> None:
        with self._cache_lock:
            self._cache[snapshot.instance_id] = snapshot
            self._cache.move_to_end(snapshot.instance_id)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def info(self, instance_id: str) -> InstanceInfo:
        found = _info(instance_id, self.client.hmget(self.keys.instance(instance_id), INFO_FIELDS))
        if found is None:
            raise UnknownInstanceError(f"no instance {instance_id!r} in this store")
        return found

    def commit(
        self,
        previous: Snapshot | None,
        transition: Transition,
        placement: Placement | None = None,
        *,
        ack: WorkAck | None = None,
        fired_timer: str | None = None,
        extra_fields: dict[str, str] | None = None,
        notes: Sequence[Mapping[str, Any]] = (),
        observed: bool = True,
    ) -> CommitResult:
        """Apply ``transition`` if the stored seq is still ``previous``'s (None: create).

        ``placement`` None: the instance's own (the default one for a new instance).
        ``notes`` are history entries of the store's own, written with the transition's.
        """
        if placement is None:
            placement = Placement() if previous is None else self.placement(previous.instance_id)
        prepared = self.prepare(
            previous,
            transition,
            placement,
            ack=ack,
            fired_timer=fired_timer,
            extra_fields=extra_fields,
            notes=notes,
            observed=observed,
        )
        return self.settle(prepared, self._commit(keys=prepared.keys, args=prepared.args))

    def commit_many(
        self, batch: list[PreparedCommit], rider: Rider | None = None
    ) -> list[CommitResult]:
        """Several commits in one round trip; each is still its own atomic compare-and-set.

        Commits for the same instance must come in seq order: the second one's expected
        seq is the first one's new seq, so a conflict on the first fails both.
        """
        if not batch:
            return []
        replies = evalsha_many(
            self.client,
            self._commit,
            [(prepared.keys, prepared.args) for prepared in batch],
            rider,
        )
        return self._settle_all(batch, replies)

    def send_commits(
        self, batch: list[PreparedCommit], rider: Rider | None = None
    ) -> SentCommits | None:
        """``commit_many`` without waiting: the replies are read by ``receive_commits``.

        None (nothing sent) when there is nothing to commit, or when this store's client is
        a cluster client, whose commits go to several nodes: then use ``commit_many``.
        """
        if not batch or not self.can_send_ahead:
            return None
        calls = [(prepared.keys, prepared.args) for prepared in batch]
        return SentCommits(batch, send_scripts(self.client, self._commit, calls, rider))

    def receive_commits(self, sent: SentCommits) -> list[CommitResult]:
        """The results of commits sent by ``send_commits``, settled as ``commit_many``'s."""
        return self._settle_all(sent.batch, sent.scripts.receive())

    def _settle_all(self, batch: list[PreparedCommit], replies: list[Any]) -> list[CommitResult]:
        return [
            self.settle(prepared, reply) for prepared, reply in zip(batch, replies, strict=True)
        ]

    @property
    def can_send_ahead(self) -> bool:
        """Whether commits can be sent now and their replies read later (one server)."""
        return isinstance(self.client, redis.Redis)

    def settle(self, prepared: PreparedCommit, reply: Any) -> CommitResult:
        result = _RESULTS[int(reply)]
        if result == "ok":
            self._remember(prepared.snapshot)
            for ack in prepared.acks:
                if not self._acked_in_commit(ack, prepared.snapshot):
                    self.ack(ack)
        else:
            self.forget(prepared.snapshot.instance_id)
        return result

    def prepare(
        self,
        previous: Snapshot | None,
        transition: Transition,
        placement: Placement,
        *,
        ack: WorkAck | None = None,
        fired_timer: str | None = None,
        extra_fields: dict[str, str] | None = None,
        notes: Sequence[Mapping[str, Any]] = (),
        observed: bool = True,
    ) -> PreparedCommit:
        """The keys and arguments of the commit script for one transition.

        ``observed``: record what the transition did (``observing``); False for a snapshot
        brought in from elsewhere (a resume), whose steps happened there.
        """
        return plan_commit(
            self._commit_layout(),
            previous,
            (transition,),
            placement,
            acks=() if ack is None else (ack,),
            fired_timers=() if fired_timer is None else (fired_timer,),
            extra_fields=extra_fields,
            notes=notes,
            observed=observed,
        )

    def prepare_chain(
        self,
        previous: Snapshot,
        chain: Sequence[Transition],
        placement: Placement,
        *,
        acks: Sequence[WorkAck] = (),
        fired_timers: Sequence[str] = (),
    ) -> PreparedCommit:
        """One commit for several transitions of one instance, each taken from the last.

        Stored, it is exactly what committing them one by one would store (the final
        snapshot; every link's history entries, work, timers, observations and step log,
        in order), but the snapshot, however large, is encoded, signed and written once:
        a wide Map's items finishing in one batch cost one write, not one each. It is one
        compare-and-set against ``previous``: all the links apply, or none.
        """
        if not chain:
            raise ValueError("a chain needs at least one transition")
        return plan_commit(
            self._commit_layout(),
            previous,
            tuple(chain),
            placement,
            acks=tuple(acks),
            fired_timers=tuple(fired_timers),
            extra_fields=None,
            notes=(),
            observed=True,
        )

    def _commit_layout(self) -> CommitLayout:
        layout = self._layout
        if (
            layout is None
            or layout.keyspace is not self.keys
            or (
                layout.snapshot_keys is not self.snapshot_keys
                or layout.events_maxlen != self.events_maxlen
            )
        ):
            layout = CommitLayout(self.keys, self.snapshot_keys, self.events_maxlen)
            self._layout = layout
        return layout

    def fence(
        self,
        instance_id: str,
        epoch: int,
        owner: str,
        note: Mapping[str, Any] | None = None,
        now: datetime | None = None,
    ) -> bool:
        """Give the instance to a new owner: this store refuses older epochs from now on.

        The ``FailedOver`` history entry (detail: ``owner``, ``epoch`` and ``note``) is
        written by the fence script itself, so a fence never goes unrecorded or twice."""
        shard = self.keys.shard_of(instance_id)
        keys = [
            self.keys.instance(instance_id),
            self.keys.lifeboat_switch(shard),
            self.keys.lifeboat_changed(shard),
            self.keys.history(instance_id),
        ]
        at = format_timestamp(now or datetime.now(UTC))
        entry = {
            "at": at,
            "kind": FAILED_OVER_KIND,
            "position": "",
            "detail": {"cloud": owner, "epoch": epoch, **dict(note or {})},
        }
        document = json.dumps(entry, separators=(",", ":"), default=str)
        result = int(
            self._fence(
                keys=keys, args=[epoch, owner, instance_id, at, document, FULL_HISTORY_LIMIT]
            )
        )
        if result == -2:
            raise UnknownInstanceError(f"no instance {instance_id!r} in this store")
        self.forget(instance_id)
        return result == 1

    def resume(
        self,
        snapshot: Snapshot,
        *,
        take_ownership: bool = False,
        discard_newer_state: bool = False,
        now: datetime | None = None,
        placement: Placement | None = None,
        note: Mapping[str, Any] | None = None,
    ) -> Snapshot:
        """Continue ``snapshot`` here (owner local) and dispatch its outstanding work.

        ``core.instance_store.plan_resume`` decides: an older snapshot than the stored
        one is refused (``EpochConflictError``) unless ``discard_newer_state``, whose
        rollback is written to the history in the same commit, as is ``note`` (a
        ``FailedBack`` or ``Reclaimed`` entry: ``kind`` and ``detail``).
        """
        try:
            stored: InstanceInfo | None = self.info(snapshot.instance_id)
        except UnknownInstanceError:
            stored = None
        plan = plan_resume(
            snapshot,
            stored,
            take_ownership=take_ownership,
            discard_newer_state=discard_newer_state,
        )
        resumed = plan.snapshot
        previous = self.load(resumed.instance_id, fresh=True) if stored is not None else None
        notes: list[dict[str, Any]] = []
        at = format_timestamp(now or datetime.now(UTC))
        if plan.discarded is not None:
            notes.append(
                {"seq": resumed.seq, "at": at, "kind": DISCARDED_KIND, "detail": plan.discarded}
            )
        if note is None and stored is not None and stored.owner != LOCAL:
            # back from a cloud by any road (failback, give-back, `resume --take-ownership`)
            note = {
                "kind": FAILED_BACK_KIND,
                "detail": {"cloud": stored.owner, "epoch": resumed.epoch},
            }
        if note is not None:
            notes.append({"position": "", "detail": None, **note, "seq": resumed.seq, "at": at})
        fields = {"owner": LOCAL}
        if stored is not None and stored.owner != LOCAL:
            fields["owner_at"] = at
        result = self.commit(
            previous,
            Transition(resumed, tuple(outstanding(resumed))),
            placement,
            extra_fields=fields,
            notes=notes,
            observed=False,
        )
        if result != "ok":
            raise EpochConflictError(
                f"instance {resumed.instance_id!r} changed while resuming ({result}); retry"
            )
        return resumed

    def adopt(self, snapshot: Snapshot, epoch: int, owner: str, note: Mapping[str, Any]) -> bool:
        """Take ``snapshot`` as the instance's state, fenced for ``owner`` (a cloud that
        took it over) at ``epoch``, without dispatching its work; only above the stored
        epoch. The value keeps its older epoch, as after ``fence``: a runner that loads it
        has its commit refused."""
        if snapshot.epoch >= epoch:
            raise ValueError(f"the snapshot's epoch {snapshot.epoch} must be below {epoch}")
        for _ in range(16):
            try:
                stored: InstanceInfo | None = self.info(snapshot.instance_id)
            except UnknownInstanceError:
                stored = None
            if stored is not None and stored.epoch >= epoch:
                return False
            previous = self.load(snapshot.instance_id, fresh=True) if stored else None
            result = self.commit(
                previous,
                Transition(snapshot, ()),
                extra_fields={
                    "owner": owner,
                    "epoch": str(epoch),
                    "owner_at": str(note.get("at") or format_timestamp(datetime.now(UTC))),
                },
                notes=[dict(note)],
            )
            self.forget(snapshot.instance_id)
            if result == "ok":
                return True
        raise EpochConflictError(
            f"instance {snapshot.instance_id!r} kept changing while taking the cloud's state; retry"
        )

    # --- the continuity ledger ------------------------------------------------------------

    def record_ledger(self, instance_id: str, fields: Mapping[str, str]) -> None:
        """Replace the record of where the instance went (failover, for failback)."""
        key = self.keys.ledger(instance_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(key)
        if fields:
            values: dict[Any, Any] = dict(fields)  # redis-py's mapping type is invariant
            pipe.hset(key, mapping=values)
        pipe.execute()

    def ledger(self, instance_id: str) -> dict[str, str]:
        raw = self.client.hgetall(self.keys.ledger(instance_id))
        return {_text(name): _text(value) for name, value in raw.items()}

    def forget_ledger(self, instance_id: str) -> None:
        self.client.delete(self.keys.ledger(instance_id))

    def placement(self, instance_id: str) -> Placement:
        priority, key = self.client.hmget(self.keys.instance(instance_id), ["priority", "ckey"])
        chosen = _text(priority) if priority is not None else "normal"
        return Placement(
            priority=chosen if chosen in PRIORITIES else "normal",
            concurrency_key=_text(key) if key is not None else None,
        )

    def remove_timer(self, instance_id: str, timer_id: str) -> None:
        shard = self.keys.shard_of(instance_id)
        self.client.zrem(self.keys.timers(shard), timer_member(instance_id, timer_id))

    def drop_orphan_timer(self, instance_id: str, timer_id: str) -> bool:
        """Remove a timer only while its instance is owned elsewhere or gone; True if removed.

        A fenced commit is no proof by itself: the instance may have failed back (a newer
        epoch, owner local again) with this very timer re-armed.
        """
        shard = self.keys.shard_of(instance_id)
        removed = self._drop_orphan_timer(
            keys=[self.keys.instance(instance_id), self.keys.timers(shard)],
            args=[timer_member(instance_id, timer_id), LOCAL_OWNER],
        )
        return bool(int(removed))

    def ack(self, ack: WorkAck) -> None:
        stream = ack.stream or self.keys.stream(ack.shard, PRIORITIES[ack.priority_index])
        self.client.xack(stream, CONSUMER_GROUP, ack.message_id)

    def _acked_in_commit(self, ack: WorkAck, snapshot: Snapshot) -> bool:
        return acked_in_commit(self.keys, ack, snapshot)

    # --- reading --------------------------------------------------------------------------

    def list_instances(
        self,
        status: str | None = None,
        flow: str | None = None,
        limit: int = 1000,
        *,
        held: bool | None = None,
    ) -> list[InstanceInfo]:
        """Up to ``limit`` instances, newest (latest started) first, optionally filtered."""
        if limit < 1:
            return []
        rows = self.indexes.newest(status, flow, held, limit)
        return [info for info in self.infos([i for _, i in rows]) if info is not None]

    def infos(self, instance_ids: list[str]) -> list[InstanceInfo | None]:
        """``info`` of several instances in one round trip (None: gone meanwhile)."""
        pipe = self.client.pipeline(transaction=False)
        for instance_id in instance_ids:
            pipe.hmget(self.keys.instance(instance_id), INFO_FIELDS)
        return [
            _info(instance_id, values)
            for instance_id, values in zip(instance_ids, pipe.execute(), strict=True)
        ]

    def ensure_indexes(self) -> None:
        """Index instances written before the time indexes existed (once per shard)."""
        self.indexes.ensure_built()

    # --- retention ------------------------------------------------------------------------

    def purge_finished(self, finished_before: datetime, limit: int = 1000) -> int:
        """Delete instances that finished before ``finished_before``, with their history.

        At most ``limit`` per shard and call; returns how many were deleted. An instance
        that changed meanwhile (retried, resumed) is left alone.
        """
        return self.indexes.purge_finished(finished_before, limit)

    def count_finished(self, finished_before: datetime) -> int:
        return self.indexes.count_finished(finished_before)

    def trim_acknowledged(self, streams: list[str]) -> int:
        """Trim what every consumer group has acknowledged from ``streams``; entries removed."""
        replies = evalsha_many(self.client, self._trim, [([stream], []) for stream in streams])
        return sum(int(removed) for removed in replies)

    def history(self, instance_id: str) -> list[dict[str, Any]]:
        if not self.exists(instance_id):
            raise UnknownInstanceError(f"no instance {instance_id!r} in this store")
        return [
            json.loads(raw) for raw in self.client.lrange(self.keys.history(instance_id), 0, -1)
        ]


def _info(instance_id: str, values: list[Any]) -> InstanceInfo | None:
    return None if values[4] is None else info_of(instance_id, values)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
