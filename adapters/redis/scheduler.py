"""The cron scheduler of the Redis runner: one leader among many processes starts flows on time.

What a schedule is, when it fires (cron in a time zone, daylight saving time) and which
fires are due after downtime (the catch-up policy) is decided in core
(``rustyflower.core.schedules``), the same for every runtime; the specs and their
bookkeeping live in ``schedule_store``. This module is the loop that acts on them.

What the loop promises
----------------------
* **One run per fire, ever.** The run of a fire has a deterministic instance id
  (``scheduled_instance_id``: ``nightly@2024-03-31T00:00:00Z``), and starting an id that
  exists returns the existing instance. Two schedulers that both believe they lead (a lease
  lost mid-tick, a paused process waking up) therefore cannot start a fire twice; a fire
  whose instance exists already is adopted as this schedule's latest run.
* **Catch-up** after downtime follows the schedule's policy (``core.schedules.firing``):
  ``catch_up=all`` starts at most ``max_catch_up`` (100) fires per tick and logs a warning
  when capped; the next tick continues. Catch-up runs go through the overlap policy like
  any other fire: with ``overlap=skip`` and a flow that runs longer than an instant,
  ``catch_up=all`` starts the first missed fire and skips the rest; use ``overlap=allow``
  to get all of them.
* **Overlap** (the previous run of this schedule is still ``running`` in the store; a held
  instance counts as running):
    - ``skip`` (default): the fire is skipped and counted as ``skipped``.
    - ``allow``: the run starts anyway.
    - ``buffer_one``: the fire is remembered (at most one) and started as soon as the
      previous run has finished, with the id of the fire it stands for; later fires while
      one is buffered are skipped.
* **A fire that cannot start** (the flow or version is not registered, its definition is
  broken) is logged, counted as ``failed`` with ``last_error``, and skipped; the loop and
  the other schedules go on.
* **Leadership**: a lease key (``Keyspace.scheduler_lease()``) taken with ``SET NX PX`` and
  renewed by its holder on every tick (the ``LEASE`` script). A holder that stops renewing
  loses it after ``lease_seconds``; another scheduler then takes over. ``run`` releases
  the lease when it stops, so a successor takes over at its next tick. Each scheduler
  needs a distinct ``holder`` name.

Time comes only from the injected clock (aware datetimes); ``tick`` never sleeps.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import redis

from rustyflower.adapters.redis import scripts
from rustyflower.adapters.redis.conductor import Conductor, utc_now
from rustyflower.adapters.redis.schedule_records import (
    ScheduleState,
    StoredSchedule,
    as_text,
    state_for,
)
from rustyflower.adapters.redis.schedule_store import Clock, ScheduleStore
from rustyflower.adapters.redis.store import RedisStore, UnknownFlowError, UnknownInstanceError
from rustyflower.core.errors import RustyFlowerError
from rustyflower.core.schedules import (
    DEFAULT_MISFIRE_GRACE,
    MAX_CATCH_UP,
    ScheduleSpec,
    due_fires,
    scheduled_instance_id,
)
from rustyflower.core.timeutil import format_timestamp, require_aware

log = logging.getLogger("rustyflower.scheduler")

_MAX_BACKOFF = 5.0


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

    def tick(self) -> list[str]:
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
        for name, raw_spec, raw_state in self.schedules.records():
            if not self.is_leader():
                log.warning("scheduler %s: lease ran out during a tick; stopping it", self.holder)
                break
            try:
                stored = StoredSchedule.decode(raw_spec)
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
        self, stored: StoredSchedule, raw_state: bytes | str | None, now: datetime
    ) -> list[str]:
        spec = stored.spec
        if spec.paused:
            return []
        state = state_for(stored, raw_state, now)
        before = as_text(raw_state) if raw_state is not None else None  # damaged: rewritten
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
        if after != before and not self.schedules.save_state(spec.name, raw_state, state):
            log.debug("schedule %s changed meanwhile; the next tick goes on from there", spec.name)
        return started

    def _due(self, spec: ScheduleSpec, state: ScheduleState, now: datetime) -> list[datetime]:
        """The fires to act on now (catch-up applied); advances ``state.cursor``."""
        due = due_fires(
            spec,
            state.cursor,
            now,
            misfire_grace=self.misfire_grace,
            max_catch_up=self.max_catch_up,
        )
        if due.more_due:
            log.warning(
                "schedule %s: more than %d fires are due (catch_up=all); starting the "
                "oldest %d now, the rest on the next ticks",
                spec.name,
                self.max_catch_up,
                len(due.fires),
            )
        if due.missed:
            state.missed += due.missed
            log.info(
                "schedule %s: %s%d fire(s) missed while no scheduler ran; %s",
                spec.name,
                "over " if due.more_missed else "",
                due.missed,
                "only the latest one starts"
                if spec.catch_up == "latest"
                else "catch_up=none skips them",
            )
        state.cursor = due.cursor
        return due.fires

    def _fire(
        self, spec: ScheduleSpec, fire: datetime, state: ScheduleState, started: list[str]
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

    def _adopt(self, spec: ScheduleSpec, fire: datetime, state: ScheduleState) -> bool:
        """The run of this fire exists already (another scheduler, an earlier try): adopt it."""
        instance_id = scheduled_instance_id(spec.name, fire)
        if not self.store.exists(instance_id):
            return False
        if state.last_fire is None or fire >= state.last_fire:
            state.last_fire = fire
            state.last_instance_id = instance_id
        return True

    def _start(
        self, spec: ScheduleSpec, fire: datetime, state: ScheduleState, started: list[str]
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

    def _failed(
        self, spec: ScheduleSpec, fire: datetime, state: ScheduleState, reason: str
    ) -> None:
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
