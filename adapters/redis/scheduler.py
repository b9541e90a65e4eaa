"""Cron schedules for the Redis runner: one leader among many processes starts flows on time.

What a schedule promises
------------------------
* **Fire times** come from the 5-field cron expression (``m h dom mon dow``; the macros
  ``@hourly @daily @midnight @weekly @monthly @yearly @annually`` are accepted) read as
  wall-clock time in the schedule's IANA time zone, then converted to UTC. Daylight saving
  time is handled the way cron users expect: a daily ``0 9 * * *`` in Europe/Berlin fires
  at 08:00Z in winter and 07:00Z in summer. A wall time that does not exist (skipped by
  a spring-forward change) fires once, shifted forward by the gap (02:30 becomes 03:30
  summer time). A wall time that happens twice (fall-back) fires once, at its first
  occurrence, unless the hour field starts with ``*`` (``*/15 * * * *``, ``0 * * * *``):
  such interval-like schedules fire at both occurrences, so they keep their rhythm in
  real time. The same instant never fires twice.
* **Counting starts** at the schedule's creation (``add``) or its last fire: fires at or
  before the creation time never run.
* **One run per fire, ever.** The run of a fire has a deterministic instance id,
  ``f"{schedule name}@{fire time in UTC, ISO 8601 with Z}"`` (for example
  ``nightly@2024-03-31T00:00:00Z``), and starting an id that exists returns the existing
  instance. Two schedulers that both believe they lead (a lease lost mid-tick, a paused
  process waking up) therefore cannot start a fire twice; a fire whose instance exists
  already is adopted as this schedule's latest run.
* **Catch-up** after downtime (no scheduler ran while fire times passed). A fire is
  *missed* when it is more than ``misfire_grace`` seconds (default 60) old when the
  scheduler sees it; younger fires are on time (a leader that died is replaced within its
  lease, well inside the grace).
    - ``none``: missed fires are dropped (counted as ``missed``); the schedule continues
      with the next fire from now.
    - ``latest`` (default): one run, for the most recent due fire; the older ones are
      counted as ``missed``.
    - ``all``: every due fire starts, oldest first, at most ``max_catch_up`` (100) per
      tick (a warning is logged when capped; the next tick continues).
  Catch-up runs go through the overlap policy like any other fire: with ``overlap=skip``
  and a flow that runs longer than an instant, ``catch_up=all`` starts the first missed
  fire and skips the rest; use ``overlap=allow`` to get all of them.
* **Overlap** (the previous run of this schedule is still ``running`` in the store; a held
  instance counts as running):
    - ``skip`` (default): the fire is skipped and counted as ``skipped``.
    - ``allow``: the run starts anyway.
    - ``buffer_one``: the fire is remembered (at most one) and started as soon as the
      previous run has finished, with the id of the fire it stands for; later fires while
      one is buffered are skipped.
* **Paused** schedules do not fire and forget a buffered fire. Resuming does not replay
  what was missed while paused: counting restarts at the resume time (like
  ``catch_up=none``).
* **A fire that cannot start** (the flow or version is not registered, its definition is
  broken) is logged, counted as ``failed`` with ``last_error``, and skipped; the loop and
  the other schedules go on.
* **Leadership**: a lease key (``Keyspace.scheduler_lease()``) taken with ``SET NX PX`` and
  renewed by its holder on every tick (the ``LEASE`` script). A holder that stops renewing
  loses it after ``lease_seconds``; another scheduler then takes over. ``run`` releases
  the lease when it stops, so a successor takes over at its next tick. Each scheduler
  needs a distinct ``holder`` name.

State in Redis
--------------
``keys.schedules()`` is a hash of schedule name -> spec JSON (plus its creation time, a
generation token, and which flow declared it, for ``sync_flow``);
``keys.schedule_state()`` is a hash of name -> state JSON: ``cursor`` (fires after it are
pending), ``last_fire``, ``last_instance_id``, ``buffered``, ``paused_at``, ``created_at``
and the counts ``started``, ``skipped``, ``missed``, ``failed``. Every write is a
compare-and-set of one hash field (``HASH_FIELD_CAS``), so an operator's pause and the
leader's bookkeeping never overwrite each other; each key is touched alone, so this works
on Redis Cluster too.

Time comes only from the injected clock (aware datetimes); ``tick`` never sleeps.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import functools
import heapq
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import redis
from croniter import CroniterBadDateError, CroniterError, croniter

from rustyflower.adapters.redis import scripts
from rustyflower.adapters.redis.conductor import Conductor, utc_now
from rustyflower.adapters.redis.keys import Keyspace
from rustyflower.adapters.redis.store import RedisStore, UnknownFlowError, UnknownInstanceError
from rustyflower.core.errors import RustyFlowerError
from rustyflower.core.model import FlowDefinition
from rustyflower.core.timeutil import format_timestamp, parse_timestamp, require_aware

log = logging.getLogger("rustyflower.scheduler")

Overlap = Literal["skip", "allow", "buffer_one"]
CatchUp = Literal["none", "latest", "all"]
Clock = Callable[[], datetime]

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.:@-]{1,120}")
DEFAULT_MISFIRE_GRACE = 60.0
"""Seconds after its time during which a fire still counts as on time (not missed)."""
MAX_CATCH_UP = 100
"""Fires ``catch_up=all`` starts per schedule and tick."""

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_NEAR_CHANGE = timedelta(hours=3)  # wider than any daylight-saving shift in use
_TICK = timedelta(microseconds=1)
_MISSED_COUNT_LIMIT = 10_000  # counting missed fires stops here (a minutely schedule: 7 days)
_LATEST_WINDOWS = (timedelta(days=1), timedelta(days=32), timedelta(days=400))
_CAS_ATTEMPTS = 50
_MAX_BACKOFF = 5.0


# --- errors ---------------------------------------------------------------------------------


class InvalidScheduleError(RustyFlowerError, ValueError):
    """A schedule is not valid: its name, cron expression, time zone or options."""


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


# --- cron and time zones --------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def cron_expression(cron: str) -> str:
    """The 5-field form of ``cron`` (macros expanded); InvalidScheduleError when invalid."""
    if not isinstance(cron, str):
        raise InvalidScheduleError(f"a cron expression is text, not {type(cron).__name__}")
    text = " ".join(cron.split())
    expression = _MACROS.get(text.lower(), text)
    fields = expression.split(" ")
    if len(fields) != 5:
        raise InvalidScheduleError(
            f"{cron!r} is not a 5-field cron expression "
            "(minute hour day-of-month month day-of-week, for example '0 9 * * 1-5')"
        )
    try:
        valid = bool(croniter.is_valid(expression))
    except (CroniterError, ValueError, TypeError):
        valid = False
    if not valid:
        raise InvalidScheduleError(
            f"{cron!r} is not a valid cron expression "
            "(minute hour day-of-month month day-of-week, for example '0 9 * * 1-5')"
        )
    try:
        croniter(expression, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        raise InvalidScheduleError(f"cron expression {cron!r} never fires") from None
    return expression


@functools.lru_cache(maxsize=256)
def time_zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; InvalidScheduleError when unknown."""
    if not isinstance(name, str) or not name:
        raise InvalidScheduleError(f"a time zone is an IANA name such as 'Europe/Berlin': {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidScheduleError(
            f"unknown time zone {name!r} (use an IANA name such as 'UTC' or 'Europe/Berlin')"
        ) from None


