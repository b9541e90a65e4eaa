"""Health of a worker's threads: every loop reports its rounds, so a stall is visible.

Each thread of a worker (the executors, the maintenance loop) runs in *rounds*: read and
run a batch of messages, or one pass over timers, deferred work and reclaiming. A round
either succeeds or fails (any exception: a Redis error, a reply the code did not expect,
a snapshot this worker cannot verify). A failed round is logged and retried after a
back-off; the thread never dies of it. A thread whose target function escapes anyway is
started again by its supervisor and counted as a restart.

A thread is *failing* from its first failed round until its next successful one. The
maintenance thread reports each of its steps (timers, heartbeat, trim, ...) as a part of
its own (``acting_as``), since a step that fails on every run must not be hidden by the
other steps' successes. A
worker whose thread has been failing for longer than ``failure_limit`` seconds (or whose
thread could not be kept alive) is unhealthy: ``rustyflower worker`` then exits non-zero
so that its supervisor restarts it, and its scheduler gives up leadership. A thread that
is busy (a long activity) is not failing: it simply has no round to report.

The report (``Health.report``) is what the worker's heartbeat key in Redis holds.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

MAX_BACKOFF = 5.0
FIRST_BACKOFF = 0.1


@dataclass
class ThreadHealth:
    """What one thread has reported. Times are wall-clock seconds since the epoch."""

    name: str
    rounds: int = 0
    failures: int = 0
    restarts: int = 0
    consecutive_failures: int = 0
    last_success: float | None = None
    failing_since: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    alive: bool = True

    def backoff(self) -> float:
        """Seconds to wait before the next round: doubling from 0.1 s up to 5 s."""
        if not self.consecutive_failures:
            return 0.0
        return float(min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** min(self.consecutive_failures - 1, 10)))


class Health:
    """The board every thread of one worker reports to (thread-safe)."""

    def __init__(self, failure_limit: float, clock: Callable[[], float] = time.time) -> None:
        if failure_limit <= 0:
            raise ValueError("failure_limit must be above zero (seconds)")
        self.failure_limit = failure_limit
        self.clock = clock
        self._threads: dict[str, ThreadHealth] = {}
        self._failed_this_round: set[str] = set()
        self._lock = threading.Lock()

    def register(self, name: str) -> None:
        with self._lock:
            self._threads.setdefault(name, ThreadHealth(name))

    @contextlib.contextmanager
    def acting_as(self, name: str) -> Iterator[None]:
        """Report under ``name`` in this block (a part of a thread with rounds of its own)."""
        self.register(name)
        before = getattr(_acting, "name", None)
        _acting.name = name
        try:
            yield
        finally:
            _acting.name = before

    # --- what a thread reports ------------------------------------------------------------

    def begin_round(self, name: str | None = None) -> None:
        with self._lock:
            self._failed_this_round.discard(name or _current())

    def end_round(self, name: str | None = None) -> float:
        """A round ended without raising: a success unless a failure was reported in it.

        Returns the back-off to wait before the next round (0 after a success).
        """
        name = name or _current()
        with self._lock:
            entry = self._entry(name)
            entry.rounds += 1
            if name in self._failed_this_round:
                return entry.backoff()
            entry.last_success = self.clock()
            entry.consecutive_failures = 0
            entry.failing_since = None
            return 0.0

    def failed(self, error: BaseException | str, name: str | None = None) -> float:
        """Report a failure of the current round; returns the back-off to wait."""
        name = name or _current()
        now = self.clock()
        with self._lock:
            entry = self._entry(name)
            self._failed_this_round.add(name)
            entry.failures += 1
            entry.consecutive_failures += 1
            entry.failing_since = entry.failing_since or now
            entry.last_error = _describe(error)
            entry.last_error_at = now
            return entry.backoff()

    def recovered(self, name: str | None = None) -> None:
        """A call that failed in this round went through in the end: the round may succeed."""
        with self._lock:
            self._failed_this_round.discard(name or _current())

    def restarted(self, name: str, error: BaseException) -> float:
        """The thread's loop escaped with ``error`` and is being started again."""
        backoff = self.failed(error, name)
        with self._lock:
            self._entry(name).restarts += 1
        return backoff

    def ended(self, name: str, alive: bool = False) -> None:
        with self._lock:
            self._entry(name).alive = alive

    # --- what the worker reads --------------------------------------------------------------

    def problems(self) -> list[str]:
        """Why the worker is unhealthy (empty: healthy)."""
        now = self.clock()
        found = []
        with self._lock:
            for entry in self._threads.values():
                if not entry.alive:
                    found.append(f"thread {entry.name} is not running")
                elif (
                    entry.failing_since is not None
                    and now - entry.failing_since > self.failure_limit
                ):
                    found.append(
                        f"thread {entry.name} has failed every round for "
                        f"{now - entry.failing_since:.0f} s (limit {self.failure_limit:g} s); "
                        f"last error: {entry.last_error}"
                    )
        return found

    def healthy(self) -> bool:
        return not self.problems()

    def threads(self) -> dict[str, ThreadHealth]:
        with self._lock:
            return {name: ThreadHealth(**asdict(entry)) for name, entry in self._threads.items()}

    def report(self) -> dict[str, Any]:
        problems = self.problems()
        return {
            "healthy": not problems,
            "problems": problems,
            "failure_limit": self.failure_limit,
            "threads": {name: asdict(entry) for name, entry in self.threads().items()},
        }

    def _entry(self, name: str) -> ThreadHealth:
        entry = self._threads.get(name)
        if entry is None:
            entry = self._threads[name] = ThreadHealth(name)
        return entry


_acting = threading.local()


def _current() -> str:
    return getattr(_acting, "name", None) or threading.current_thread().name


def _describe(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    text = str(error).strip()
    return f"{type(error).__name__}: {text}"[:500] if text else type(error).__name__
