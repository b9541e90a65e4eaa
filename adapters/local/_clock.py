"""The two clocks of the in-process runtime: real time, and virtual time that jumps.

A clock answers three questions for the runtime: what time it is, how long an activity
call takes, and how to wait for the next thing due.

* :class:`VirtualClock`: a call runs at once, inline, and its result is due the call's
  declared (virtual) duration later; waiting jumps the clock to the next thing due.
  Nothing sleeps, so a flow that waits an hour runs in microseconds and every run is
  deterministic.
* :class:`RealClock`: a call runs in a thread of its own and its result is due when it
  returns; waiting sleeps until the next thing is due or a call returns. A call the
  engine stops waiting for (its task timed out, the flow ended) is *abandoned*: it is not
  interrupted (Python cannot stop a thread), its result is dropped when it comes. This
  is what the Redis worker does with a late result: the engine's task-timeout timer
  decides, at the deadline, and the call's completion is refused afterwards.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from rustyflower.adapters.local._errors import CallCrashedError
from rustyflower.core.engine import Event

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
"""Where a virtual clock starts unless told otherwise."""

DEFAULT_CONCURRENCY = 4
"""Activity calls a real clock runs at once (the Redis worker's default concurrency)."""

DEFAULT_MAX_WAIT_SECONDS = 3600.0
"""The longest a real clock sleeps for one timer or event before the run stops waiting."""

Call = Callable[[int | None], Event]
"""One activity call, ready to run with a real-time limit in seconds (None: none) for
the activities that can be stopped (async ones); returns ActivityCompleted or
ActivityFailed."""


@dataclass(frozen=True, slots=True)
class Finished:
    """An activity call returned ``event`` at ``at``."""

    call_id: str
    event: Event
    at: datetime


class Clock(Protocol):
    """What the in-process runtime needs from time."""

    def now(self) -> datetime:
        """The current time (aware, UTC)."""
        ...

    def fork(self, not_before: datetime | None = None) -> Clock:
        """A clock for another runtime (a child flow, a failover) that starts now (or at
        ``not_before``, if that is later) and shares nothing else with this one."""
        ...

    def call(
        self,
        call_id: str,
        work: Call,
        declared_seconds: float,
        timeout_seconds: int | None,
        started: datetime,
    ) -> None:
        """Start an activity call at ``started``; its result comes back through ``finished``.

        ``declared_seconds`` is how long the call lasts on a virtual clock, where its task's
        ``timeout_seconds`` is left to the engine's timer; a real clock ignores the declared
        time (the call lasts as long as it runs) and stops an async call at its timeout.
        """
        ...

    def abandon(self, call_id: str) -> None:
        """Nobody waits for this call any more: drop its result (and do not start it)."""
        ...

    def finished(self) -> list[Finished]:
        """The calls that returned since the last time, in the order they returned."""
        ...

    def wait(self, until: datetime | None) -> bool:
        """Wait until ``until`` (None: nothing is due) or until a call returns.

        False when nothing will come: nothing is due and no call is running, or (on a
        real clock) the next thing is due further away than the clock waits.
        """
        ...


class VirtualClock:
    """Time that jumps to the next thing due; calls run inline and take declared time."""

    def __init__(self, start: datetime = EPOCH) -> None:
        if start.tzinfo is None:
            raise ValueError("a virtual clock starts at an aware (UTC) time")
        self._now = start
        self._finished: list[Finished] = []

    def now(self) -> datetime:
        return self._now

    def move_to(self, moment: datetime) -> None:
        """Set the time (never backwards)."""
        self._now = max(self._now, moment)

    def fork(self, not_before: datetime | None = None) -> VirtualClock:
        start = self._now if not_before is None else max(self._now, not_before)
        return VirtualClock(start)

    def call(
        self,
        call_id: str,
        work: Call,
        declared_seconds: float,
        timeout_seconds: int | None,
        started: datetime,
    ) -> None:
        event = work(None)  # virtual time: the declared duration and the timer decide
        due = started + timedelta(seconds=declared_seconds)
        self._finished.append(Finished(call_id, event, due))

    def abandon(self, call_id: str) -> None:
        # a result already handed over is cancelled in the runtime's agenda
        self._finished = [item for item in self._finished if item.call_id != call_id]

    def finished(self) -> list[Finished]:
        found, self._finished = self._finished, []
        return found

    def wait(self, until: datetime | None) -> bool:
        if until is None:
            return False  # every call has already returned: nothing else can happen
        self.move_to(until)
        return True


@dataclass(frozen=True, slots=True)
class _Crashed:
    """A call raised past ``perform`` (a BaseException such as SystemExit)."""

    call_id: str
    error: BaseException


class RealClock:
    """The wall clock; calls run in threads, at most ``concurrency`` at a time.

    Waiting sleeps; ``max_wait_seconds`` bounds it: when nothing runs and the next thing
    is due further away than that, the run stops waiting and leaves the instance as it is
    (``rustyflower run`` then reports it waiting).
    """

    def __init__(
        self,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if max_wait_seconds < 0:
            raise ValueError("max_wait_seconds cannot be negative")
        self.concurrency = concurrency
        self.max_wait_seconds = max_wait_seconds
        self._returned: queue.SimpleQueue[Finished | _Crashed] = queue.SimpleQueue()
        self._queued: deque[tuple[str, Call, int | None]] = deque()
        self._running: set[str] = set()
        self._abandoned: set[str] = set()
        self._finished: list[Finished] = []

    def now(self) -> datetime:
        return datetime.now(UTC)

    def fork(self, not_before: datetime | None = None) -> RealClock:
        return RealClock(concurrency=self.concurrency, max_wait_seconds=self.max_wait_seconds)

    def call(
        self,
        call_id: str,
        work: Call,
        declared_seconds: float,
        timeout_seconds: int | None,
        started: datetime,
    ) -> None:
        self._queued.append((call_id, work, timeout_seconds))
        self._start_queued()

    def abandon(self, call_id: str) -> None:
        if call_id in self._running:
            self._abandoned.add(call_id)  # it runs on; its result will be dropped
        self._queued = deque(item for item in self._queued if item[0] != call_id)
        self._finished = [item for item in self._finished if item.call_id != call_id]

    def finished(self) -> list[Finished]:
        while True:
            try:
                self._receive(self._returned.get_nowait())
            except queue.Empty:
                break
        found, self._finished = self._finished, []
        return found

    def wait(self, until: datetime | None) -> bool:
        delay = None if until is None else (until - self.now()).total_seconds()
        if delay is not None and delay <= 0:
            return True
        within_reach = delay is not None and delay <= self.max_wait_seconds
        if not self._live():
            if not within_reach:
                return False
            assert delay is not None
            time.sleep(delay)
            return True
        # a call is running: wake when it returns, or when the next thing is due
        with contextlib.suppress(queue.Empty):
            self._receive(self._returned.get(timeout=delay if within_reach else None))
        return True

    def _live(self) -> bool:
        """Some call whose result is still wanted is running or waiting for a thread."""
        return bool(self._running - self._abandoned) or bool(self._queued)

    def _start_queued(self) -> None:
        while self._queued and len(self._running) < self.concurrency:
            call_id, work, timeout_seconds = self._queued.popleft()
            self._running.add(call_id)
            thread = threading.Thread(
                target=self._run,
                args=(call_id, work, timeout_seconds),
                name=f"rustyflower-call-{call_id}",
            )
            # an abandoned call must not keep the process alive (`rustyflower run` exits
            # at the deadline, as a worker's process would go on without waiting for it)
            thread.daemon = True
            thread.start()

    def _run(self, call_id: str, work: Call, timeout_seconds: int | None) -> None:
        try:
            event = work(timeout_seconds)
        except BaseException as error:  # handed to the runtime's thread, never lost
            self._returned.put(_Crashed(call_id, error))
            return
        self._returned.put(Finished(call_id, event, self.now()))

    def _receive(self, item: Finished | _Crashed) -> None:
        self._running.discard(item.call_id)
        abandoned = item.call_id in self._abandoned
        self._abandoned.discard(item.call_id)
        self._start_queued()
        if isinstance(item, _Crashed):
            raise CallCrashedError(
                f"activity call {item.call_id} raised {type(item.error).__name__}: {item.error}"
            ) from item.error
        if not abandoned:
            self._finished.append(item)
