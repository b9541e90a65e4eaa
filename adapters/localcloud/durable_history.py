"""The records of the local Durable host: history and action types, instances, episodes.

The numbers are the Durable Task Framework's (``HistoryEventType``, ``ActionType``) as the
Python SDK reads them from the JSON context the Functions host sends; the helpers read the
orchestrator's answer (replay schema V2) the way the Durable extension does. Used by
:mod:`.durable_host`, which plays the host.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "ENDED",
    "EPOCH",
    "ActivityRun",
    "Durations",
    "Episode",
    "HostError",
    "Instance",
    "NonDeterminismError",
    "QueuedMessage",
    "as_history",
    "flatten",
    "functions_of",
    "parse_time",
    "signature",
    "timestamp",
]

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)

# history event types (HistoryEventType) and action types (ActionType)
EXECUTION_STARTED, EXECUTION_TERMINATED = 0, 3
TASK_SCHEDULED, TASK_COMPLETED, TASK_FAILED = 4, 5, 6
SUB_CREATED, SUB_COMPLETED, SUB_FAILED = 7, 8, 9
TIMER_CREATED, TIMER_FIRED = 10, 11
ORCHESTRATOR_STARTED, ORCHESTRATOR_COMPLETED = 12, 13
EVENT_RAISED = 15

CALL_ACTIVITY, CALL_ACTIVITY_RETRY = 0, 1
CALL_SUB, CALL_SUB_RETRY = 2, 3
CONTINUE_AS_NEW, CREATE_TIMER, WAIT_FOR_EVENT = 4, 5, 6
WHEN_ANY, WHEN_ALL = 11, 12

ENDED = frozenset({"Completed", "Failed", "Terminated"})


class HostError(RuntimeError):
    """The orchestration did something the host would refuse, or the run went wrong."""


class NonDeterminismError(HostError):
    """Replaying the history gave other actions than the ones already recorded."""


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def flatten(actions: list[Any]) -> list[dict[str, Any]]:
    """Replay schema V2's action payload as the flat list of atomic actions, in order."""
    flat: list[dict[str, Any]] = []
    for action in actions:
        if isinstance(action, list):
            flat += flatten(action)
        elif action.get("actionType") in (WHEN_ANY, WHEN_ALL):
            flat += flatten(action.get("compoundActions", []))
        else:
            flat.append(action)
    return flat


def signature(action: dict[str, Any]) -> tuple[Any, ...]:
    """What must not change on replay for an action already in the history."""
    kind = action["actionType"]
    if kind == CREATE_TIMER:
        return (kind, action["fireAt"])
    if kind in (CALL_SUB, CALL_SUB_RETRY):
        return (kind, action["functionName"], action.get("instanceId"), action.get("input"))
    return (kind, action.get("functionName"), action.get("input"))


@dataclass
class Episode:
    """One call of the orchestrator: what the host sent and what came back."""

    generation: int
    context: str
    answer: dict[str, Any] | None
    error: str | None


@dataclass
class Instance:
    instance_id: str
    name: str
    input: str | None
    parent: tuple[str, int, int] | None = None
    """(parent instance id, parent execution, TaskScheduledId of the call)."""
    status: str = "Pending"
    generation: int = 0
    execution: int = 0
    """Unique per generation (the extension's execution id): old messages are told apart."""
    history: list[dict[str, Any]] = field(default_factory=list)
    scheduled: list[tuple[Any, ...]] = field(default_factory=list)
    inbox: list[dict[str, Any]] = field(default_factory=list)
    output: Any = None
    custom_status: Any = None
    failure: str | None = None
    created: datetime = EPOCH
    updated: datetime = EPOCH
    finished_at: datetime | None = None
    episodes: list[Episode] = field(default_factory=list)
    generations: list[tuple[str | None, list[dict[str, Any]], dict[str, Any] | None]] = field(
        default_factory=list
    )
    """Each ended generation's input, final history and last answer (for the replay check)."""
    cancelled_timers: int = 0

    @property
    def ended(self) -> bool:
        return self.status in ENDED


@dataclass(order=True)
class QueuedMessage:
    when: datetime
    order: int
    target: str = field(compare=False)
    execution: int | None = field(compare=False)
    """None: a message to the instance (an event), delivered to whatever execution runs."""
    event: dict[str, Any] = field(compare=False)


@dataclass
class ActivityRun:
    function: str
    input: Any
    at: datetime


Durations = Callable[[str, Any], float]
"""How many (virtual) seconds an activity function call lasts, by function and input."""
_FUNCTIONS: dict[int, dict[str, Any]] = {}


def functions_of(app: Any) -> dict[str, Any]:
    """The app's functions by name (``get_functions`` may be called once per app only)."""
    found = _FUNCTIONS.get(id(app))
    if found is None:
        found = {f.get_function_name(): f for f in app.get_functions()}
        _FUNCTIONS[id(app)] = found
    return found


def as_history(action_signature: tuple[Any, ...]) -> tuple[Any, ...]:
    """An action's signature as the history event that records it (type, name, fire time)."""
    kind = action_signature[0]
    if kind == CREATE_TIMER:
        return (TIMER_CREATED, None, action_signature[1])
    if kind == CALL_SUB:
        return (SUB_CREATED, action_signature[1], None)
    return (TASK_SCHEDULED, action_signature[1], None)
