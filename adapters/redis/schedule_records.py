"""How a schedule and its bookkeeping are kept in Redis: one JSON value per hash field.

``keys.schedules()`` is a hash of schedule name -> the spec's JSON (``StoredSchedule``),
plus its creation time, a generation token (a schedule removed and added again under the
same name is a new one, with fresh counts) and which flow declared it, for ``sync_flow``.
``keys.schedule_state()`` is a hash of name -> ``ScheduleState``: ``cursor`` (fires after
it are pending), ``last_fire``, ``last_instance_id``, ``buffered``, ``paused_at``,
``created_at`` and the counts ``started``, ``skipped``, ``missed``, ``failed``.
A state that cannot be read is replaced by a fresh one that continues from now: a damaged
record never replays history.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rustyflower.core.errors import InvalidScheduleError
from rustyflower.core.schedules import ScheduleSpec
from rustyflower.core.timeutil import format_timestamp, parse_timestamp

log = logging.getLogger("rustyflower.scheduler")


@dataclass(frozen=True)
class Declared:
    """The flow whose definition declared a schedule, and whether it declared it enabled."""

    flow: str
    enabled: bool


@dataclass(frozen=True)
class StoredSchedule:
    """A spec as stored, with what only the store knows about it."""

    spec: ScheduleSpec
    generation: str
    created_at: datetime
    declared: Declared | None
    raw: str

    @classmethod
    def make(
        cls,
        spec: ScheduleSpec,
        generation: str,
        created_at: datetime,
        declared: Declared | None,
    ) -> StoredSchedule:
        document: dict[str, Any] = {
            **spec.document(),
            "generation": generation,
            "created_at": format_timestamp(created_at),
        }
        if declared is not None:
            document["declared"] = {"flow": declared.flow, "enabled": declared.enabled}
        raw = json.dumps(document, sort_keys=True, separators=(",", ":"))
        return cls(spec, generation, created_at, declared, raw)

    @classmethod
    def decode(cls, raw: bytes | str) -> StoredSchedule:
        raw_text = as_text(raw)
        try:
            document = json.loads(raw_text)
            spec = ScheduleSpec(
                name=document["name"],
                flow=document["flow"],
                version=document.get("version"),
                cron=document["cron"],
                timezone=document.get("timezone", "UTC"),
                input=document.get("input"),
                overlap=document.get("overlap", "skip"),
                catch_up=document.get("catch_up", "latest"),
                paused=bool(document.get("paused", False)),
            )
            created_at = timestamp(document["created_at"])
            declared_doc = document.get("declared")
            declared = (
                Declared(str(declared_doc["flow"]), bool(declared_doc.get("enabled", True)))
                if isinstance(declared_doc, dict)
                else None
            )
            generation = str(document["generation"])
        except InvalidScheduleError:
            raise
        except (ValueError, KeyError, TypeError) as error:
            raise InvalidScheduleError(f"a stored schedule is unreadable ({error})") from None
        assert created_at is not None
        return cls(spec, generation, created_at, declared, raw_text)


@dataclass
class ScheduleState:
    """What the scheduler keeps per schedule (one JSON value in the state hash)."""

    generation: str
    created_at: datetime
    cursor: datetime
    last_fire: datetime | None = None
    last_instance_id: str | None = None
    buffered: datetime | None = None
    paused_at: datetime | None = None
    last_skipped: datetime | None = None
    last_error: str | None = None
    started: int = 0
    skipped: int = 0
    missed: int = 0
    failed: int = 0

    @classmethod
    def fresh(cls, stored: StoredSchedule, cursor: datetime | None = None) -> ScheduleState:
        return cls(
            generation=stored.generation,
            created_at=stored.created_at,
            cursor=cursor or stored.created_at,
            paused_at=stored.created_at if stored.spec.paused else None,
        )

    def encode(self) -> str:
        document: dict[str, Any] = {}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            document[item.name] = format_timestamp(value) if isinstance(value, datetime) else value
        return json.dumps(document, sort_keys=True, separators=(",", ":"))

    @classmethod
    def decode(cls, raw: bytes | str) -> ScheduleState:
        document = json.loads(as_text(raw))
        created_at = timestamp(document["created_at"])
        cursor = timestamp(document["cursor"])
        if created_at is None or cursor is None:
            raise ValueError("created_at and cursor are required")
        return cls(
            generation=str(document["generation"]),
            created_at=created_at,
            cursor=cursor,
            last_fire=timestamp(document.get("last_fire")),
            last_instance_id=document.get("last_instance_id"),
            buffered=timestamp(document.get("buffered")),
            paused_at=timestamp(document.get("paused_at")),
            last_skipped=timestamp(document.get("last_skipped")),
            last_error=document.get("last_error"),
            started=int(document.get("started", 0)),
            skipped=int(document.get("skipped", 0)),
            missed=int(document.get("missed", 0)),
            failed=int(document.get("failed", 0)),
        )

    def pause(self, now: datetime) -> None:
        self.paused_at = self.paused_at or now
        self.buffered = None

    def resume(self, now: datetime) -> None:
        """Count from now on: what passed while paused is not replayed."""
        self.cursor = max(self.cursor, now)
        self.paused_at = None
        self.buffered = None


def state_for(stored: StoredSchedule, raw: bytes | str | None, now: datetime) -> ScheduleState:
    """The schedule's state; a fresh one when none (or one of an older same-named) exists."""
    if raw is None:
        return ScheduleState.fresh(stored)
    try:
        state = ScheduleState.decode(raw)
    except (ValueError, KeyError, TypeError) as error:
        # never replay history because of a damaged record: continue from now
        log.warning(
            "schedule %s: unreadable state (%s); continuing from now", stored.spec.name, error
        )
        return ScheduleState.fresh(stored, cursor=max(now, stored.created_at))
    if state.generation != stored.generation:
        return ScheduleState.fresh(stored)
    return state


def as_text(value: bytes | str) -> str:
    """A hash field or value as text (the client may return bytes)."""
    return value.decode() if isinstance(value, bytes) else value


def timestamp(value: object) -> datetime | None:
    """A stored RFC 3339 time (UTC), None for None; ValueError for anything else."""
    if value is None:
        return None
    moment = parse_timestamp(value)
    if moment is None:
        raise ValueError(f"{value!r} is not a timestamp")
    return moment.astimezone(UTC)
