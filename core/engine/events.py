"""Events: what a runtime reports to the engine, and the controls an operator sends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter


@dataclass(frozen=True, slots=True)
class ActivityCompleted:
    call_id: str
    output: Any = None
    kind: Literal["activity_completed"] = "activity_completed"


@dataclass(frozen=True, slots=True)
class ActivityFailed:
    """``error`` is the error name (an activity's exception class name, or States.*)."""

    call_id: str
    error: str
    cause: str | None = None
    kind: Literal["activity_failed"] = "activity_failed"


@dataclass(frozen=True, slots=True)
class TimerFired:
    timer_id: str
    kind: Literal["timer_fired"] = "timer_fired"


@dataclass(frozen=True, slots=True)
class EventReceived:
    """An external event; ``wait_id`` picks one waiter, else the oldest waiter for it."""

    event: str
    data: Any = None
    wait_id: str | None = None
    kind: Literal["event_received"] = "event_received"


@dataclass(frozen=True, slots=True)
class ChildFinished:
    call_id: str
    status: str
    output: Any = None
    error: str | None = None
    cause: str | None = None
    kind: Literal["child_finished"] = "child_finished"


@dataclass(frozen=True, slots=True)
class CancelRequested:
    reason: str | None = None
    kind: Literal["cancel_requested"] = "cancel_requested"


@dataclass(frozen=True, slots=True)
class HoldRequested:
    """Pause: nothing new is dispatched until released (running work still reports back)."""

    reason: str | None = None
    kind: Literal["hold_requested"] = "hold_requested"


@dataclass(frozen=True, slots=True)
class ReleaseRequested:
    kind: Literal["release_requested"] = "release_requested"


@dataclass(frozen=True, slots=True)
class RetryFailedRequested:
    """Run a failed instance again from the top-level state where it failed."""

    kind: Literal["retry_failed_requested"] = "retry_failed_requested"


Event = Annotated[
    ActivityCompleted
    | ActivityFailed
    | TimerFired
    | EventReceived
    | ChildFinished
    | CancelRequested
    | HoldRequested
    | ReleaseRequested
    | RetryFailedRequested,
    Field(discriminator="kind"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
