"""How a worker is set up (``WorkerOptions``) and what it counts (``WorkerStats``)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Literal

UnknownActivityPolicy = Literal["route", "fail"]
WEEK = 7 * 24 * 3600.0


@dataclass
class WorkerOptions:
    concurrency: int = 4
    visibility_timeout: float = 30.0
    """Seconds a message may stay unacknowledged (without heartbeat) before it is reclaimed."""
    heartbeat_interval: float = 5.0
    block_ms: int = 500
    timer_interval: float = 0.02
    grace_period: float = 30.0
    name: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    batch_size: int = 16
    """Messages taken per read while activities are quick (see batch_below_seconds)."""
    batch_below_seconds: float = 0.02
    """Activities slower than this on average are taken one message at a time."""
    send_ahead: bool = True
    """While activities are quick, a thread sends a batch's commits and works on the next
    batch while Redis runs them, reading their replies after (one Redis server; with a
    cluster client a thread always waits for its commits)."""
    run_timers: bool = True
    failure_limit: float = 120.0
    """Seconds a thread may fail every round before the worker counts as unhealthy."""
    unknown_activity: UnknownActivityPolicy = "route"
    """Work for an activity this worker lacks: "route" it to workers that have it (it
    waits, with a warning, until one runs), or "fail" the task with UnknownActivity."""
    retention_seconds: float | None = WEEK
    """Finished instances (with their history) are deleted this long after they finished;
    None keeps them forever."""
    retention_interval: float = 60.0
    trim_interval: float | None = 5.0
    """Seconds between trims of acknowledged stream entries (None: never trim)."""
    route_interval: float = 0.2
    """Seconds between reads of the streams of routed work for this worker's activities."""
    trigger_interval: float | None = 0.1
    """Seconds between rounds of the flows' triggers (None: this worker hears none)."""
    objects_dir: str | None = None
    """Where ``object.put``/``object.get`` service tasks keep objects (a folder per store);
    None keeps them in Redis, next to the runner's data (adapters/services/onprem.py)."""


@dataclass
class WorkerStats:
    activities: int = 0
    failures: int = 0
    timers: int = 0
    reclaimed: int = 0
    deferred: int = 0
    redis_errors: int = 0
    routed: int = 0
    trimmed: int = 0
    purged: int = 0
