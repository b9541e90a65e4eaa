"""Messages on the work streams: what a worker must do, as compact JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from rustyflower.adapters.redis.compact_json import compact
from rustyflower.core.engine import COMMAND_ADAPTER, RunActivity, StartChildFlow

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
    seq: int | None = None
    """The instance's seq when this work was dispatched: a worker whose cached snapshot
    is older knows it is stale before it computes a transition on it."""

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
            ("s", self.seq),
        ):
            if value is not None:
                document[key] = value
        return compact(document)

    @classmethod
    def decode(cls, text: str | bytes | None) -> WorkMessage:
        """Parse a stream message; anything malformed raises ValueError (-> dead letters)."""
        if text is None:
            raise ValueError("the message has no 'm' field")
        document = json.loads(text)
        if not isinstance(document, dict):
            raise ValueError(f"a work message is a JSON object, not {type(document).__name__}")
        kind = document.get("k")
        if kind not in _KINDS:
            raise ValueError(f"unknown work message kind {kind!r}")
        if not isinstance(document.get("i"), str) or not isinstance(document.get("e"), int):
            raise ValueError("a work message needs an instance id 'i' and an epoch 'e'")
        command = document.get("c")
        try:
            parsed = COMMAND_ADAPTER.validate_python(command) if command is not None else None
        except ValidationError as error:
            raise ValueError(f"invalid command in a work message: {error}") from None
        expected = _COMMAND_OF.get(kind)
        if expected is not None and not isinstance(parsed, expected):
            raise ValueError(f"a {kind} message needs a {expected.__name__} command")
        if kind == "notify_parent" and not isinstance(document.get("ci"), str):
            raise ValueError("a notify_parent message needs the parent's call id 'ci'")
        seq = document.get("s")
        if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int)):
            raise ValueError("a work message's seq 's' is a whole number")
        return cls(
            kind=document["k"],
            instance_id=document["i"],
            epoch=document["e"],
            priority=document.get("p", 1),
            command=parsed if isinstance(parsed, RunActivity | StartChildFlow) else None,
            concurrency_key=document.get("ck"),
            flow=document.get("f"),
            call_id=document.get("ci"),
            result=document.get("r"),
            child_instance_id=document.get("ch"),
            seq=seq,
        )


_KINDS: frozenset[str] = frozenset({"activity", "start_child", "notify_parent", "cancel_child"})
_COMMAND_OF: dict[str, type] = {"activity": RunActivity, "start_child": StartChildFlow}


def timer_member(instance_id: str, timer_id: str) -> str:
    """A timer in the shard's ZSET; the unit separator cannot appear in ids we issue."""
    return f"{instance_id}\x1f{timer_id}"


def split_timer_member(member: str) -> tuple[str, str]:
    instance_id, _, timer_id = member.partition("\x1f")
    return instance_id, timer_id
