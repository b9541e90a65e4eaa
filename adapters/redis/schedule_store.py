"""Schedules in Redis: add, list, pause, resume, remove, and ``sync_flow`` for declared ones.

What a schedule is and when it fires is core's (``rustyflower.core.schedules``); this store
keeps the specs and each schedule's bookkeeping (``schedule_records``), and the leader loop
(``scheduler``) acts on them. Every write is a compare-and-set of one hash field
(``HASH_FIELD_CAS``), so an operator's pause and the leader's bookkeeping never overwrite
each other; each key is touched alone, so this works on Redis Cluster too.

Paused schedules do not fire and forget a buffered fire. Resuming does not replay what was
missed while paused: counting restarts at the resume time (like ``catch_up=none``).
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from rustyflower.adapters.redis import scripts
from rustyflower.adapters.redis.conductor import utc_now
from rustyflower.adapters.redis.keys import Keyspace
from rustyflower.adapters.redis.schedule_records import (
    Declared,
    ScheduleState,
    StoredSchedule,
    as_text,
    state_for,
)
from rustyflower.core.errors import InvalidScheduleError, RustyFlowerError
from rustyflower.core.model import FlowDefinition
from rustyflower.core.schedules import (
    DEFAULT_MISFIRE_GRACE,
    ScheduleSpec,
    declared_schedules,
    next_fire,
)
from rustyflower.core.timeutil import format_timestamp, require_aware

log = logging.getLogger("rustyflower.scheduler")

Clock = Callable[[], datetime]

_CAS_ATTEMPTS = 50


class ScheduleExistsError(RustyFlowerError, ValueError):
    """A schedule of that name exists already (and replacing it was not asked for)."""


class UnknownScheduleError(RustyFlowerError, LookupError):
    """No schedule of that name exists."""

    def __init__(self, name: str, known: builtins.list[str]) -> None:
        self.name = name
        self.known = known
        hint = f" (known: {', '.join(known)})" if known else " (no schedules yet)"
        super().__init__(f"unknown schedule {name!r}{hint}")


class ScheduleContentionError(RustyFlowerError):
    """A schedule kept changing while it was being updated; nothing was changed."""


@dataclass(frozen=True)
class ScheduleView:
    """A schedule as listed: its spec, when it fired last and when it fires next."""

    spec: ScheduleSpec
    last_fire: datetime | None
    next_fire: datetime | None
    """None when paused. In the past when no scheduler ran since: the fire is then due."""
    last_instance_id: str | None
    buffered_fire: datetime | None = None
    started: int = 0
    skipped: int = 0
    missed: int = 0
    failed: int = 0
    last_error: str | None = None
    created_at: datetime | None = None
    declared_by: str | None = None
    """The flow whose definition declared it (``sync_flow``), None when added by hand."""

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values (times as RFC 3339 text), for the CLI and HTTP API."""

        def text(moment: datetime | None) -> str | None:
            return format_timestamp(moment) if moment is not None else None

        return {
            **self.spec.document(),
            "last_fire": text(self.last_fire),
            "next_fire": text(self.next_fire),
            "last_instance_id": self.last_instance_id,
            "buffered_fire": text(self.buffered_fire),
            "started": self.started,
            "skipped": self.skipped,
            "missed": self.missed,
            "failed": self.failed,
            "last_error": self.last_error,
            "created_at": text(self.created_at),
            "declared_by": self.declared_by,
        }


