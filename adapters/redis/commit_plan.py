"""What one commit writes: the commit script's keys and arguments for a transition, or for a
chain of transitions of one instance (``scripts.COMMIT`` reads them in this order).

Why apart from the store: the store decides when to commit and keeps the snapshot cache;
this module changes only when what a commit writes changes (the script's arguments, the
work messages, observations, step log and indexes it carries).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rustyflower.adapters.redis.compact_json import lenient
from rustyflower.adapters.redis.indexes import index_operations
from rustyflower.adapters.redis.keys import PRIORITIES, Keyspace, Priority
from rustyflower.adapters.redis.messages import WorkMessage, timer_member
from rustyflower.adapters.redis.observing import observation_ops
from rustyflower.adapters.redis.scripting import SentScripts
from rustyflower.adapters.redis.step_log import step_log_ops
from rustyflower.core.engine import (
    CancelWork,
    FinishFlow,
    RunActivity,
    Snapshot,
    StartChildFlow,
    StartTimer,
    Transition,
)
from rustyflower.core.observations import observe
from rustyflower.core.snapshot import SnapshotKeys
from rustyflower.core.snapshot.document import encode_snapshot
from rustyflower.core.timeutil import parse_timestamp

FULL_HISTORY_LIMIT = 10_000
"""The store keeps this many history entries per instance (the snapshot keeps fewer)."""


@dataclass(frozen=True)
class Placement:
    """Queue settings of an instance, fixed when it starts and inherited by its work."""

    priority: Priority = "normal"
    concurrency_key: str | None = None


@dataclass
class WorkAck:
    """The stream message a commit acknowledges, so apply and ack happen together."""

    priority_index: int
    message_id: str
    shard: int
    stream: str | None = None
    """The stream, when not the shard's stream of that priority (routed work): such a
    message is acknowledged right after the commit, not inside it."""


@dataclass(frozen=True)
class PreparedCommit:
    keys: list[str]
    args: list[str | bytes | int]
    snapshot: Snapshot
    acks: tuple[WorkAck, ...] = ()


@dataclass(frozen=True)
class SentCommits:
    """Commits sent in one round trip whose replies are not read yet."""

    batch: list[PreparedCommit]
    scripts: SentScripts


@dataclass
class CommitLayout:
    """A store's settings that shape its commits, and its shards' fixed key names."""

    keyspace: Keyspace
    snapshot_keys: SnapshotKeys
    events_maxlen: int
    _shard_keys: dict[int, tuple[str, ...]] = field(default_factory=dict)

    def shard_keys(self, shard: int) -> tuple[str, ...]:
        """KEYS[6..13] of the commit script: the same for every commit in a shard, so their
        names are built once (a commit otherwise formats eight of them again)."""
        found = self._shard_keys.get(shard)
        if found is None:
            keyspace = self.keyspace
            found = (
                *keyspace.streams(shard),
                keyspace.timers(shard),
                keyspace.started_index(shard),
                keyspace.finished_index(shard),
                keyspace.lifeboat_switch(shard),
                keyspace.lifeboat_changed(shard),
            )
            self._shard_keys[shard] = found
        return found


def acked_in_commit(keyspace: Keyspace, ack: WorkAck, snapshot: Snapshot) -> bool:
    """The commit script acknowledges messages of its own shard's priority streams."""
    return ack.stream is None and ack.shard == keyspace.shard_of(snapshot.instance_id)


