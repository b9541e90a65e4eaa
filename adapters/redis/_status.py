"""What the client tells about an instance: ``InstanceStatus``, what it waits for, and the
JSON shape the CLI's ``--json`` and the HTTP API print."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rustyflower.core.contract import Purpose
from rustyflower.core.engine import (
    AwaitEvent,
    RunActivity,
    Snapshot,
    StartChildFlow,
    StartTimer,
    Status,
)
from rustyflower.core.instance_store import InstanceInfo, Priority
from rustyflower.core.timeutil import parse_timestamp

DEADLINES = frozenset(
    {Purpose.FLOW_TIMEOUT, Purpose.TASK_TIMEOUT, Purpose.EVENT_TIMEOUT, Purpose.CHILD_TIMEOUT}
)


@dataclass(frozen=True)
class InstanceStatus:
    """Where an instance stands, read at one moment."""

    instance_id: str
    flow: str
    version: str
    status: Status
    held: bool
    positions: tuple[str, ...]
    """The states its live branches are at (empty once it finished)."""
    output: Any
    error: str | None
    cause: str | None
    seq: int
    """How many transitions it has taken."""
    epoch: int
    owner: str
    """``local``, or the cloud it failed over to (``aws``, ``azure``)."""
    priority: Priority
    created_at: str
    updated_at: str
    input: Any = None
    waiting_for: tuple[Mapping[str, Any], ...] = ()
    """The work it waits for: ``kind`` (activity, event, timer, deadline, child), ``text``
    for people, and the details of each kind (``waiting_for``)."""
    failed_position: str | None = None
    finished_at: str | None = None
    parent: str | None = None
    """The instance that started this one as a sub-flow."""
    owner_since: str | None = None
    """When ``owner`` last changed (a failover, a failback); None when it never did."""

    @property
    def finished(self) -> bool:
        return self.status != "running"

    @classmethod
    def of(cls, info: InstanceInfo, snapshot: Snapshot) -> InstanceStatus:
        state = snapshot.state
        return cls(
            instance_id=snapshot.instance_id,
            flow=snapshot.definition.name,
            version=snapshot.definition.version,
            status=snapshot.status,
            held=state.held,
            positions=tuple(snapshot.positions),
            output=state.output,
            error=state.error,
            cause=state.cause,
            seq=snapshot.seq,
            epoch=max(info.epoch, snapshot.epoch),
            owner=info.owner,
            priority=info.priority,
            created_at=info.created_at,
            updated_at=snapshot.updated_at,
            input=state.input,
            waiting_for=tuple(waiting_for(snapshot)),
            failed_position=state.failed_position,
            finished_at=state.finished_at,
            parent=state.parent.instance_id if state.parent is not None else None,
            owner_since=info.owner_since or None,
        )

    def as_dict(self) -> dict[str, Any]:
        """The JSON object ``rustyflower status --json`` and ``GET /v1/instances/{id}`` give."""
        return {
            "instance_id": self.instance_id,
            "flow": self.flow,
            "version": self.version,
            "status": self.status,
            "held": self.held,
            "seq": self.seq,
            "epoch": self.epoch,
            "priority": self.priority,
            "owner": self.owner,
            "owner_since": self.owner_since,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "positions": list(self.positions),
            "waiting_for": [dict(item) for item in self.waiting_for],
            "input": self.input,
            "output": self.output,
            "error": self.error,
            "cause": self.cause,
            "failed_position": self.failed_position,
            "finished_at": self.finished_at,
            "parent": self.parent,
        }


def summary_of(info: InstanceInfo) -> dict[str, Any]:
    """A listing's row: what the store knows without decoding the snapshot."""
    return {
        "instance_id": info.instance_id,
        "flow": info.flow,
        "version": info.version,
        "status": info.status,
        "held": info.held,
        "seq": info.seq,
        "epoch": info.epoch,
        "priority": info.priority,
        "owner": info.owner,
        "owner_since": info.owner_since or None,
        "created_at": info.created_at,
        "updated_at": info.updated_at,
    }


def waiting_for(snapshot: Snapshot) -> list[dict[str, Any]]:
    """The work the instance waits for, for people (``text``) and scripts (the rest)."""
    found: list[dict[str, Any]] = []
    for entry in snapshot.state.pending.values():
        command = entry.command
        item: dict[str, Any] = {"id": entry.id, "position": entry.token}
        if isinstance(command, RunActivity):
            item |= {"kind": "activity", "activity": command.activity, "attempt": command.attempt}
            item["text"] = f"activity {command.activity} (attempt {command.attempt})"
        elif isinstance(command, AwaitEvent):
            item |= {"kind": "event", "event": command.event}
            item["text"] = f"event {command.event!r}"
        elif isinstance(command, StartTimer):
            kind = "deadline" if command.purpose in DEADLINES else "timer"
            item |= {"kind": kind, "purpose": command.purpose, "fire_at": command.fire_at}
            item["text"] = f"{command.purpose.replace('_', ' ')} at {_short_time(command.fire_at)}"
        elif isinstance(command, StartChildFlow):
            item |= {"kind": "child", "flow": command.flow}
            item["child_instance_id"] = command.child_instance_id
            item["text"] = f"child flow {command.flow} ({command.child_instance_id})"
        else:
            item |= {"kind": entry.purpose, "text": entry.purpose}
        if not entry.dispatched:
            item["dispatched"] = False
            item["text"] += " (not dispatched: held)"
        found.append(item)
    return found


def _short_time(text: str) -> str:
    """'2026-01-02T03:04:05.678Z' -> '2026-01-02 03:04:05' (UTC), as the CLI shows times."""
    moment = parse_timestamp(text)
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment is not None else text
