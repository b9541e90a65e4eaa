"""Each instance's step log: the states it entered and left, with their input and output.

The engine traces every state a transition enters and leaves (``Transition.trace``); the
commit that applies the transition appends the trace to a capped stream of the
instance's (``Keyspace.steps``), in the same atomic step, so a step is logged once
whichever worker applied it. The snapshot stays small and portable: this log is the
on-premises runner's own record, for the dashboard and ``GET /v1/instances/{id}/steps``.

Bounds: about ``STEP_LOG_MAXLEN`` entries per instance (the oldest go first) and
``STEP_DATA_LIMIT`` bytes of JSON per value; a larger value is logged as omitted, with
its size (the instance's current data is always in its snapshot).

A state entered with the very data the state before it left with (a plain move: most
steps) logs ``"as_left": true`` instead of the data a second time; the reader takes the
input from the entry before it, which the same commit wrote just before. When trimming
took that entry off, the input is unknown (None). Measured on the order example (Redis
MEMORY USAGE of the log, per finished instance): with an 8 KB document, 92 KB before,
59 KB with it; with its small documents about 4.4 KB either way (a stream's entries are
allocated in nodes of about 4 KB).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from rustyflower.adapters.redis.compact_json import compact, lenient
from rustyflower.adapters.redis.keys import Keyspace
from rustyflower.core.engine import Snapshot, StepTrace

STEP_LOG_MAXLEN = 1000
"""About this many entries (a state entered, a state left) are kept per instance: the last
500 or so steps. Redis trims approximately, so a few more may stay."""

STEP_DATA_LIMIT = 16 * 1024
"""A value whose JSON is longer than this (bytes) is logged as omitted, with its size."""


@dataclass(frozen=True)
class StepVisit:
    """One visit of a state: when it was entered and left, what came in and went out."""

    position: str
    """Where, as in the instance's positions (``Fulfil[1]/Invoice``)."""
    entered_at: str | None
    entered_seq: int | None
    input: Any = None
    input_omitted: int | None = None
    """The size (bytes of JSON) of an input too large to log; None when logged."""
    left_at: str | None = None
    left_seq: int | None = None
    output: Any = None
    output_omitted: int | None = None

    @property
    def state(self) -> str:
        """The state's name: the position's last part."""
        return self.position.rsplit("/", 1)[-1]

    @property
    def left(self) -> bool:
        return self.left_seq is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "state": self.state,
            "entered_at": self.entered_at,
            "entered_seq": self.entered_seq,
            "input": self.input,
            "input_omitted": self.input_omitted,
            "left_at": self.left_at,
            "left_seq": self.left_seq,
            "output": self.output,
            "output_omitted": self.output_omitted,
        }


def step_log_ops(
    links: Sequence[tuple[Sequence[StepTrace], Snapshot]],
    keys: list[str],
    keyspace: Keyspace,
    *,
    maxlen: int = STEP_LOG_MAXLEN,
) -> list[str | bytes | int]:
    """The commit script's ops (``e``: append to a capped stream) that log each link's
    trace (a commit holds one transition, or a chain of them: ``store.prepare_chain``),
    each entry with its own transition's seq and time; appends the log's key to ``keys``
    (the script's KEYS) and refers to it by position."""
    if not any(trace for trace, _ in links):
        return []
    keys.append(keyspace.steps(links[0][1].instance_id))
    where = len(keys)  # Lua counts from 1
    ops: list[str | bytes | int] = []
    for trace, snapshot in links:
        ops += _trace_ops(trace, snapshot, where, maxlen)
    return ops


def _trace_ops(
    trace: Sequence[StepTrace], snapshot: Snapshot, where: int, maxlen: int
) -> list[str | bytes | int]:
    ops: list[str | bytes | int] = []
    before: StepTrace | None = None
    for step in trace:
        entry: dict[str, Any] = {
            "seq": snapshot.seq,
            "at": snapshot.updated_at,
            "kind": step.kind,
            "position": step.position,
        }
        passed_on = before is not None and before.kind == "left" and before.data is step.data
        before = step
        if step.kind == "entered" and passed_on:  # the engine's move: the same object
            entry["as_left"] = True
            ops += ["e", where, maxlen, compact(entry)]
            continue
        data = lenient(step.data)
        size = len(data.encode())
        if size > STEP_DATA_LIMIT:
            entry["omitted"] = size
        text = compact(entry)
        if size <= STEP_DATA_LIMIT:  # the data, encoded once already, as the last member
            text = f'{text[:-1]},"data":{data}}}'
        ops += ["e", where, maxlen, text]
    return ops


def read_steps(client: redis.Redis, keyspace: Keyspace, instance_id: str) -> list[StepVisit]:
    """The instance's visits, oldest first (an empty list when nothing was logged)."""
    entries: Any = client.xrange(keyspace.steps(instance_id), "-", "+")
    visits: list[StepVisit] = []
    open_at: dict[str, int] = {}  # position -> index in visits of its visit not yet left
    last_left: tuple[Any, int | None] = (None, None)  # the data (or size) of the entry before
    for _entry_id, fields in entries:
        raw = fields.get(b"e") or fields.get("e")
        try:
            entry = json.loads(raw) if raw is not None else None
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        position = str(entry.get("position", ""))
        seq = entry.get("seq") if isinstance(entry.get("seq"), int) else None
        at = entry.get("at") if isinstance(entry.get("at"), str) else None
        omitted = entry.get("omitted") if isinstance(entry.get("omitted"), int) else None
        data = entry.get("data")
        if entry.get("kind") == "entered":
            if entry.get("as_left") is True:
                data, omitted = last_left
            open_at[position] = len(visits)
            visits.append(StepVisit(position, at, seq, data, omitted))
            last_left = (None, None)
        elif entry.get("kind") == "left":
            last_left = (data, omitted)
            index = open_at.pop(position, None)
            if index is None:  # its entry was trimmed off the log: a visit seen leaving
                visits.append(StepVisit(position, None, None))
                index = len(visits) - 1
            visit = visits[index]
            visits[index] = StepVisit(
                visit.position,
                visit.entered_at,
                visit.entered_seq,
                visit.input,
                visit.input_omitted,
                at,
                seq,
                data,
                omitted,
            )
    return visits
