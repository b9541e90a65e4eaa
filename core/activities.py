"""The activities registry: named Python functions that Task states call.

The same module of activities is deployed everywhere (on-premises workers, the Azure
activity function, the AWS Lambda), so a flow behaves the same wherever it runs.
"""

from __future__ import annotations

import asyncio
import difflib
import importlib
import inspect
import json
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from rustyflower.core.contract import ReservedError, RunnerError, is_reserved_activity
from rustyflower.core.engine.commands import RunActivity
from rustyflower.core.engine.events import ActivityCompleted, ActivityFailed
from rustyflower.core.errors import UnknownActivityError
from rustyflower.core.model import FlowDefinition, Retry, TaskState, iter_states
from rustyflower.core.model.states import Branch, MapState, ParallelState

ActivityFunction = Callable[[Any], Any] | Callable[[Any], Awaitable[Any]]
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class ActivityContext:
    """What a running activity may know about its call; read it with ``current_call()``."""

    instance_id: str
    call_id: str
    idempotency_key: str
    attempt: int
    activity: str


_current: ContextVar[ActivityContext | None] = ContextVar("rustyflower_activity", default=None)


def current_call() -> ActivityContext:
    """The context of the activity call running now (raises outside an activity)."""
    context = _current.get()
    if context is None:
        raise RuntimeError("current_call() is only available while an activity runs")
    return context


@dataclass(frozen=True, slots=True)
class Activity:
    name: str
    function: ActivityFunction
    retry: tuple[Retry, ...] = ()
    timeout_seconds: int | None = None

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.function)


@dataclass
class ActivityRegistry:
    """Activities by name. Most programs use the module-level ``registry``."""

    _activities: dict[str, Activity] = field(default_factory=dict)

    def register(
        self,
        function: ActivityFunction,
        name: str | None = None,
        retry: list[Retry] | None = None,
        timeout_seconds: int | None = None,
    ) -> Activity:
        activity_name = name or getattr(function, "__name__", "")
        if not activity_name:
            raise ValueError("an activity needs a name")
        if is_reserved_activity(activity_name):
            raise ValueError(
                f"activity name {activity_name!r} is reserved for the built-in services"
            )
        return self._add(activity_name, function, retry, timeout_seconds)

    def register_builtin(self, name: str, function: ActivityFunction) -> Activity:
        """Register a runtime's own function under a reserved name (the built-in services
        of ``core.services.calls.with_services``); user code registers with ``register``.
        A runtime's backends replace those registered before."""
        if not is_reserved_activity(name):
            raise ValueError(f"{name!r} is not a reserved name")
        activity = Activity(name, function)
        self._activities[name] = activity
        return activity

    def copy(self) -> ActivityRegistry:
        """A registry with the same activities (adding to it leaves this one as it is)."""
        return ActivityRegistry(dict(self._activities))

    def _add(
        self,
        activity_name: str,
        function: ActivityFunction,
        retry: list[Retry] | None,
        timeout_seconds: int | None,
    ) -> Activity:
        existing = self._activities.get(activity_name)
        if existing is not None and existing.function is not function:
            raise ValueError(
                f"activity {activity_name!r} is already registered by "
                f"{getattr(existing.function, '__module__', '?')}."
                f"{getattr(existing.function, '__qualname__', '?')}"
            )
        if timeout_seconds is not None and timeout_seconds < 1:
            raise ValueError("timeout_seconds must be at least 1")
        activity = Activity(activity_name, function, tuple(retry or ()), timeout_seconds)
        self._activities[activity_name] = activity
        return activity

    def get(self, name: str) -> Activity:
        try:
            return self._activities[name]
        except KeyError:
            suggestions = difflib.get_close_matches(name, self._activities, n=3)
            raise UnknownActivityError(name, suggestions) from None

    def __contains__(self, name: object) -> bool:
        return name in self._activities

    def __iter__(self) -> Iterator[Activity]:
        return iter(self._activities.values())

    def names(self) -> list[str]:
        return sorted(self._activities)

    @overload
    def activity(self, function: F) -> F: ...

    @overload
    def activity(
        self,
        *,
        name: str | None = None,
        retry: list[Retry] | None = None,
        timeout_seconds: int | None = None,
    ) -> Callable[[F], F]: ...

    def activity(
        self,
        function: F | None = None,
        *,
        name: str | None = None,
        retry: list[Retry] | None = None,
        timeout_seconds: int | None = None,
    ) -> F | Callable[[F], F]:
        """Decorator: ``@registry.activity`` or ``@registry.activity(name=..., retry=[...])``."""

        def decorate(target: F) -> F:
            self.register(target, name=name, retry=retry, timeout_seconds=timeout_seconds)
            return target

        return decorate(function) if function is not None else decorate

    def call(
        self,
        name: str,
        payload: Any,
        context: ActivityContext | None = None,
        timeout_seconds: float | None = None,
    ) -> Any:
        """Run an activity to completion (an async one in its own event loop).

        ``timeout_seconds`` stops an async activity (raising ``ActivityTimeoutError``); a
        sync one cannot be interrupted, and the engine's task timeout decides for it.
        """
        activity = self.get(name)
        token = _current.set(context)
        try:
            if activity.is_async:
                return asyncio.run(_bounded(activity.function(payload), timeout_seconds))
            return activity.function(payload)
        finally:
            _current.reset(token)

    async def call_async(
        self, name: str, payload: Any, context: ActivityContext | None = None
    ) -> Any:
        """Run an activity from async code (a sync one in a worker thread)."""
        activity = self.get(name)
        token = _current.set(context)
        try:
            if activity.is_async:
                return await activity.function(payload)
            return await asyncio.to_thread(activity.function, payload)
        finally:
            _current.reset(token)

    def apply_defaults(self, definition: FlowDefinition) -> FlowDefinition:
        """Copy each activity's default retry and timeout into the tasks that set none.

        Done once, before a definition is registered, so the snapshot (and its digest)
        carries the policy and every runtime applies the same one.
        """
        return _with_defaults(definition, self)  # type: ignore[return-value]

    def missing(self, definition: Branch) -> list[str]:
        """Activity names used by a definition that are not registered here (a service
        task needs none: every runtime carries it out itself)."""
        used = {task.activity for task in iter_tasks(definition) if task.activity is not None}
        return sorted(used - set(self._activities))


