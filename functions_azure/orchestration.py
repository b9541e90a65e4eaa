"""The generic orchestrator: the core engine, driven by Durable Functions primitives.

One generator runs every flow. It starts from the snapshot in its input, turns the
engine's outstanding work into Durable tasks and then loops:

* ``RunActivity``  -> ``call_activity("rustyflower_activity", command)`` (no Durable
  retry options: the engine decides retries; the activity answers with the engine event);
* ``StartTimer``   -> ``create_timer(fire_at)`` at the absolute deadline of the snapshot;
* ``AwaitEvent``   -> nothing per wait: the orchestrator keeps one
  ``wait_for_external_event(name)`` open for every event name the definition waits for
  (and for the control events), and hands each event to the engine *by name* (the engine
  gives it to the oldest waiter, or refuses it when nobody waits);
* ``StartChildFlow`` -> ``call_sub_orchestrator("rustyflower_orchestrator", child input,
  instance_id=<child>)`` with a snapshot of the child started by ``core.engine.start``;
* ``CancelWork``   -> the task leaves the set waited on; a timer is cancelled
  (``TimerTask.cancel()``), a child flow is sent the control event ``rustyflower.cancel``
  through the ``rustyflower_signal`` activity;
* ``FinishFlow``   -> the final snapshot is sealed (and stored) by the checkpoint
  activity; the orchestration returns the flow's result, whatever the flow's status.

It waits with ``task_any`` over every open task, translates the first finished one into
the engine event and calls ``advance(snapshot, event, context.current_utc_datetime)``.
Timeouts are engine timers raced like any other task. Everything is a function of the
input and the history: time only from ``current_utc_datetime``, no random numbers, tasks
in the engine's issue order.

History is bounded with ``continue_as_new``: after ``continue_as_new_after`` transitions
the current snapshot becomes the next generation's input, at a quiet moment (no child
flow started, no activity started unless far past the limit, no completion or listened
event already in the history that this generation has not consumed; work the last
transition issued was never yielded, so never scheduled). The new generation re-issues
``outstanding(snapshot)``: timers at the same absolute time, the same listeners, an
activity already started (if any) again with the same idempotency key.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Generator
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from functions_azure import telemetry
from functions_azure.activity import activity_request
from functions_azure.checkpoint import checkpoint_request
from functions_azure.flows import FlowBundle
from functions_azure.payloads import (
    OrchestrationInput,
    flow_result,
    snapshot_from_text,
    snapshot_text,
)
from functions_azure.settings import ACTIVITY, CHECKPOINT, ORCHESTRATOR, SIGNAL
from rustyflower.adapters.azure.ids import durable_instance_id
from rustyflower.core.contract import (
    CONTROL_EVENTS,
    RESULT_KIND,
    ControlEvent,
    ReservedError,
    RunnerError,
    work_number,
)
from rustyflower.core.engine import (
    EVENT_ADAPTER,
    ActivityCompleted,
    ActivityFailed,
    AwaitEvent,
    CancelRequested,
    CancelWork,
    ChildFinished,
    Command,
    Event,
    EventReceived,
    FinishFlow,
    HoldRequested,
    ParentLink,
    ReleaseRequested,
    RunActivity,
    Snapshot,
    StartChildFlow,
    StartTimer,
    TimerFired,
    advance,
    outstanding,
    start,
)
from rustyflower.core.errors import EventRejectedError, StaleEventError
from rustyflower.core.model import WaitForEventState, iter_states
from rustyflower.core.model.states import Branch
from rustyflower.core.timeutil import parse_timestamp

FUNCTION_FAILED = ReservedError.TASK_FAILED
"""The error name when an activity or child orchestration fails in Durable itself (the
function crashed or timed out in the host), not by an exception of the activity."""
STATUS_LIST_LIMIT = 50

# history event types (azure.durable_functions.models.history.HistoryEventType values)
_TASK_COMPLETED, _TASK_FAILED = 5, 6
_SUB_COMPLETED, _SUB_FAILED = 8, 9
_TIMER_FIRED, _EVENT_RAISED = 11, 15
_HOLDS_TASK_ID = frozenset({_TASK_COMPLETED, _TASK_FAILED, _SUB_COMPLETED, _SUB_FAILED})

_ENGINE_WORK = ("activity", "timer", "child")
_SIDE_WORK = ("checkpoint", "signal")


def waited_events(branch: Branch) -> set[str]:
    """The event names the ``wait_for_event`` states of a definition wait for."""
    return {state.event for state in iter_states(branch) if isinstance(state, WaitForEventState)}


@dataclass
class _Work:
    """An open Durable task and what it stands for."""

    kind: str
    """activity | timer | child (engine work) | event (listener) | checkpoint | signal"""
    key: str
    """The engine's work id (call or timer id), or the event name of a listener."""
    task: Any
    seq: int = -1
    """For a checkpoint: the snapshot seq it writes."""
    child_id: str | None = None
    """For a child: its instance id (a positional child's id is not made from ``key``)."""
    scheduled: bool = False
    """Yielded to Durable at least once (a task is only scheduled when yielded)."""