class ScheduleStore:
    """Schedules in Redis: add, list, pause, resume, remove; ``sync_flow`` for declared ones."""

    def __init__(self, client: redis.Redis, keyspace: Keyspace, *, clock: Clock = utc_now) -> None:
        self.client = client
        self.keys = keyspace
        self.clock = clock
        self._cas = client.register_script(scripts.HASH_FIELD_CAS)

    def add(self, spec: ScheduleSpec, replace: bool = False) -> None:
        """Create a schedule; ScheduleExistsError (a ValueError) when it exists, unless replace.

        Replacing keeps the schedule's history (last fire, counts), so changing its cron
        or input does not replay anything; pausing or resuming through ``replace`` works
        like ``pause`` and ``resume``.
        """
        self._put(spec, replace=replace, declared=None)

    def get(self, name: str) -> ScheduleSpec:
        return self._stored(name).spec

    def pause(self, name: str) -> None:
        """Stop firing (idempotent); a buffered fire is dropped."""
        self._set_paused(name, True)

    def resume(self, name: str) -> None:
        """Fire again, counting from now: fires missed while paused are not replayed."""
        self._set_paused(name, False)

    def remove(self, name: str) -> None:
        """Delete the schedule and its state; runs it started are not touched."""
        if not self.client.hdel(self.keys.schedules(), name):
            raise self._unknown(name)
        self.client.hdel(self.keys.schedule_state(), name)

    def sync_flow(self, definition: FlowDefinition) -> builtins.list[str]:
        """Create or update the schedules ``definition`` declares; return their names.

        Each is named ``f"{flow}:{schedule.name or index}"`` and starts that definition's
        version. ``enabled: false`` pauses it; a schedule an operator paused stays paused.
        Schedules this flow declared before and declares no more are removed (schedules
        added by hand are never touched).
        """
        declared = declared_schedules(definition)  # a valid definition has no problem here
        names = [schedule.spec.name for schedule in declared]
        for schedule in declared:
            existing = self._find(schedule.spec.name)
            operator_paused = (
                existing is not None
                and existing.spec.paused
                and (existing.declared is None or existing.declared.enabled)
            )
            wanted = dataclasses.replace(
                schedule.spec, paused=not schedule.enabled or operator_paused
            )
            self._put(wanted, replace=True, declared=Declared(definition.name, schedule.enabled))
        for stored in self._all():
            stale = stored.declared is not None and stored.declared.flow == definition.name
            if stale and stored.spec.name not in names:
                with contextlib.suppress(UnknownScheduleError):
                    self.remove(stored.spec.name)
                log.info(
                    "schedule %s removed: %s no longer declares it",
                    stored.spec.name,
                    definition.name,
                )
        return names

    def list(self) -> builtins.list[ScheduleView]:
        """Every schedule, by name, with its last and next fire."""
        specs = self.client.hgetall(self.keys.schedules())
        states = {as_text(k): v for k, v in self.client.hgetall(self.keys.schedule_state()).items()}
        now = self._now()
        views: list[ScheduleView] = []
        for raw_name, raw in sorted(specs.items(), key=lambda item: as_text(item[0])):
            try:
                stored = StoredSchedule.decode(raw)
            except InvalidScheduleError as error:
                log.warning("schedule %s: %s", as_text(raw_name), error)
                continue
            state = state_for(stored, states.get(as_text(raw_name)), now)
            cursor = state.cursor if state.paused_at is None else max(state.cursor, now)
            views.append(
                ScheduleView(
                    spec=stored.spec,
                    last_fire=state.last_fire,
                    next_fire=next_fire(
                        stored.spec, cursor, now, misfire_grace=DEFAULT_MISFIRE_GRACE
                    ),
                    last_instance_id=state.last_instance_id,
                    buffered_fire=state.buffered,
                    started=state.started,
                    skipped=state.skipped,
                    missed=state.missed,
                    failed=state.failed,
                    last_error=state.last_error,
                    created_at=stored.created_at,
                    declared_by=stored.declared.flow if stored.declared else None,
                )
            )
        return views

    # --- what the Scheduler reads and writes ------------------------------------------------

    def records(self) -> builtins.list[tuple[str, bytes | str, bytes | str | None]]:
        """(name, raw spec, raw state) of every schedule."""
        specs = self.client.hgetall(self.keys.schedules())
        states = {as_text(k): v for k, v in self.client.hgetall(self.keys.schedule_state()).items()}
        return [
            (as_text(name), raw, states.get(as_text(name)))
            for name, raw in sorted(specs.items(), key=lambda item: as_text(item[0]))
        ]

    def save_state(self, name: str, expected: bytes | str | None, state: ScheduleState) -> bool:
        """Write ``state`` unless the stored one is no longer ``expected``; True when written."""
        previous = as_text(expected) if expected is not None else None
        return self._swap(self.keys.schedule_state(), name, previous, state.encode())

    # --- internals ---------------------------------------------------------------------------

    def _now(self) -> datetime:
        return require_aware(self.clock()).astimezone(UTC)

    def _unknown(self, name: str) -> UnknownScheduleError:
        known = sorted(as_text(key) for key in self.client.hkeys(self.keys.schedules()))
        return UnknownScheduleError(name, known)

    def _find(self, name: str) -> StoredSchedule | None:
        raw = self.client.hget(self.keys.schedules(), name)
        return StoredSchedule.decode(raw) if raw is not None else None

    def _stored(self, name: str) -> StoredSchedule:
        found = self._find(name)
        if found is None:
            raise self._unknown(name)
        return found

    def _all(self) -> builtins.list[StoredSchedule]:
        found = []
        for raw in self.client.hvals(self.keys.schedules()):
            with contextlib.suppress(InvalidScheduleError):
                found.append(StoredSchedule.decode(raw))
        return found

    def _swap(self, key: str, name: str, expected: str | None, new: str | None) -> bool:
        return int(self._cas(keys=[key], args=[name, expected or "", new or ""])) == 1

    def _update_state(
        self, stored: StoredSchedule, change: Callable[[ScheduleState], None]
    ) -> None:
        for _ in range(_CAS_ATTEMPTS):
            raw = self.client.hget(self.keys.schedule_state(), stored.spec.name)
            state = state_for(stored, raw, self._now())
            change(state)
            if self.save_state(stored.spec.name, raw, state):
                return
        raise ScheduleContentionError(
            f"schedule {stored.spec.name!r} kept changing while being updated; try again"
        )

    def _put(self, spec: ScheduleSpec, *, replace: bool, declared: Declared | None) -> None:
        key = self.keys.schedules()
        for _ in range(_CAS_ATTEMPTS):
            old = self._find(spec.name)
            if old is None:
                new = StoredSchedule.make(spec, uuid.uuid4().hex, self._now(), declared)
                if self._swap(key, spec.name, None, new.raw):
                    # a new generation: a state left by an older namesake is replaced
                    self._update_state(new, lambda state: None)
                    return
                continue
            if not replace:
                raise ScheduleExistsError(
                    f"schedule {spec.name!r} exists already (replace it, or remove it first)"
                )
            new = StoredSchedule.make(spec, old.generation, old.created_at, declared)
            if new.raw == old.raw or self._replace(old, new):
                return
        raise ScheduleContentionError(f"schedule {spec.name!r} kept changing; try again")

    def _replace(self, old: StoredSchedule, new: StoredSchedule) -> bool:
        """Swap the spec; state first when resuming, so no scheduler replays the pause."""
        now = self._now()
        if old.spec.paused and not new.spec.paused:
            self._update_state(old, lambda state: state.resume(now))
        if not self._swap(self.keys.schedules(), new.spec.name, old.raw, new.raw):
            return False
        if new.spec.paused and not old.spec.paused:
            self._update_state(new, lambda state: state.pause(now))
        return True

    def _set_paused(self, name: str, paused: bool) -> None:
        for _ in range(_CAS_ATTEMPTS):
            old = self._stored(name)
            if old.spec.paused == paused:
                return
            spec = dataclasses.replace(old.spec, paused=paused)
            if self._replace(
                old, StoredSchedule.make(spec, old.generation, old.created_at, old.declared)
            ):
                log.info("schedule %s %s", name, "paused" if paused else "resumed")
                return
        raise ScheduleContentionError(f"schedule {name!r} kept changing; try again")