def fire_times(cron: str, timezone: str, after: datetime) -> Iterator[datetime]:
    """Every fire time (aware, UTC) strictly after ``after``, in order, without repeats.

    The expression is matched against wall-clock time in ``timezone``; see the module
    docstring for what happens to wall times skipped or repeated by daylight saving.
    """
    expression = cron_expression(cron)
    zone = time_zone(timezone)
    after = require_aware(after).astimezone(UTC)
    repeat_folds = expression.split(" ")[1].startswith("*")
    start = after.astimezone(zone).replace(tzinfo=None)
    if _offset_changes_near(after, zone):
        # near a change, earlier wall times can map to later instants: look back, filter
        start -= _NEAR_CHANGE
    walls = croniter(expression, start)
    pending: list[datetime] = []
    last: datetime | None = None
    while True:
        try:
            wall: datetime = walls.get_next(datetime)
        except CroniterBadDateError:  # beyond croniter's range: nothing more will come
            horizon = datetime.max.replace(tzinfo=UTC)
            wall = datetime.max
        else:
            for instant in _instants(wall, zone, repeat_folds):
                heapq.heappush(pending, instant)
            horizon = _horizon(wall, zone)
        while pending and pending[0] <= horizon:
            instant = heapq.heappop(pending)
            if instant > after and (last is None or instant > last):
                last = instant
                yield instant
        if wall == datetime.max:
            return