def orchestrate(context: Any) -> Generator[Any, Any, dict[str, Any] | None]:
    """The orchestrator function's body (a generator, as the Durable SDK wants)."""
    return (yield from _Orchestration(context).run())


class _Orchestration:
    """One generation of one flow instance's orchestration."""

    def __init__(self, context: Any) -> None:
        self.context = context
        self.input = OrchestrationInput.from_json(context.get_input())
        self.snapshot: Snapshot = snapshot_from_text(self.input.snapshot)
        self.flows = FlowBundle.from_documents(self.input.flows)
        self.work: dict[str, _Work] = {}
        self.listeners: dict[str, _Work] = {}
        self.side: list[_Work] = []
        self.by_task: dict[int, _Work] = {}
        self.ready: deque[Event] = deque()
        self.consumed: Counter[str] = Counter()
        self.transitions = 0
        self.refused = self.input.refused_events
        self.checkpointed = self.input.checkpointed_seq
        self.checkpoint_failures = 0
        self.checkpoint_error: str | None = None

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> Generator[Any, Any, dict[str, Any] | None]:
        if not self.snapshot.finished:
            names = waited_events(self.snapshot.definition) | CONTROL_EVENTS
            for name in sorted(names):
                self.listen(name)
            for command in outstanding(self.snapshot):
                self.issue(command)
            if self.checkpoint_due():
                self.checkpoint()
        while not self.snapshot.finished:
            if self.ready:
                event: Event | None = self.ready.popleft()
            else:
                self.publish()
                tasks = self.open_tasks()
                if not tasks:  # pragma: no cover - the control listeners are always open
                    raise RuntimeError("nothing to wait for: the orchestrator would spin")
                for work in self.work.values():
                    work.scheduled = True
                winner = yield self.context.task_any(tasks)
                event = self.finished_task(winner)
            if event is None or not self.apply(event):
                continue
            if self.snapshot.finished:
                break
            if self.time_to_continue_as_new():
                # work issued by this transition was never yielded, so never scheduled:
                # the next generation issues it; its snapshot is checkpointed there
                self.publish()
                self.context.continue_as_new(
                    self.input.next_generation(
                        snapshot_text(self.snapshot), self.checkpointed, self.refused
                    ).to_json()
                )
                return None
            if self.checkpoint_due():
                self.checkpoint()
        return (yield from self.finish())

    def open_tasks(self) -> list[Any]:
        works = [*self.work.values(), *self.listeners.values(), *self.side]
        return [work.task for work in works]

    def apply(self, event: Event) -> bool:
        """Advance the engine; False when it refused the event (the snapshot is unchanged)."""
        try:
            transition = advance(self.snapshot, event, self.context.current_utc_datetime)
        except StaleEventError:
            return False  # a completion that lost a race with a timeout or a cancel
        except EventRejectedError:
            if isinstance(
                event, EventReceived | CancelRequested | HoldRequested | ReleaseRequested
            ):
                self.refused += 1  # nobody waits for it, or a control that makes no sense now
                return False
            raise
        self.snapshot = transition.snapshot
        self.transitions += 1
        self.tell(transition.snapshot)
        for command in transition.commands:
            self.issue(command)
        return True

    def tell(self, snapshot: Snapshot) -> None:
        """Application Insights hears each transition once (replays stay silent)."""
        if getattr(self.context, "is_replaying", False):
            return
        definition = snapshot.definition
        common = {
            "flow": definition.name,
            "version": definition.version,
            "instance": snapshot.instance_id,
            "seq": snapshot.seq,
        }
        if snapshot.finished:
            telemetry.emit(
                "FlowFinished", **common, status=snapshot.status, error=snapshot.state.error
            )
        else:
            states = sorted({telemetry.state_of(p) for p in snapshot.positions})
            telemetry.emit("FlowTransition", **common, status=snapshot.status, states=states)

    # --- commands -> tasks ---------------------------------------------------------------

    def track(
        self, kind: str, key: str, task: Any, seq: int = -1, child_id: str | None = None
    ) -> _Work:
        work = _Work(kind, key, task, seq, child_id)
        self.by_task[id(task)] = work
        if kind in _ENGINE_WORK:
            self.work[key] = work
        elif kind == "event":
            self.listeners[key] = work
        else:
            self.side.append(work)
        return work

    def listen(self, name: str) -> None:
        self.track("event", name, self.context.wait_for_external_event(name))

    def issue(self, command: Command) -> None:
        context = self.context
        if isinstance(command, RunActivity):
            request = activity_request(
                self.snapshot.instance_id, command, self.snapshot.definition.name
            )
            self.track("activity", command.call_id, context.call_activity(ACTIVITY, request))
        elif isinstance(command, StartTimer):
            moment = parse_timestamp(command.fire_at)
            if moment is None:  # pragma: no cover - the engine writes RFC 3339 times
                raise ValueError(f"timer {command.timer_id!r} has no valid fire_at")
            task = context.create_timer(moment.astimezone(UTC))
            self.track("timer", command.timer_id, task)
        elif isinstance(command, AwaitEvent):
            if command.event not in self.listeners:
                self.listen(command.event)
        elif isinstance(command, StartChildFlow):
            self.start_child(command)
        elif isinstance(command, CancelWork):
            self.cancel(command)
        elif isinstance(command, FinishFlow):
            pass  # the loop sees the finished snapshot

    def start_child(self, command: StartChildFlow) -> None:
        child_id = command.child_instance_id
        text = self.input.children.get(child_id)
        if text is None:
            definition = self.flows.find(command.flow, command.version)
            if definition is None:
                wanted = f"version {command.version!r}" if command.version else "any version"
                self.ready.append(
                    ChildFinished(
                        command.call_id,
                        "failed",
                        error=RunnerError.UNKNOWN_FLOW,
                        cause=f"sub-flow {command.flow!r} ({wanted}) is not in the flows "
                        "this orchestration was started with",
                    )
                )
                return
            try:
                started = start(
                    definition,
                    command.input,
                    child_id,
                    self.context.current_utc_datetime,
                    epoch=self.snapshot.epoch,
                    parent=ParentLink(self.snapshot.instance_id, command.call_id),
                    history_limit=self.snapshot.state.history_limit,
                )
            except ValueError as error:
                self.ready.append(
                    ChildFinished(
                        command.call_id, "failed", error=ReservedError.RUNTIME, cause=str(error)
                    )
                )
                return
            text = snapshot_text(started.snapshot)
        prefix = child_id + "/"
        child_input = OrchestrationInput(
            snapshot=text,
            flows=self.input.flows,
            children={k: v for k, v in self.input.children.items() if k.startswith(prefix)},
            options=self.input.options,
        )
        task = self.context.call_sub_orchestrator(
            ORCHESTRATOR, child_input.to_json(), instance_id=durable_instance_id(child_id)
        )
        self.track("child", command.call_id, task, child_id=child_id)

    def cancel(self, command: CancelWork) -> None:
        work = self.work.pop(command.work_id, None)
        if work is None:
            return
        self.by_task.pop(id(work.task), None)
        if work.kind == "timer":
            _cancel_timer(work.task)
        elif work.kind == "child" and work.child_id is not None:
            child_id = durable_instance_id(work.child_id)
            request = {
                "instance_id": child_id,
                "event": ControlEvent.CANCEL,
                "data": {"reason": "the parent flow no longer waits for this child"},
            }
            self.track("signal", child_id, self.context.call_activity(SIGNAL, request))
        # an activity cannot be stopped: its late answer is simply not waited for

    # --- finished tasks -> engine events --------------------------------------------------

    def finished_task(self, winner: Any) -> Event | None:
        work = self.by_task.pop(id(winner), None)
        if work is None:  # pragma: no cover - task_any only returns tasks given to it
            return None
        result = getattr(winner, "result", None)
        failed = isinstance(result, Exception)
        if work.kind == "event":
            del self.listeners[work.key]
            self.consumed[work.key] += 1
            self.listen(work.key)
            return _external_event(work.key, result)
        if work.kind in _SIDE_WORK:
            self.side.remove(work)
            self.side_done(work, result)
            return None
        del self.work[work.key]
        if work.kind == "timer":
            return TimerFired(work.key)
        if work.kind == "activity":
            return _activity_event(work.key, result, failed)
        return _child_event(work.key, result, failed)

    def side_done(self, work: _Work, result: Any) -> None:
        if work.kind != "checkpoint":
            return  # a cancel signal to a child that already ended: nothing to do
        if isinstance(result, dict) and result.get("ok"):
            return
        self.checkpoint_failures += 1
        self.checkpoint_error = (
            str(result.get("error")) if isinstance(result, dict) else str(result)
        )

    # --- checkpoints, status, generations, end -----------------------------------------

    def checkpoint_due(self) -> bool:
        every = self.input.options.checkpoint_every
        return every > 0 and self.snapshot.seq - self.checkpointed >= every

    def checkpoint(self) -> None:
        request = checkpoint_request(snapshot_text(self.snapshot), final=False)
        task = self.context.call_activity(CHECKPOINT, request)
        self.track("checkpoint", self.snapshot.instance_id, task, seq=self.snapshot.seq)
        self.checkpointed = self.snapshot.seq

    def time_to_continue_as_new(self) -> bool:
        limit = self.input.options.continue_as_new_after
        if self.transitions < limit:
            return False
        running = {work.kind for work in self.work.values() if work.scheduled}
        if "child" in running:
            return False  # a running child cannot be re-attached by a new generation
        if "activity" in running and self.transitions < 2 * limit:
            return False  # prefer not to run an activity twice
        return not self.unconsumed_in_history()

    def unconsumed_in_history(self) -> bool:
        """Whether this generation's history holds a completion it has not processed yet.

        Such an event sits later in the batch being replayed; continuing as new now would
        lose it (an external event for good). The answer only turns from False to True as
        the history grows, so replays decide the same way.
        """
        ids: set[Any] = set()
        for work in self.work.values():
            ids |= _task_ids(work.task)
        raised: Counter[str] = Counter()
        for event in self.context.histories:
            kind = int(event.event_type)
            if kind in _HOLDS_TASK_ID and getattr(event, "TaskScheduledId", None) in ids:
                return True
            if kind == _TIMER_FIRED and getattr(event, "TimerId", None) in ids:
                return True
            if kind == _EVENT_RAISED:
                raised[str(getattr(event, "Name", ""))] += 1
        return any(raised[name] > self.consumed[name] for name in self.listeners)

    def publish(self) -> None:
        snapshot = self.snapshot
        positions = snapshot.positions
        waits = [
            {"wait_id": entry.id, "event": entry.command.event}
            for entry in sorted(snapshot.state.pending.values(), key=_issue_number)
            if isinstance(entry.command, AwaitEvent) and entry.dispatched
        ]
        self.context.set_custom_status(
            {
                "instance_id": snapshot.instance_id,
                "flow": snapshot.definition.name,
                "version": snapshot.definition.version,
                "status": snapshot.status,
                "seq": snapshot.seq,
                "epoch": snapshot.epoch,
                "held": snapshot.state.held,
                "positions": positions[:STATUS_LIST_LIMIT],
                "positions_total": len(positions),
                "waiting_for": waits[:STATUS_LIST_LIMIT],
                "children": [
                    durable_instance_id(work.child_id)
                    for work in self.work.values()
                    if work.kind == "child" and work.child_id is not None
                ][:STATUS_LIST_LIMIT],
                "generation": self.input.generation,
                "transitions": self.transitions,
                "refused_events": self.refused,
                "checkpoint": {
                    "seq": self.checkpointed,
                    "failures": self.checkpoint_failures,
                    "error": self.checkpoint_error,
                },
            }
        )

    def finish(self) -> Generator[Any, Any, dict[str, Any]]:
        for work in list(self.work.values()):
            if work.kind == "timer":
                _cancel_timer(work.task)
        self.work.clear()
        self.publish()
        sealed: str | None = None
        request = checkpoint_request(snapshot_text(self.snapshot), final=True)
        final = self.context.call_activity(CHECKPOINT, request)
        # side work issued by the last transition (a cancel signal to a child) is only
        # scheduled when yielded: wait for it together with the final checkpoint
        tasks = [*(work.task for work in self.side), final]
        try:
            answers = yield self.context.task_all(tasks)
            answer = answers[-1]
        except Exception as error:  # a function failed in the host itself
            answer = {"ok": False, "error": str(error)}
        if isinstance(answer, dict):
            if isinstance(answer.get("snapshot"), str):
                sealed = answer["snapshot"]
            if answer.get("ok"):
                self.checkpointed = self.snapshot.seq
            else:
                self.checkpoint_failures += 1
                self.checkpoint_error = str(answer.get("error"))
        self.publish()
        return flow_result(
            self.snapshot,
            sealed=sealed,
            generation=self.input.generation,
            refused_events=self.refused,
            checkpoint_error=self.checkpoint_error,
        )


