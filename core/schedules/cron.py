"""Cron expressions read as wall-clock time in an IANA time zone, and their fire times in UTC.

The cron language (the same for every runtime)
----------------------------------------------
Five fields, ``minute hour day-of-month month day-of-week``, as croniter reads them:
numbers, names (``jan``, ``mon``), ``*``, ranges, steps and lists; ``L`` (last day) and
``W`` (nearest weekday) in the day of month; ``#`` (``5#2``, the second Friday) and ``L``
(``L5``, the last Friday) in the day of week, where Sunday is 0 or 7. The macros
``@hourly @daily @midnight @weekly @monthly @yearly @annually`` stand for their 5-field
forms. Refused: other field counts (croniter's seconds and year fields), an expression
that can never fire (``0 0 30 2 *``), and croniter's ``R`` (random) and ``H`` (hashed)
extensions, whose fire times would differ between schedulers and between ticks.

Daylight saving time
--------------------
Fire times are the expression matched against wall-clock time in the zone, converted to
UTC, the way cron users expect: a daily ``0 9 * * *`` in Europe/Berlin fires at 08:00Z in
winter and 07:00Z in summer. A wall time that does not exist (skipped by a spring-forward
change) fires once, shifted forward by the gap (02:30 becomes 03:30 summer time). A wall
time that happens twice (fall-back) fires once, at its first occurrence, unless the hour
field starts with ``*`` (``*/15 * * * *``, ``0 * * * *``): such interval-like schedules
fire at both occurrences, so they keep their rhythm in real time. The same instant never
fires twice.

Pure, as everything in core: time is an argument (croniter reads the clock only when it
is given no start time, and here it always is given one), and nothing is written. The one
thing read is the time zone database ``zoneinfo`` consults, which is static data.
"""

from __future__ import annotations

import functools
import heapq
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from rustyflower.core.errors import InvalidScheduleError
from rustyflower.core.timeutil import require_aware

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
"""The macros a cron expression may be, and the 5-field expression each stands for."""

_FIELDS_HINT = "minute hour day-of-month month day-of-week, for example '0 9 * * 1-5'"
_RANDOM_OR_HASHED = re.compile(r"^[hr](?:\(|/|$)", re.IGNORECASE)
_NEAR_CHANGE = timedelta(hours=3)  # wider than any daylight-saving shift in use
_LATEST_WINDOWS = (timedelta(days=1), timedelta(days=32), timedelta(days=400))


@functools.lru_cache(maxsize=1024)
def cron_expression(cron: str) -> str:
    """The 5-field form of ``cron`` (macros expanded, spaces tidied); InvalidScheduleError."""
    if not isinstance(cron, str):
        raise InvalidScheduleError(f"a cron expression is text, not {type(cron).__name__}")
    text = " ".join(cron.split())
    expression = MACROS.get(text.lower(), text)
    fields = expression.split(" ")
    if len(fields) != 5:
        raise InvalidScheduleError(f"{cron!r} is not a 5-field cron expression ({_FIELDS_HINT})")
    if any(_RANDOM_OR_HASHED.match(item) for field in fields for item in field.split(",")):
        raise InvalidScheduleError(
            f"{cron!r} is not a valid cron expression: random (R) and hashed (H) fields "
            "would fire at different times on different schedulers"
        )
    try:
        valid = bool(croniter.is_valid(expression))
    except (CroniterError, ValueError, TypeError):
        valid = False
    if not valid:
        raise InvalidScheduleError(f"{cron!r} is not a valid cron expression ({_FIELDS_HINT})")
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


def fires_between(
    cron: str, timezone: str, after: datetime, until: datetime, limit: int
) -> tuple[list[datetime], bool]:
    """Fires in (after, until], at most ``limit`` of them; True when more were left."""
    found: list[datetime] = []
    for fire in fire_times(cron, timezone, after):
        if fire > until:
            return found, False
        if len(found) >= limit:
            return found, True
        found.append(fire)
    return found, False


def latest_fire(cron: str, timezone: str, after: datetime, until: datetime) -> datetime | None:
    """The last fire in (after, until], looking back in growing windows (cheap when dense)."""
    for window in (*_LATEST_WINDOWS, None):
        start = after if window is None else max(after, until - window)
        latest: datetime | None = None
        for fire in fire_times(cron, timezone, start):
            if fire > until:
                break
            latest = fire
        if latest is not None or start == after:
            return latest
    return None


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