def next_fires(spec: ScheduleSpec, after: datetime, count: int = 1) -> builtins.list[datetime]:
    """The next ``count`` fire times of ``spec`` after ``after`` (UTC)."""
    result: list[datetime] = []
    for fire in fire_times(spec.cron, spec.timezone, after):
        if len(result) >= count:
            break
        result.append(fire)
    return result


def scheduled_instance_id(schedule: str, fire: datetime) -> str:
    """The instance id of the run of ``schedule`` for the fire at ``fire``."""
    return f"{schedule}@{format_timestamp(fire)}"


def _instants(wall: datetime, zone: ZoneInfo, repeat_folds: bool) -> list[datetime]:
    first = wall.replace(tzinfo=zone, fold=0)
    second = wall.replace(tzinfo=zone, fold=1)
    instant = first.astimezone(UTC)
    if first.utcoffset() == second.utcoffset():
        return [instant]
    if instant.astimezone(zone).replace(tzinfo=None) != wall:
        # in a spring-forward gap: fold=0 reads it with the old offset, i.e. shifted forward
        return [instant]
    return [instant, second.astimezone(UTC)] if repeat_folds else [instant]


def _horizon(wall: datetime, zone: ZoneInfo) -> datetime:
    """No wall time after ``wall`` maps to an instant before this one."""
    later = wall + _NEAR_CHANGE
    offsets = [
        moment.replace(tzinfo=zone, fold=fold).utcoffset() or timedelta(0)
        for moment in (wall, later)
        for fold in (0, 1)
    ]
    return (wall - max(offsets)).replace(tzinfo=UTC)


def _offset_changes_near(instant: datetime, zone: ZoneInfo) -> bool:
    offsets = {
        (instant + delta).astimezone(zone).utcoffset()
        for delta in (-_NEAR_CHANGE, timedelta(0), _NEAR_CHANGE)
    }
    return len(offsets) > 1


def _scan(
    spec: ScheduleSpec, after: datetime, until: datetime, limit: int
) -> tuple[builtins.list[datetime], bool]:
    """Fires in (after, until], at most ``limit``; True when more were left."""
    found: list[datetime] = []
    for fire in fire_times(spec.cron, spec.timezone, after):
        if fire > until:
            return found, False
        if len(found) >= limit:
            return found, True
        found.append(fire)
    return found, False


def _latest(spec: ScheduleSpec, after: datetime, until: datetime) -> datetime | None:
    """The last fire in (after, until], looking back in growing windows (cheap when dense)."""
    for window in (*_LATEST_WINDOWS, None):
        start = after if window is None else max(after, until - window)
        latest: datetime | None = None
        for fire in fire_times(spec.cron, spec.timezone, start):
            if fire > until:
                break
            latest = fire
        if latest is not None or start == after:
            return latest
    return None


