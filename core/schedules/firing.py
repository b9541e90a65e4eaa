"""Which fires a scheduler acts on now, and when a schedule fires next: catch-up as arithmetic.

A schedule's *cursor* is the instant up to which its fires are dealt with (started,
skipped or counted as missed); counting starts at the schedule's creation, so fires at or
before it never run. A fire is *missed* when it is more than ``misfire_grace`` seconds
(default 60) old when a scheduler sees it; younger fires are on time (a leader that died
is replaced within its lease, well inside the grace). After downtime the catch-up policy
decides:

* ``none``: missed fires are dropped (counted as missed); the schedule continues with the
  next fire from now.
* ``latest`` (default): one run, for the most recent due fire; the older ones are counted
  as missed.
* ``all``: every due fire starts, oldest first, at most ``max_catch_up`` (100) per tick;
  the next tick continues.

The overlap policy then applies to each fire, like to any other (see the Redis scheduler).
Pure: ``now`` is an argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from rustyflower.core.schedules.cron import fires_between, latest_fire
from rustyflower.core.schedules.spec import ScheduleSpec, next_fires

DEFAULT_MISFIRE_GRACE = 60.0
"""Seconds after its time during which a fire still counts as on time (not missed)."""
MAX_CATCH_UP = 100
"""Fires ``catch_up=all`` starts per schedule and tick."""
MISSED_COUNT_LIMIT = 10_000
"""Counting missed fires stops here (for a minutely schedule: 7 days of downtime)."""

_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class DueFires:
    """What a tick does with one schedule's fires up to now."""

    fires: list[datetime]
    """The fires to act on now, oldest first."""
    cursor: datetime
    """The schedule's new cursor: every fire up to it is dealt with."""
    missed: int = 0
    """Fires the catch-up policy dropped."""
    more_missed: bool = False
    """Counting stopped at ``MISSED_COUNT_LIMIT``: more than ``missed`` were dropped."""
    more_due: bool = False
    """``catch_up=all`` left due fires beyond ``max_catch_up`` for the next tick."""


def due_fires(
    spec: ScheduleSpec,
    cursor: datetime,
    now: datetime,
    *,
    misfire_grace: float = DEFAULT_MISFIRE_GRACE,
    max_catch_up: int = MAX_CATCH_UP,
) -> DueFires:
    """The fires of ``spec`` after ``cursor`` to act on at ``now``, under its catch-up policy."""
    cron, zone = spec.cron, spec.timezone
    if spec.catch_up == "all":
        fires, more = fires_between(cron, zone, cursor, now, max_catch_up)
        return DueFires(fires, fires[-1] if fires else cursor, more_due=more)
    if spec.catch_up == "latest":
        latest = latest_fire(cron, zone, cursor, now)
        if latest is None:
            return DueFires([], cursor)
        missed, more = fires_between(cron, zone, cursor, latest - _TICK, MISSED_COUNT_LIMIT)
        return DueFires([latest], latest, len(missed), more)
    cutoff = now - timedelta(seconds=misfire_grace)
    missed, more = fires_between(cron, zone, cursor, cutoff - _TICK, MISSED_COUNT_LIMIT)
    if missed:
        cursor = max(cursor, cutoff - _TICK)
    fires, _ = fires_between(cron, zone, cursor, now, max_catch_up)
    return DueFires(fires, fires[-1] if fires else cursor, len(missed), more)


def next_fire(
    spec: ScheduleSpec,
    cursor: datetime,
    now: datetime,
    *,
    misfire_grace: float = DEFAULT_MISFIRE_GRACE,
) -> datetime | None:
    """When ``spec`` fires next as a scheduler ticking at ``now`` will see it.

    None when paused or when it never fires again. In the past when no scheduler ran
    since: that fire is due now (``latest`` and ``all`` start it; ``none`` looks past
    the missed ones).
    """
    if spec.paused:
        return None
    upcoming = next_fires(spec, cursor)
    if not upcoming:
        return None
    cutoff = now - timedelta(seconds=misfire_grace)
    if upcoming[0] >= cutoff or spec.catch_up == "all":
        return upcoming[0]
    if spec.catch_up == "latest":
        return latest_fire(spec.cron, spec.timezone, cursor, now) or upcoming[0]
    following = next_fires(spec, cutoff - _TICK)
    return following[0] if following else None
