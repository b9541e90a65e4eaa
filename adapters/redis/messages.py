"""Messages on the work streams: what a worker must do, as compact JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from core.engine import COMMAND_ADAPTER, RunActivity, StartChildFlow

Kind = Literal["activity", "start_child", "notify_parent", "cancel_child"]


@dataclass(frozen=True)
class WorkMessage:
    """One unit of work for a worker, with what it needs to report back."""

    kind: Kind
    instance_id: str
    epoch: int
    priority: int  # index into PRIORITIES: the stream it travels on
    command: RunActivity | StartChildFlow | None = None
    concurrency_key: str | None = None
    flow: str | None = None
    # notify_parent: the child's end, for the parent's ChildFinished
    call_id: str | None = None
    result: dict[str, Any] | None = None
    # cancel_child
    child_instance_id: str | None = None

    def encode(self) -> str:
        document: dict[str, Any] = {"k": self.kind, "i": self.instance_id, "e": self.epoch}
        document["p"] = self.priority
        if self.command is not None:
            document["c"] = COMMAND_ADAPTER.dump_python(self.command, mode="json")
        for key, value in (
            ("ck", self.concurrency_key),
            ("f", self.flow),
            ("ci", self.call_id),
            ("r", self.result),
            ("ch", self.child_instance_id),
        ):
            if value is not None:
                document[key] = value
        return json.dumps(document, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str | bytes) -> WorkMessage:
        document = json.loads(text)
        command = document.get("c")
        parsed = COMMAND_ADAPTER.validate_python(command) if command is not None else None
        if parsed is not None and not isinstance(parsed, RunActivity | StartChildFlow):
            raise ValueError(f"unexpected command in a work message: {parsed.kind}")
        return cls(
            kind=document["k"],
            instance_id=document["i"],
            epoch=document["e"],
            priority=document.get("p", 1),
            command=parsed,
            concurrency_key=document.get("ck"),
            flow=document.get("f"),
            call_id=document.get("ci"),
            result=document.get("r"),
            child_instance_id=document.get("ch"),
        )


def timer_member(instance_id: str, timer_id: str) -> str:
    """A timer in the shard's ZSET; the unit separator cannot appear in ids we issue."""
    return f"{instance_id}\x1f{timer_id}"


def split_timer_member(member: str) -> tuple[str, str]:
    instance_id, _, timer_id = member.partition("\x1f")
    return instance_id, timer_id