# --- the schedule ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleSpec:
    """One named schedule: start ``flow`` (``version``; None = the latest at fire time)."""

    name: str
    flow: str
    version: str | None
    cron: str
    timezone: str = "UTC"
    input: Any = None
    overlap: Overlap = "skip"
    catch_up: CatchUp = "latest"
    paused: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_PATTERN.fullmatch(self.name):
            raise InvalidScheduleError(
                f"schedule name {self.name!r} is not valid: 1 to 120 letters, digits or _ . : @ -"
            )
        if not isinstance(self.flow, str) or not self.flow.strip():
            raise InvalidScheduleError(f"schedule {self.name!r}: the flow name is missing")
        if self.version is not None and (not isinstance(self.version, str) or not self.version):
            raise InvalidScheduleError(
                f"schedule {self.name!r}: version is a non-empty string, or None for the latest"
            )
        try:
            cron_expression(self.cron)
            time_zone(self.timezone)
        except InvalidScheduleError as error:
            raise InvalidScheduleError(f"schedule {self.name!r}: {error}") from None
        if self.overlap not in get_args(Overlap):
            raise InvalidScheduleError(
                f"schedule {self.name!r}: overlap is one of skip, allow, buffer_one, "
                f"not {self.overlap!r}"
            )
        if self.catch_up not in get_args(CatchUp):
            raise InvalidScheduleError(
                f"schedule {self.name!r}: catch_up is one of none, latest, all, "
                f"not {self.catch_up!r}"
            )
        if not isinstance(self.paused, bool):
            raise InvalidScheduleError(f"schedule {self.name!r}: paused is true or false")
        try:
            json.dumps(self.input, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise InvalidScheduleError(
                f"schedule {self.name!r}: the input must be JSON ({error})"
            ) from None

    def fires_after(self, after: datetime) -> Iterator[datetime]:
        """Every fire time (UTC) strictly after ``after``."""
        return fire_times(self.cron, self.timezone, after)

    def document(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "flow": self.flow,
            "version": self.version,
            "cron": self.cron,
            "timezone": self.timezone,
            "input": self.input,
            "overlap": self.overlap,
            "catch_up": self.catch_up,
            "paused": self.paused,
        }


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


@dataclass(frozen=True)
class _Declared:
    flow: str
    enabled: bool


@dataclass(frozen=True)
class _Stored:
    """A spec as stored, with what only the store knows about it."""

    spec: ScheduleSpec
    generation: str
    created_at: datetime
    declared: _Declared | None
    raw: str

    @classmethod
    def make(
        cls,
        spec: ScheduleSpec,
        generation: str,
        created_at: datetime,
        declared: _Declared | None,
    ) -> _Stored:
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
    def decode(cls, raw: bytes | str) -> _Stored:
        text = _text(raw)
        try:
            document = json.loads(text)
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
            created_at = _time(document["created_at"])
            declared_doc = document.get("declared")
            declared = (
                _Declared(str(declared_doc["flow"]), bool(declared_doc.get("enabled", True)))
                if isinstance(declared_doc, dict)
                else None
            )
            generation = str(document["generation"])
        except InvalidScheduleError:
            raise
        except (ValueError, KeyError, TypeError) as error:
            raise InvalidScheduleError(f"a stored schedule is unreadable ({error})") from None
        assert created_at is not None
        return cls(spec, generation, created_at, declared, text)


@dataclass
class _State:
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
    def fresh(cls, stored: _Stored, cursor: datetime | None = None) -> _State:
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
    def decode(cls, raw: bytes | str) -> _State:
        document = json.loads(_text(raw))
        created_at = _time(document["created_at"])
        cursor = _time(document["cursor"])
        if created_at is None or cursor is None:
            raise ValueError("created_at and cursor are required")
        return cls(
            generation=str(document["generation"]),
            created_at=created_at,
            cursor=cursor,
            last_fire=_time(document.get("last_fire")),
            last_instance_id=document.get("last_instance_id"),
            buffered=_time(document.get("buffered")),
            paused_at=_time(document.get("paused_at")),
            last_skipped=_time(document.get("last_skipped")),
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


def _state_for(stored: _Stored, raw: bytes | str | None, now: datetime) -> _State:
    """The schedule's state; a fresh one when none (or one of an older same-named) exists."""
    if raw is None:
        return _State.fresh(stored)
    try:
        state = _State.decode(raw)
    except (ValueError, KeyError, TypeError) as error:
        # never replay history because of a damaged record: continue from now
        log.warning(
            "schedule %s: unreadable state (%s); continuing from now", stored.spec.name, error
        )
        return _State.fresh(stored, cursor=max(now, stored.created_at))
    if state.generation != stored.generation:
        return _State.fresh(stored)
    return state


def _next_fire(spec: ScheduleSpec, state: _State, now: datetime, grace: float) -> datetime | None:
    """When the schedule fires next, as the scheduler will see it."""
    if spec.paused:
        return None
    cursor = state.cursor if state.paused_at is None else max(state.cursor, now)
    upcoming = next_fires(spec, cursor)
    if not upcoming:
        return None
    cutoff = now - timedelta(seconds=grace)
    if upcoming[0] >= cutoff or spec.catch_up == "all":
        return upcoming[0]
    if spec.catch_up == "latest":
        return _latest(spec, cursor, now) or upcoming[0]
    following = next_fires(spec, cutoff - _TICK)
    return following[0] if following else None


# --- the store ------------------------------------------------------------------------------


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
        planned: list[tuple[ScheduleSpec, bool]] = []
        for index, schedule in enumerate(definition.schedules):
            name = f"{definition.name}:{schedule.name or index}"
            if any(spec.name == name for spec, _ in planned):
                raise InvalidScheduleError(
                    f"flow {definition.name!r} declares schedule {name!r} twice"
                )
            spec = ScheduleSpec(
                name=name,
                flow=definition.name,
                version=definition.version,
                cron=schedule.cron,
                timezone=schedule.timezone,
                input=schedule.input,
                overlap=schedule.overlap,
                catch_up=schedule.catch_up,
                paused=not schedule.enabled,
            )
            planned.append((spec, schedule.enabled))
        names = [spec.name for spec, _ in planned]
        for spec, enabled in planned:
            existing = self._find(spec.name)
            operator_paused = (
                existing is not None
                and existing.spec.paused
                and (existing.declared is None or existing.declared.enabled)
            )
            wanted = dataclasses.replace(spec, paused=spec.paused or operator_paused)
            self._put(wanted, replace=True, declared=_Declared(definition.name, enabled))
        for stored in self._all():
            declared = stored.declared
            stale = declared is not None and declared.flow == definition.name
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
        states = {_text(k): v for k, v in self.client.hgetall(self.keys.schedule_state()).items()}
        now = self._now()
        views: list[ScheduleView] = []
        for raw_name, raw in sorted(specs.items(), key=lambda item: _text(item[0])):
            try:
                stored = _Stored.decode(raw)
            except InvalidScheduleError as error:
                log.warning("schedule %s: %s", _text(raw_name), error)
                continue
            state = _state_for(stored, states.get(_text(raw_name)), now)
            views.append(
                ScheduleView(
                    spec=stored.spec,
                    last_fire=state.last_fire,
                    next_fire=_next_fire(stored.spec, state, now, DEFAULT_MISFIRE_GRACE),
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

    # --- internals (shared with the Scheduler) -----------------------------------------------

    def _now(self) -> datetime:
        return require_aware(self.clock()).astimezone(UTC)

    def _unknown(self, name: str) -> UnknownScheduleError:
        known = sorted(_text(key) for key in self.client.hkeys(self.keys.schedules()))
        return UnknownScheduleError(name, known)

    def _find(self, name: str) -> _Stored | None:
        raw = self.client.hget(self.keys.schedules(), name)
        return _Stored.decode(raw) if raw is not None else None

    def _stored(self, name: str) -> _Stored:
        found = self._find(name)
        if found is None:
            raise self._unknown(name)
        return found

    def _all(self) -> builtins.list[_Stored]:
        found = []
        for raw in self.client.hvals(self.keys.schedules()):
            with contextlib.suppress(InvalidScheduleError):
                found.append(_Stored.decode(raw))
        return found

    def _load(self) -> builtins.list[tuple[str, bytes | str, bytes | str | None]]:
        """(name, raw spec, raw state) of every schedule."""
        specs = self.client.hgetall(self.keys.schedules())
        states = {_text(k): v for k, v in self.client.hgetall(self.keys.schedule_state()).items()}
        return [
            (_text(name), raw, states.get(_text(name)))
            for name, raw in sorted(specs.items(), key=lambda item: _text(item[0]))
        ]

    def _swap(self, key: str, name: str, expected: str | None, new: str | None) -> bool:
        return int(self._cas(keys=[key], args=[name, expected or "", new or ""])) == 1

    def _save_state(self, name: str, expected: bytes | str | None, state: _State) -> bool:
        previous = _text(expected) if expected is not None else None
        return self._swap(self.keys.schedule_state(), name, previous, state.encode())

    def _update_state(self, stored: _Stored, change: Callable[[_State], None]) -> None:
        for _ in range(_CAS_ATTEMPTS):
            raw = self.client.hget(self.keys.schedule_state(), stored.spec.name)
            state = _state_for(stored, raw, self._now())
            change(state)
            if self._save_state(stored.spec.name, raw, state):
                return
        raise ScheduleContentionError(
            f"schedule {stored.spec.name!r} kept changing while being updated; try again"
        )

    def _put(self, spec: ScheduleSpec, *, replace: bool, declared: _Declared | None) -> None:
        key = self.keys.schedules()
        for _ in range(_CAS_ATTEMPTS):
            old = self._find(spec.name)
            if old is None:
                new = _Stored.make(spec, uuid.uuid4().hex, self._now(), declared)
                if self._swap(key, spec.name, None, new.raw):
                    # a new generation: a state left by an older namesake is replaced
                    self._update_state(new, lambda state: None)
                    return
                continue
            if not replace:
                raise ScheduleExistsError(
                    f"schedule {spec.name!r} exists already (replace it, or remove it first)"
                )
            new = _Stored.make(spec, old.generation, old.created_at, declared)
            if new.raw == old.raw or self._replace(old, new):
                return
        raise ScheduleContentionError(f"schedule {spec.name!r} kept changing; try again")

    def _replace(self, old: _Stored, new: _Stored) -> bool:
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
            if self._replace(old, _Stored.make(spec, old.generation, old.created_at, old.declared)):
                log.info("schedule %s %s", name, "paused" if paused else "resumed")
                return
        raise ScheduleContentionError(f"schedule {name!r} kept changing; try again")


# --- the scheduler --------------------------------------------------------------------------


class Scheduler:
    """Starts due runs of every schedule while it holds the leadership lease."""

    def __init__(
        self,
        store: RedisStore,
        conductor: Conductor,
        schedules: ScheduleStore,
        *,
        holder: str,
        lease_seconds: float = 15.0,
        clock: Clock = utc_now,
        misfire_grace: float = DEFAULT_MISFIRE_GRACE,
        max_catch_up: int = MAX_CATCH_UP,
        healthy: Callable[[], bool] | None = None,
    ) -> None:
        """``healthy`` tells whether this scheduler's process can work (its worker's threads
        are not failing); while it says no, the scheduler gives up and does not take the
        lease, so a scheduler in a healthy process leads."""
        if not holder:
            raise ValueError("a scheduler needs a holder name (unique among schedulers)")
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be above zero")
        if misfire_grace < 0 or max_catch_up < 1:
            raise ValueError("misfire_grace is >= 0 and max_catch_up >= 1")
        self.store = store
        self.conductor = conductor
        self.schedules = schedules
        self.holder = holder
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.misfire_grace = misfire_grace
        self.max_catch_up = max_catch_up
        self.healthy = healthy
        self.client = schedules.client
        self._lease = self.client.register_script(scripts.LEASE)
        self._release = self.client.register_script(scripts.LEASE_RELEASE)
        self._leader_until = 0.0  # time.monotonic() until which our lease surely holds
        self._was_leader = False

    # --- leadership --------------------------------------------------------------------------

    def is_leader(self) -> bool:
        """True while the lease this scheduler last took or renewed is still running."""
        return time.monotonic() < self._leader_until

    def renew(self) -> bool:
        """Take or renew the lease; True when this scheduler leads."""
        began = time.monotonic()
        taken = self._lease(
            keys=[self.schedules.keys.scheduler_lease()],
            args=[self.holder, max(1, round(self.lease_seconds * 1000))],
        )
        if int(taken) == 1:
            self._leader_until = began + self.lease_seconds
        else:
            self._leader_until = 0.0
        leading = int(taken) == 1
        if leading != self._was_leader:
            if leading:
                log.info("scheduler %s is now the leader", self.holder)
            else:
                log.info(
                    "scheduler %s is not the leader (another one holds the lease)", self.holder
                )
            self._was_leader = leading
        return leading

    def release(self) -> None:
        """Give up the lease now (if held), so another scheduler takes over at once."""
        self._leader_until = 0.0
        self._was_leader = False
        self._release(keys=[self.schedules.keys.scheduler_lease()], args=[self.holder])

    # --- ticking -----------------------------------------------------------------------------

    def tick(self) -> builtins.list[str]:
        """Take or renew the lease; if leading, start every due run. Returns the started ids.

        Redis errors propagate (``run`` backs off); a broken schedule is logged and skipped.
        """
        if self.healthy is not None and not self.healthy():
            if self._was_leader or self.is_leader():
                log.warning(
                    "scheduler %s: its process is unhealthy; giving up leadership", self.holder
                )
                self.release()
            return []
        if not self.renew():
            return []
        now = require_aware(self.clock()).astimezone(UTC)
        started: list[str] = []
        for name, raw_spec, raw_state in self.schedules._load():
            if not self.is_leader():
                log.warning("scheduler %s: lease ran out during a tick; stopping it", self.holder)
                break
            try:
                stored = _Stored.decode(raw_spec)
                started += self._tick_schedule(stored, raw_state, now)
            except RustyFlowerError as error:
                log.error("schedule %s: %s", name, error)
            except redis.RedisError:
                raise
            except Exception:  # one broken schedule must not stop the others
                log.exception("schedule %s: tick failed", name)
        return started

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        """Tick until ``stop`` is set; survive Redis outages (log, back off, carry on).

        The lease is renewed at least three times per ``lease_seconds`` whatever the
        interval, and released on the way out.
        """
        if interval <= 0:
            raise ValueError("interval must be above zero")
        pause = min(interval, self.lease_seconds / 3)
        failures = 0
        log.info("scheduler %s running (lease %.1fs)", self.holder, self.lease_seconds)
        try:
            while not stop.is_set():
                wait = pause
                try:
                    self.tick()
                    if failures:
                        log.info("scheduler %s: Redis is reachable again", self.holder)
                    failures = 0
                except redis.RedisError as error:
                    failures += 1
                    self._leader_until = 0.0
                    self._was_leader = False
                    wait = min(_MAX_BACKOFF, pause * 2 ** min(failures, 10))
                    level = (
                        logging.WARNING if failures == 1 or failures % 20 == 0 else logging.DEBUG
                    )
                    log.log(
                        level,
                        "scheduler %s: Redis unavailable (%s); retrying in %.1fs (failure %d)",
                        self.holder,
                        error,
                        wait,
                        failures,
                    )
                except Exception:
                    log.exception("scheduler %s: tick failed; carrying on", self.holder)
                stop.wait(wait)
        finally:
            with contextlib.suppress(redis.RedisError):
                self.release()
            log.info("scheduler %s stopped", self.holder)

    # --- one schedule ------------------------------------------------------------------------

    def _tick_schedule(
        self, stored: _Stored, raw_state: bytes | str | None, now: datetime
    ) -> builtins.list[str]:
        spec = stored.spec
        if spec.paused:
            return []
        state = _state_for(stored, raw_state, now)
        before = _text(raw_state) if raw_state is not None else None  # damaged: rewritten
        if state.paused_at is not None:  # resumed by a path that left the pause mark
            state.resume(now)
        started: list[str] = []
        if state.buffered is not None and not self._running(state.last_instance_id):
            fire, state.buffered = state.buffered, None
            log.info(
                "schedule %s: the previous run finished; starting buffered fire %s",
                spec.name,
                format_timestamp(fire),
            )
            self._start(spec, fire, state, started)
        for fire in self._due(spec, state, now):
            self._fire(spec, fire, state, started)
        after = state.encode()
        if after != before and not self.schedules._save_state(spec.name, raw_state, state):
            log.debug("schedule %s changed meanwhile; the next tick goes on from there", spec.name)
        return started

    def _due(self, spec: ScheduleSpec, state: _State, now: datetime) -> builtins.list[datetime]:
        """The fires to act on now (catch-up applied); advances ``state.cursor``."""
        cursor = state.cursor
        if spec.catch_up == "all":
            fires, more = _scan(spec, cursor, now, self.max_catch_up)
            if more:
                log.warning(
                    "schedule %s: more than %d fires are due (catch_up=all); starting the "
                    "oldest %d now, the rest on the next ticks",
                    spec.name,
                    self.max_catch_up,
                    len(fires),
                )
            if fires:
                state.cursor = fires[-1]
            return fires
        if spec.catch_up == "latest":
            latest = _latest(spec, cursor, now)
            if latest is None:
                return []
            missed, more = _scan(spec, cursor, latest - _TICK, _MISSED_COUNT_LIMIT)
            self._count_missed(spec, state, len(missed), more, "only the latest one starts")
            state.cursor = latest
            return [latest]
        cutoff = now - timedelta(seconds=self.misfire_grace)
        missed, more = _scan(spec, cursor, cutoff - _TICK, _MISSED_COUNT_LIMIT)
        self._count_missed(spec, state, len(missed), more, "catch_up=none skips them")
        if missed:
            state.cursor = max(state.cursor, cutoff - _TICK)
        fires, _ = _scan(spec, state.cursor, now, self.max_catch_up)
        if fires:
            state.cursor = fires[-1]
        return fires

    def _count_missed(
        self, spec: ScheduleSpec, state: _State, count: int, more: bool, why: str
    ) -> None:
        if not count:
            return
        state.missed += count
        log.info(
            "schedule %s: %s%d fire(s) missed while no scheduler ran; %s",
            spec.name,
            "over " if more else "",
            count,
            why,
        )

    def _fire(
        self, spec: ScheduleSpec, fire: datetime, state: _State, started: builtins.list[str]
    ) -> None:
        """Act on one due fire under the overlap policy."""
        if self._adopt(spec, fire, state):
            return
        if spec.overlap != "allow" and self._running(state.last_instance_id):
            if spec.overlap == "buffer_one" and state.buffered is None:
                state.buffered = fire
                log.info(
                    "schedule %s: fire %s waits for run %s to finish",
                    spec.name,
                    format_timestamp(fire),
                    state.last_instance_id,
                )
                return
            state.skipped += 1
            state.last_skipped = fire
            log.info(
                "schedule %s: fire %s skipped; run %s is still running",
                spec.name,
                format_timestamp(fire),
                state.last_instance_id,
            )
            return
        self._start(spec, fire, state, started)

    def _adopt(self, spec: ScheduleSpec, fire: datetime, state: _State) -> bool:
        """The run of this fire exists already (another scheduler, an earlier try): adopt it."""
        instance_id = scheduled_instance_id(spec.name, fire)
        if not self.store.exists(instance_id):
            return False
        if state.last_fire is None or fire >= state.last_fire:
            state.last_fire = fire
            state.last_instance_id = instance_id
        return True

    def _start(
        self, spec: ScheduleSpec, fire: datetime, state: _State, started: builtins.list[str]
    ) -> None:
        if self._adopt(spec, fire, state):
            return
        instance_id = scheduled_instance_id(spec.name, fire)
        try:
            self.conductor.start(
                spec.flow, spec.input, version=spec.version, instance_id=instance_id
            )
        except UnknownFlowError as error:
            self._failed(spec, fire, state, str(error))
            return
        except redis.RedisError:
            raise  # not this fire's fault: the tick is retried
        except Exception as error:  # a broken definition or input: skip this fire, go on
            self._failed(spec, fire, state, f"{type(error).__name__}: {error}")
            return
        state.started += 1
        state.last_fire = fire
        state.last_instance_id = instance_id
        state.last_error = None
        started.append(instance_id)
        log.info("schedule %s: started %s", spec.name, instance_id)

    def _failed(self, spec: ScheduleSpec, fire: datetime, state: _State, reason: str) -> None:
        state.failed += 1
        state.last_error = f"{format_timestamp(fire)}: {reason}"
        log.error("schedule %s: fire %s not started: %s", spec.name, format_timestamp(fire), reason)

    def _running(self, instance_id: str | None) -> bool:
        if instance_id is None:
            return False
        try:
            return self.store.info(instance_id).status == "running"
        except UnknownInstanceError:
            return False


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _time(value: object) -> datetime | None:
    if value is None:
        return None
    moment = parse_timestamp(value)
    if moment is None:
        raise ValueError(f"{value!r} is not a timestamp")
    return moment.astimezone(UTC)