def plan_commit(
    layout: CommitLayout,
    previous: Snapshot | None,
    chain: tuple[Transition, ...],
    placement: Placement,
    *,
    acks: tuple[WorkAck, ...],
    fired_timers: tuple[str, ...],
    extra_fields: dict[str, str] | None,
    notes: Sequence[Mapping[str, Any]],
    observed: bool,
) -> PreparedCommit:
    """The commit script's keys and arguments for ``chain`` (one transition, or several of
    one instance each taken from the last) from ``previous`` (None: a new instance)."""
    snapshot = chain[-1].snapshot
    instance_id = snapshot.instance_id
    shard = layout.keyspace.shard_of(instance_id)
    old_status = previous.status if previous is not None else snapshot.status
    keys = [
        layout.keyspace.instance(instance_id),
        layout.keyspace.history(instance_id),
        layout.keyspace.status_index(shard, old_status),
        layout.keyspace.status_index(shard, snapshot.status),
        layout.keyspace.flow_index(shard, snapshot.definition.name),
        *layout.shard_keys(shard),
    ]
    history: list[str] = []
    link_previous = previous
    for link in chain:  # each link's own new entries: a later one's window may have
        after = link_previous.seq if link_previous is not None else 0  # dropped them
        history += [
            lenient(
                {
                    "seq": e.seq,
                    "at": e.at,
                    "kind": e.kind,
                    "position": e.position,
                    "detail": e.detail,
                }
            )
            for e in link.snapshot.state.history
            if e.seq > after
        ]
        link_previous = link.snapshot
    history += [lenient(note) for note in notes]
    args: list[str | bytes | int] = [
        "" if previous is None else str(previous.seq),
        str(snapshot.seq),
        str(snapshot.epoch),
        encode_snapshot(snapshot, layout.snapshot_keys),
        snapshot.status,
        instance_id,
        FULL_HISTORY_LIMIT,
        "1" if snapshot.state.held else "0",
        snapshot.updated_at,
        len(history),
        *history,
    ]
    for link in chain:
        args += _operations(link.snapshot, link, placement, shard)
    args += index_operations(previous, snapshot)
    if observed:
        seen = []
        link_previous = previous
        for link in chain:
            seen += observe(link_previous, link.snapshot)
            link_previous = link.snapshot
        args += observation_ops(
            seen, keys, layout.keyspace, shard, maxlen=layout.events_maxlen, instance_id=instance_id
        )
        args += step_log_ops([(link.trace, link.snapshot) for link in chain], keys, layout.keyspace)
    for ack in acks:
        if acked_in_commit(layout.keyspace, ack, snapshot):
            args += ["a", ack.priority_index, ack.message_id]
    for fired_timer in fired_timers:
        args += ["r", timer_member(instance_id, fired_timer)]
    fields = dict(extra_fields or {})
    if previous is None:
        fields.update(
            {
                "flow": snapshot.definition.name,
                "version": snapshot.definition.version,
                "priority": placement.priority,
                "created_at": snapshot.updated_at,
            }
        )
        if placement.concurrency_key:
            fields["ckey"] = placement.concurrency_key
    if fields:  # one HSET for them all (op 'H': the count, then name, value pairs)
        args += ["H", len(fields)]
        for name, value in fields.items():
            args += [name, value]
    return PreparedCommit(keys, args, snapshot, acks)


def _operations(
    snapshot: Snapshot, transition: Transition, placement: Placement, shard: int
) -> list[str | bytes | int]:
    ops: list[str | bytes | int] = []
    instance_id = snapshot.instance_id
    priority = PRIORITIES.index(placement.priority)
    flow = snapshot.definition.name
    for command in transition.commands:
        if isinstance(command, RunActivity):
            message = WorkMessage(
                "activity",
                instance_id,
                snapshot.epoch,
                priority,
                command=command,
                concurrency_key=placement.concurrency_key,
                flow=flow,
                seq=snapshot.seq,
            )
            ops += ["x", priority, message.encode()]
        elif isinstance(command, StartTimer):
            due = parse_timestamp(command.fire_at)
            assert due is not None
            ops += ["t", _millis(due), timer_member(instance_id, command.timer_id)]
        elif isinstance(command, StartChildFlow):
            message = WorkMessage(
                "start_child", instance_id, snapshot.epoch, priority, command=command
            )
            ops += ["x", priority, message.encode()]
        elif isinstance(command, CancelWork):
            if command.work_kind == "start_timer":
                ops += ["r", timer_member(instance_id, command.work_id)]
            elif command.work_kind == "start_child_flow":
                message = WorkMessage(
                    "cancel_child",
                    instance_id,
                    snapshot.epoch,
                    priority,
                    child_instance_id=command.child_instance_id,
                )
                ops += ["x", priority, message.encode()]
        elif isinstance(command, FinishFlow) and snapshot.state.parent is not None:
            parent = snapshot.state.parent
            message = WorkMessage(
                "notify_parent",
                parent.instance_id,
                snapshot.epoch,
                priority,
                call_id=parent.call_id,
                result={
                    "status": command.status,
                    "output": command.output,
                    "error": command.error,
                    "cause": command.cause,
                },
            )
            ops += ["x", priority, message.encode()]
    return ops


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
