"""Commands: what the engine asks a runtime to do after a transition.

A runtime carries them out with its own primitives (a Redis stream, a Durable
``call_activity``, a Step Functions task) and reports back with events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter


@dataclass(frozen=True, slots=True)
class RunActivity:
    """Run a registered activity once; report ActivityCompleted or ActivityFailed."""

    call_id: str
    activity: str
    input: Any
    position: str
    attempt: int
    idempotency_key: str
    timeout_seconds: int | None = None
    kind: Literal["run_activity"] = "run_activity"


@dataclass(frozen=True, slots=True)
class StartTimer:
    """Report TimerFired(timer_id) at ``fire_at`` (an absolute UTC RFC 3339 time)."""

    timer_id: str
    fire_at: str
    purpose: str
    position: str
    kind: Literal["start_timer"] = "start_timer"


@dataclass(frozen=True, slots=True)
class AwaitEvent:
    """Deliver the next external event named ``event`` as EventReceived."""

    wait_id: str
    event: str
    position: str
    kind: Literal["await_event"] = "await_event"


@dataclass(frozen=True, slots=True)
class StartChildFlow:
    """Start ``flow`` (``version``, else the latest) as ``child_instance_id``.

    Report ChildFinished when it ends.
    """

    call_id: str
    flow: str
    version: str | None
    input: Any
    child_instance_id: str
    position: str
    kind: Literal["start_child_flow"] = "start_child_flow"


@dataclass(frozen=True, slots=True)
class CancelWork:
    """Work the engine no longer waits for: a runtime may stop it; its result will be refused."""

    work_id: str
    work_kind: str
    child_instance_id: str | None = None
    """The child flow to stop, for a ``start_child_flow``: its id is not always derivable
    from the work id (a positional child is named by position and attempt)."""
    kind: Literal["cancel_work"] = "cancel_work"


@dataclass(frozen=True, slots=True)
class FinishFlow:
    """The instance reached its end: nothing more will be asked."""

    status: str
    output: Any = None
    error: str | None = None
    cause: str | None = None
    kind: Literal["finish_flow"] = "finish_flow"


Command = Annotated[
    RunActivity | StartTimer | AwaitEvent | StartChildFlow | CancelWork | FinishFlow,
    Field(discriminator="kind"),
]
COMMAND_ADAPTER: TypeAdapter[Command] = TypeAdapter(Command)
