"""``rustyflower worker --processes N``: N worker processes under one supervisor.

A worker's threads share one interpreter lock, so one worker process uses about one core
however many threads it runs. More processes use more cores; they share the work safely
(each transition is one atomic compare-and-set, a dead process's work is reclaimed), as
workers on other machines do.

The supervisor starts N copies of the same command line, each a single worker process
(``RUSTYFLOWER_WORKER_PROCESS`` tells a copy its number), in a session of its own, so
that Ctrl-C reaches the supervisor only; it forwards SIGTERM (graceful: running
activities finish) and a second Ctrl-C forwards it again (stop now). A copy that exits
is started again after a pause; one that keeps exiting soon after its start (a bad URL,
a signing key the fleet disagrees with, an unhealthy worker) makes the supervisor stop
every copy and exit with that copy's code. Only copy 0 runs the cron scheduler (it has a
lease anyway). A copy whose supervisor dies (kill -9) stops by itself.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

log = logging.getLogger("rustyflower.cli")

CHILD_VARIABLE = "RUSTYFLOWER_WORKER_PROCESS"
PARENT_VARIABLE = "RUSTYFLOWER_WORKER_SUPERVISOR"
RESTART_DELAY = 1.0
QUICK_EXIT = 10.0
"""A copy that exits within this many seconds of its start counts as failing to start."""
GIVE_UP_AFTER = 3
"""Quick exits in a row after which the supervisor stops everything."""


def child_index() -> int | None:
    """This process's number among the supervisor's copies; None when not a copy."""
    raw = os.environ.get(CHILD_VARIABLE)
    if raw is None or not raw.isdigit():
        return None
    return int(raw)


def orphaned() -> bool:
    """True in a copy whose supervisor is gone (it stops instead of running unwatched)."""
    raw = os.environ.get(PARENT_VARIABLE)
    return raw is not None and raw.isdigit() and os.getppid() != int(raw)


@dataclass
class Copy:
    index: int
    process: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)
    quick_exits: int = 0


class Supervisor:
    """Runs ``processes`` copies of ``argv`` (this program's arguments) until a signal."""

    def __init__(self, processes: int, argv: Sequence[str], grace_period: float) -> None:
        self.processes = processes
        self.argv = list(argv)
        self.grace_period = grace_period
        self._stop = threading.Event()
        self._signals = 0

    def _spawn(self, index: int, quick_exits: int = 0) -> Copy:
        environment = {
            **os.environ,
            CHILD_VARIABLE: str(index),
            PARENT_VARIABLE: str(os.getpid()),
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "rustyflower.adapters.cli.main", *self.argv],
            env=environment,
            start_new_session=True,
        )
        log.info("worker process %d started (pid %d)", index, process.pid)
        return Copy(index, process, quick_exits=quick_exits)

    def _on_signal(self, signum: int, frame: object) -> None:
        self._signals += 1
        self._stop.set()

    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT (exit 0) or a copy that cannot run (its code)."""
        previous = {
            signum: signal.signal(signum, self._on_signal)
            for signum in (signal.SIGTERM, signal.SIGINT)
        }
        copies = [self._spawn(index) for index in range(self.processes)]
        code = 0
        forwarded = 0
        try:
            while not self._stop.wait(0.2):
                for position, copy in enumerate(copies):
                    returned = copy.process.poll()
                    if returned is None:
                        continue
                    quick = time.monotonic() - copy.started < QUICK_EXIT
                    exits = copy.quick_exits + 1 if quick else 0
                    if exits >= GIVE_UP_AFTER:
                        log.error(
                            "worker process %d exited %d times in a row soon after starting "
                            "(last exit code %d); stopping every worker process",
                            copy.index,
                            exits,
                            returned,
                        )
                        code = returned or 1
                        self._stop.set()
                        break
                    log.warning(
                        "worker process %d exited (code %d); starting it again in %.0fs",
                        copy.index,
                        returned,
                        RESTART_DELAY,
                    )
                    if self._stop.wait(RESTART_DELAY):
                        break
                    copies[position] = self._spawn(copy.index, exits)
        finally:
            deadline = time.monotonic() + self.grace_period + 10
            while any(copy.process.poll() is None for copy in copies):
                if forwarded < max(1, self._signals):  # a second Ctrl-C: forward it too
                    forwarded += 1
                    for copy in copies:
                        if copy.process.poll() is None:
                            copy.process.send_signal(signal.SIGTERM)
                if time.monotonic() > deadline:
                    for copy in copies:
                        if copy.process.poll() is None:
                            log.warning("worker process %d did not stop: killed", copy.index)
                            copy.process.kill()
                    break
                time.sleep(0.1)
            for copy in copies:
                copy.process.wait()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return code
