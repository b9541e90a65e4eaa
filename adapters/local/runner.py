"""Run a flow in this process, carrying out the engine's commands in order.

This is the smallest complete runtime: activities run inline, timers sleep, events come
from a script. It needs no server, so it is what ``rustyflower run`` and the demo use
until a flow needs durability (the Redis runner) or a cloud.
"""

from __future__ import annotations

import heapq
import itertools
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rustyflower.core.activities import ActivityRegistry, perform
from rustyflower.core.contract import ReservedError, RunnerError
from rustyflower.core.engine import (
    AwaitEvent,
    CancelWork,
    ChildFinished,
    Command,
    Event,
    EventReceived,
    FinishFlow,
    ParentLink,
    RunActivity,
    Snapshot,
    StartChildFlow,
    StartTimer,
    TimerFired,
    Transition,
    advance,
    start,
)
from rustyflower.core.errors import StaleEventError
from rustyflower.core.model import FlowDefinition
from rustyflower.core.timeutil import parse_timestamp

TransitionListener = Callable[[Snapshot, Event | None, tuple[Command, ...]], None]


@dataclass
class LocalRunner:
    """Drive instances to completion; ``flows`` resolves sub-flows by name (and version)."""

    registry: ActivityRegistry
    flows: Mapping[str, FlowDefinition] = field(default_factory=dict)
    events: Mapping[str, list[Any]] = field(default_factory=dict)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    sleep: Callable[[float], None] = time.sleep
    on_transition: TransitionListener | None = None
    max_wait_seconds: float = 3600.0

    def run(
        self,
        definition: FlowDefinition,
        flow_input: Any,
        instance_id: str | None = None,
        parent: ParentLink | None = None,
    ) -> Snapshot:
        """Run to the end, or until only an unscripted event could move it on."""
        self.check_activities(definition)
        instance_id = instance_id or uuid.uuid4().hex
        scripted = {name: list(values) for name, values in self.events.items()}
        transition = start(definition, flow_input, instance_id, self.clock(), parent=parent)
        self._notify(transition, None)
        work = _Work(scripted)
        snapshot = transition.snapshot
        self._plan(transition.commands, work, snapshot)
        while not snapshot.finished:
            if work.ready:
                event = work.ready.pop(0)
            elif work.agenda:
                due, _, event = heapq.heappop(work.agenda)
                delay = (due - self.clock()).total_seconds()
                if delay > self.max_wait_seconds:
                    break  # a long wait: leave the instance waiting rather than block for hours
                if delay > 0:
                    self.sleep(delay)
            else:
                break  # waiting for an event nobody scripted
            try:
                transition = advance(snapshot, event, self.clock())
            except StaleEventError:
                continue  # a timer that lost its race against a completion
            snapshot = transition.snapshot
            self._notify(transition, event)
            self._plan(transition.commands, work, snapshot)
        return snapshot

    def check_activities(self, definition: FlowDefinition) -> None:
        for name in self.registry.missing(definition):
            self.registry.get(name)  # raises UnknownActivityError with close matches

    def _notify(self, transition: Transition, event: Event | None) -> None:
        if self.on_transition is not None:
            self.on_transition(transition.snapshot, event, transition.commands)

    def _plan(self, commands: tuple[Command, ...], work: _Work, snapshot: Snapshot) -> None:
        ready, agenda, waiting = work.ready, work.agenda, work.waiting
        for command in commands:
            if isinstance(command, RunActivity):
                ready.append(self._run_activity(snapshot.instance_id, command))
            elif isinstance(command, StartTimer):
                due = parse_timestamp(command.fire_at)
                assert due is not None
                heapq.heappush(agenda, (due, next(work.order), TimerFired(command.timer_id)))
            elif isinstance(command, AwaitEvent):
                values = work.scripted.get(command.event)
                if values:
                    ready.append(EventReceived(command.event, values.pop(0), command.wait_id))
                else:
                    waiting[command.wait_id] = command
            elif isinstance(command, StartChildFlow):
                ready.append(self._run_child(snapshot, command))
            elif isinstance(command, CancelWork):
                agenda[:] = [item for item in agenda if _event_id(item[2]) != command.work_id]
                heapq.heapify(agenda)
                waiting.pop(command.work_id, None)
            elif isinstance(command, FinishFlow):
                agenda.clear()

    def _run_activity(self, instance_id: str, command: RunActivity) -> Event:
        return perform(self.registry, instance_id, command)

    def _run_child(self, parent: Snapshot, command: StartChildFlow) -> Event:
        key = f"{command.flow}@{command.version}" if command.version else command.flow
        definition = self.flows.get(key) or self.flows.get(command.flow)
        if definition is None:
            return ChildFinished(
                command.call_id,
                "failed",
                error=RunnerError.UNKNOWN_FLOW,
                cause=f"sub-flow {key!r} is not known to this runner",
            )
        link = ParentLink(parent.instance_id, command.call_id)
        child = self.run(definition, command.input, command.child_instance_id, link)
        state = child.state
        if not child.finished:
            cause = f"sub-flow {key!r} stopped at {child.positions} waiting for an event"
            return ChildFinished(
                command.call_id, "failed", error=ReservedError.TASK_FAILED, cause=cause
            )
        return ChildFinished(command.call_id, child.status, state.output, state.error, state.cause)


@dataclass
class _Work:
    """What one run waits for: ready events, timers by due time, unanswered event waits."""

    scripted: dict[str, list[Any]]
    ready: list[Event] = field(default_factory=list)
    agenda: list[tuple[datetime, int, Event]] = field(default_factory=list)
    waiting: dict[str, AwaitEvent] = field(default_factory=dict)
    order: itertools.count[int] = field(default_factory=itertools.count)


def _event_id(event: Event) -> str | None:
    return getattr(event, "timer_id", None) or getattr(event, "call_id", None)
