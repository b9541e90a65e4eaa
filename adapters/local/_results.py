"""What a run leaves behind: its result and the log of activity calls."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rustyflower.core.engine import Snapshot


@dataclass(frozen=True, slots=True)
class ActivityCall:
    """One execution of an activity (a re-run after a failover is a second entry)."""

    instance_id: str
    call_id: str
    activity: str
    attempt: int
    idempotency_key: str
    at: datetime
    """When the runtime started it (virtual time on a virtual clock)."""


@dataclass(frozen=True)
class RunResult:
    """How one instance's run ended (or stalled)."""

    status: str
    output: Any
    error: str | None
    cause: str | None
    transitions: int
    """How many transitions the instance went through (the final snapshot's ``seq``)."""
    snapshot: Snapshot
    elapsed_seconds: float
    """Time from the start to the last event of the run (virtual time on a virtual clock)."""
    events_delivered: int
    stale_events: int
    """Events the engine refused as a lost race (a result after its timeout, say)."""
    unheard_events: int
    """Events sent by name when nothing waited for them (refused with NoWaiterError)."""
    cuts: int
    failovers: int
    calls: tuple[ActivityCall, ...]
    """Every activity execution of this run and of its child flows."""
    abandoned_calls: int = 0
    """Activity calls whose result was dropped because nothing waited for it any more
    (their task timed out, or the flow moved on); a real clock leaves them running."""

    @property
    def finished(self) -> bool:
        return self.status != "running"