# --- helpers ------------------------------------------------------------------------------


def _issue_number(entry: Any) -> int:
    return work_number(str(entry.id)) or 0


def _task_ids(task: Any) -> set[Any]:
    ids = {task.id} if getattr(task, "id", None) is not None else set()
    for child in getattr(task, "children", ()) or ():
        ids |= _task_ids(child)
    return ids


def _cancel_timer(task: Any) -> None:
    """Cancel a Durable timer task when the SDK can (a finished one cannot be)."""
    cancel = getattr(task, "cancel", None)
    if cancel is not None and not task.is_completed:
        cancel()


def _reason(data: Any) -> str | None:
    if isinstance(data, str):
        return data
    if isinstance(data, dict) and isinstance(data.get("reason"), str):
        return str(data["reason"])
    return None


def _external_event(name: str, data: Any) -> Event:
    if name == ControlEvent.CANCEL:
        return CancelRequested(reason=_reason(data))
    if name == ControlEvent.HOLD:
        return HoldRequested(reason=_reason(data))
    if name == ControlEvent.RELEASE:
        return ReleaseRequested()
    return EventReceived(name, data)


def _activity_event(call_id: str, result: Any, failed: bool) -> Event:
    if failed:
        return ActivityFailed(call_id, FUNCTION_FAILED, f"the activity function failed: {result}")
    try:
        event = EVENT_ADAPTER.validate_python(result)
    except ValueError:
        event = None
    if isinstance(event, ActivityCompleted | ActivityFailed) and event.call_id == call_id:
        return event
    return ActivityFailed(
        call_id,
        FUNCTION_FAILED,
        "the activity function answered with something else than the engine event of its call",
    )


def _child_event(call_id: str, result: Any, failed: bool) -> Event:
    if failed:
        return ChildFinished(
            call_id,
            "failed",
            error=FUNCTION_FAILED,
            cause=f"the child orchestration failed: {result}",
        )
    if not isinstance(result, dict) or result.get("kind") != RESULT_KIND:
        return ChildFinished(
            call_id,
            "failed",
            error=FUNCTION_FAILED,
            cause="the child orchestration returned no flow result",
        )
    return ChildFinished(
        call_id,
        str(result.get("status")),
        result.get("output"),
        result.get("error"),
        result.get("cause"),
    )