def load_registry(spec: str, setting: str = "RUSTYFLOWER_ACTIVITIES") -> ActivityRegistry:
    """The registry named by ``module`` (its ``registry``) or ``module:attribute``, as the
    Function App and the Lambda functions are configured (``setting`` names it in errors)."""
    module_name, _, attribute = spec.partition(":")
    module = importlib.import_module(module_name)
    found = getattr(module, attribute or "registry", None)
    if not isinstance(found, ActivityRegistry):
        raise TypeError(
            f"{setting}={spec!r}: {module_name}.{attribute or 'registry'} "
            "is not an ActivityRegistry"
        )
    return found


class ActivityTimeoutError(Exception):
    """An activity ran past its timeout; reported with the error name States.Timeout."""


async def _bounded(work: Awaitable[Any], timeout_seconds: float | None) -> Any:
    if timeout_seconds is None:
        return await work
    try:
        return await asyncio.wait_for(work, timeout_seconds)
    except TimeoutError:
        raise ActivityTimeoutError(f"the activity ran longer than {timeout_seconds} s") from None


def iter_tasks(branch: Branch) -> Iterator[TaskState]:
    return (state for state in iter_states(branch) if isinstance(state, TaskState))


def _with_defaults(branch: Branch, registry: ActivityRegistry) -> Branch:
    states: dict[str, Any] = {}
    for name, original in branch.states.items():
        state: Any = original
        if (
            isinstance(state, TaskState)
            and state.activity is not None
            and state.activity in registry
        ):
            activity = registry.get(state.activity)
            changes: dict[str, Any] = {}
            if not state.retry and activity.retry:
                changes["retry"] = list(activity.retry)
            if state.timeout_seconds is None and activity.timeout_seconds is not None:
                changes["timeout_seconds"] = activity.timeout_seconds
            state = state.model_copy(update=changes) if changes else state
        elif isinstance(state, ParallelState):
            state = state.model_copy(
                update={"branches": [_with_defaults(b, registry) for b in state.branches]}
            )
        elif isinstance(state, MapState):
            state = state.model_copy(update={"iterator": _with_defaults(state.iterator, registry)})
        states[name] = state
    # validate again so the result is a checked definition, not a patched copy
    return type(branch).model_validate(
        {
            **branch.model_dump(),
            "states": {name: state.model_dump() for name, state in states.items()},
        }
    )


registry = ActivityRegistry()
activity = registry.activity
"""``@activity`` registers into the default registry."""

__all__ = [
    "Activity",
    "ActivityContext",
    "ActivityRegistry",
    "ActivityTimeoutError",
    "activity",
    "current_call",
    "describe_failure",
    "iter_tasks",
    "perform",
    "registry",
]


UNKNOWN_ACTIVITY = RunnerError.UNKNOWN_ACTIVITY
INVALID_OUTPUT = RunnerError.INVALID_ACTIVITY_OUTPUT


def perform(
    registry: ActivityRegistry, instance_id: str, command: RunActivity
) -> ActivityCompleted | ActivityFailed:
    """Carry out a RunActivity command, with the same context and error names on every runtime.

    An exception becomes ActivityFailed named after its class; an unknown activity fails
    with ``UnknownActivity``; an output that is not JSON fails with ``InvalidActivityOutput``.
    """
    context = ActivityContext(
        instance_id=instance_id,
        call_id=command.call_id,
        idempotency_key=command.idempotency_key,
        attempt=command.attempt,
        activity=command.activity,
    )
    try:
        output = registry.call(
            command.activity, command.input, context, timeout_seconds=command.timeout_seconds
        )
    except UnknownActivityError as error:
        return ActivityFailed(command.call_id, UNKNOWN_ACTIVITY, str(error))
    except Exception as error:  # an activity's failure is data for retry and catch
        name, cause = describe_failure(error)
        return ActivityFailed(command.call_id, name, cause)
    try:
        json.dumps(output, allow_nan=False)
    except (TypeError, ValueError) as error:
        cause = f"activity {command.activity!r} returned a value that is not JSON: {error}"
        return ActivityFailed(command.call_id, INVALID_OUTPUT, cause)
    return ActivityCompleted(command.call_id, output)


def describe_failure(error: BaseException) -> tuple[str, str]:
    """(error name, cause) for an exception raised by an activity, the same on every runtime.

    The error name is the exception's class name, so retry and catch policies can name it
    (``PaymentDeclined``); the cause is its message.
    """
    if isinstance(error, ActivityTimeoutError):
        return ReservedError.TIMEOUT, str(error)
    return type(error).__name__, str(error) or type(error).__name__
