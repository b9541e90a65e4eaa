"""Failback: an execution's history, turned back into a snapshot the site can resume.

Used by the failback function (``lambda_aws.failback``) and by ``rustyflower failback
--from aws`` (``adapters.continuity``) alike.

The reader **replays the execution through the engine**. It starts from the snapshot the
execution continued (kept by the continue function in the snapshot bucket, or passed in),
or, for an execution that started fresh, from ``start(definition, input)`` at the
execution's start time; then it feeds the engine, in history order, the outcomes Step
Functions recorded:

==========================================  ===============================================
history                                     engine event
==========================================  ===============================================
activity ``TaskSucceeded`` / ``TaskFailed``  ``ActivityCompleted`` / ``ActivityFailed`` (the
                                            Lambda's ``errorType`` and ``errorMessage``)
activity ``TaskTimedOut``                   the task's ``task_timeout`` timer fires
a call scheduled again (attempt + 1), or a  the token's ``retry`` timer fires
state inside a retried parallel/map
``WaitStateExited`` (a wait, a retry delay)  the token's ``wait`` (or ``retry``) timer fires
event wait ``TaskSucceeded``                ``EventReceived`` (its data) for that wait id
event wait timed out                        its ``event_timeout`` timer fires
deadline clock timed out                    the ``flow_timeout`` timer fires
sub-flow ``TaskSucceeded`` / ``TaskFailed``  ``ChildFinished`` (status, output, error, cause)
==========================================  ===============================================

so the snapshot has the engine's own positions, data, attempts, retry counters, frames,
pending work and history, exactly as if the site had run those steps. Activity calls are
placed by their payload (adapters.aws.contract), the other states as the history reader
(adapters.aws.history) places them.

Limits (each raises :class:`FailbackError` naming the history event, never a wrong
snapshot):

* the history must be complete (Step Functions keeps 25,000 events per execution) and
  its data included (``includeExecutionData``);
* a state whose ASL name was cut to 80 characters (``...#hash``) cannot be placed;
* where the engine and ASL disagree (a documented semantic difference met at run time),
  the replay stops at the first event the engine did not expect;
* a sub-flow in flight comes back as the parent's pending ``StartChildFlow``: the site
  starts the child again from its input (the child execution's own progress is not
  merged; fail it back separately);
* an activity call in flight comes back pending with the engine's idempotency key, which
  differs from the key the AWS call used when that call was issued natively in AWS (not
  resumed from a snapshot): stop the execution first (``stop=True``) so that nothing
  runs in both places.

The snapshot keeps the execution's epoch; the site raises it when it takes the instance
over (``rustyflower resume --take-ownership``).

Why one module: the replay is one algorithm over one cursor (``_Replay``): each kind
of history event moves the same engine run, and the event kinds depend on each other
(scheduled, then started, then ended); the helpers around it only check the end against
the execution and stop it. Reading the history (its events, their data, the positions of
the states they name) is apart, in adapters.aws.history: it changes with what Step
Functions records and with the compiler's state names, the replay with the engine.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rustyflower.adapters.aws.compiler import SUB_FLOW_FAILED, UNRAISABLE
from rustyflower.adapters.aws.contract import (
    ActivityCall,
    PayloadError,
    activity_call,
    token_request,
)
from rustyflower.adapters.aws.history import (
    FailbackError,
    HistoryEvent,
    ancestors,
    execution_document,
    history_events,
    json_document,
    lambda_cause,
    position_of,
    read_history,
)
from rustyflower.adapters.aws.names import ROLE_SEPARATOR
from rustyflower.adapters.aws.resume import deployed_digest, execution_name
from rustyflower.adapters.aws.services import (
    REFUSED_ROLE,
    SERVICE_BRANCH_ROLES,
    portable_error,
    portable_result,
    service_branch_start,
)
from rustyflower.core.contract import Purpose, ReservedError, ServiceError, is_reserved
from rustyflower.core.engine import (
    ActivityCompleted,
    ActivityFailed,
    ChildFinished,
    Event,
    EventReceived,
    RunActivity,
    Snapshot,
    StartChildFlow,
    TimerFired,
    advance,
    start,
)
from rustyflower.core.engine.state import Pending
from rustyflower.core.engine.structure import structure_of
from rustyflower.core.errors import RustyFlowerError, StaleEventError
from rustyflower.core.model import FlowDefinition, TaskState
from rustyflower.core.snapshot.canonical import canonical_json

# FailbackError lives in adapters.aws.history (reading refuses with it too) but is the error
# of this module's entry points: their callers catch it from here.
__all__ = [
    "STOP_ERROR",
    "STOP_TIMEOUT",
    "FailbackError",
    "failback_execution",
    "failback_snapshot",
    "stop_execution",
]

STOP_ERROR = "RF.FailedBack"
STOP_TIMEOUT = 30.0
"""Seconds ``stop_execution`` waits for a stopped execution to leave RUNNING (its history
is final only then)."""
_ENDED = {"SUCCEEDED": "succeeded", "FAILED": "failed", "TIMED_OUT": "failed", "ABORTED": None}
_TASK_ENDS = frozenset(
    {"TaskSucceeded", "TaskFailed", "TaskTimedOut", "TaskStartFailed", "TaskSubmitFailed"}
)


# --- the replay ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    kind: str  # activity | service | event | deadline | child
    position: str
    work_id: str | None = None
    event: str | None = None


class _Replay:
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.calls: dict[int, _Call] = {}
        self.by_id: dict[int, HistoryEvent] = {}
        self.applied = 0
        self.last_start = 0
        """Id of the latest ``ParallelStateStarted``/``MapStateStarted`` event."""
        self.retry_noticed: dict[str, int] = {}
        """Owner position -> the event after which the engine scheduled its retry."""

    # engine ------------------------------------------------------------------------------

    def feed(self, event: Event, source: HistoryEvent) -> None:
        if self.snapshot.finished:
            return  # results of branches ASL was still stopping when the flow ended
        try:
            self.snapshot = advance(self.snapshot, event, source.timestamp).snapshot
        except StaleEventError:
            return  # the result of work the engine already cancelled (a failed branch)
        except RustyFlowerError as problem:
            raise FailbackError(
                f"history event {source.id} ({source.type}) does not apply: {problem}"
            ) from None
        self.applied += 1
        for entry in self.snapshot.state.pending.values():
            if entry.purpose == Purpose.RETRY and entry.token not in self.retry_noticed:
                self.retry_noticed[entry.token] = source.id

    def pending_of(self, position: str, purposes: Iterable[str]) -> Pending | None:
        token = self.snapshot.state.tokens.get(position)
        if token is None:
            return None
        wanted = set(purposes)
        for work_id in token.pending:
            entry = self.snapshot.state.pending.get(work_id)
            if entry is not None and entry.purpose in wanted:
                return entry
        return None

    def fire(self, position: str, purposes: Iterable[str], source: HistoryEvent) -> bool:
        entry = self.pending_of(position, purposes)
        if entry is None:
            return False
        if entry.purpose == Purpose.RETRY:
            self.retry_noticed.pop(position, None)
        self.feed(TimerFired(entry.id), source)
        return True

    def owners_restarted(self, position: str, source: HistoryEvent) -> None:
        """``source`` runs inside ``position``'s parallels and maps: an owner whose retry the
        engine scheduled is running again once a new Parallel/Map run began since."""
        for owner in ancestors(position)[:-1]:
            noticed = self.retry_noticed.get(owner)
            if noticed is not None and self.last_start > noticed:
                self.fire(owner, (Purpose.RETRY,), source)

    def stale(self, position: str) -> bool:
        """Work at ``position`` the engine no longer runs: the flow ended, or the branch
        belongs to a parallel/map that failed (ASL may still start work there briefly)."""
        if self.snapshot.finished:
            return True
        if position in self.snapshot.state.tokens:
            return False
        owners = ancestors(position)[:-1]
        if not owners:
            return False
        innermost = owners[-1]
        frames = self.snapshot.state.frames
        return innermost not in frames or self.pending_of(innermost, (Purpose.RETRY,)) is not None

    def flow_timer(self, source: HistoryEvent) -> None:
        for entry in self.snapshot.state.pending.values():
            if entry.purpose == Purpose.FLOW_TIMEOUT:
                self.feed(TimerFired(entry.id), source)
                return
        if not self.snapshot.finished:
            raise FailbackError(f"history event {source.id}: the flow's deadline has no timer")

    def diverged(self, source: HistoryEvent, message: str) -> FailbackError:
        return FailbackError(
            f"history event {source.id} ({source.type}): {message}; the engine and the "
            "state machine disagree here (see docs/aws.md for the documented differences)"
        )

    # history ----------------------------------------------------------------------------

    def run(self, events: Sequence[HistoryEvent]) -> None:
        for event in events:
            self.by_id[event.id] = event
            if event.type in ("ParallelStateStarted", "MapStateStarted"):
                self.last_start = event.id
            elif event.type == "TaskScheduled":
                self.scheduled(event)
            elif event.type in _TASK_ENDS:
                self.task_ended(event)
            elif event.type == "WaitStateExited":
                self.wait_exited(event)
            elif event.type.endswith("StateEntered"):
                position = self.place(event, "input", strict=False)
                if position is not None:
                    self.owners_restarted(position, event)
                    self.service_entered(event, position)

    def place(self, event: HistoryEvent, data_key: str, *, strict: bool) -> str | None:
        """The engine position of a state event (None: the compiler's own state)."""
        name = event.details.get("name")
        if not isinstance(name, str):
            return None
        data = json_document(event.details.get(data_key), f"event {event.id} {data_key}")
        try:
            return position_of(name, data)
        except FailbackError:
            if strict:
                raise
            return None

    def entered_before(self, event: HistoryEvent) -> HistoryEvent | None:
        """The ``*StateEntered`` event of the state ``event`` belongs to."""
        current = self.by_id.get(event.previous)
        for _ in range(10_000):
            if current is None or current.type.endswith("StateEntered"):
                return current
            current = self.by_id.get(current.previous)
        return None

    def call_of(self, event: HistoryEvent) -> tuple[int, _Call] | None:
        """The call a task's end belongs to (following ``previousEventId``)."""
        current: HistoryEvent | None = event
        for _ in range(10_000):
            if current is None:
                return None
            call = self.calls.get(current.id)
            if call is not None:
                return current.id, call
            current = self.by_id.get(current.previous)
        return None

    def scheduled(self, event: HistoryEvent) -> None:
        details = event.details
        resource_type = details.get("resourceType")
        resource = str(details.get("resource") or "")
        parameters = json_document(details.get("parameters"), f"event {event.id} parameters")
        if not isinstance(parameters, Mapping):
            return
        if resource_type == "lambda":
            payload = json_document(parameters.get("Payload"), f"event {event.id} payload")
            if not isinstance(payload, Mapping):
                return
            try:
                if "activity" in payload:
                    self.activity_scheduled(event, activity_call(payload))
                elif "kind" in payload:
                    request = token_request(payload)
                    if request.kind == "deadline":
                        self.calls[event.id] = _Call("deadline", "")
                    else:
                        assert request.position is not None
                        self.event_scheduled(event, request.position, request.event)
            except PayloadError as problem:
                raise FailbackError(f"history event {event.id}: {problem}") from None
        elif resource_type == "states" and resource.startswith("startExecution"):
            self.child_scheduled(event, parameters)

    def service_entered(self, event: HistoryEvent, position: str) -> None:
        """A service task's branch (adapters/aws/compiler/service_states.py) begins, or
        refuses its request before the call: its states' data carries ``call``, as a
        sub-flow's does; the branch's first state stands for the call being made."""
        name = str(event.details.get("name") or "")
        role = name.rpartition(ROLE_SEPARATOR)[2]
        if role not in SERVICE_BRANCH_ROLES:
            return
        token = self.snapshot.state.tokens.get(position)
        if token is None:
            return
        state = structure_of(self.snapshot.definition).branch(token.scope).states.get(token.state)
        if not isinstance(state, TaskState) or state.service is None:
            return
        if role == REFUSED_ROLE:
            found = self.call_of(event)
            if found is not None:
                scheduled_id, call = found
                del self.calls[scheduled_id]
                assert call.work_id is not None
                self.feed(
                    ActivityFailed(
                        call.work_id, ServiceError.INVALID_REQUEST, "an event's detail is an object"
                    ),
                    event,
                )
            return
        if role != service_branch_start(state.service):
            return
        self.fire(position, (Purpose.RETRY,), event)  # the service state's own retry
        entry = self.pending_of(position, (Purpose.TASK,))
        if entry is None:
            if self.stale(position):
                return
            raise self.diverged(event, f"a service task was called at {position!r}")
        self.calls[event.id] = _Call("service", position, entry.id)

    def service_state(self, position: str) -> TaskState:
        token = self.snapshot.state.tokens[position]
        state = structure_of(self.snapshot.definition).branch(token.scope).states[token.state]
        assert isinstance(state, TaskState) and state.service is not None
        return state

    def service_ended(self, event: HistoryEvent, call: _Call, ok: bool, error: str) -> None:
        assert call.work_id is not None
        details = event.details
        state = self.service_state(call.position)
        assert state.service is not None
        if ok:
            output = json_document(details.get("output"), f"event {event.id} output")
            try:
                result = portable_result(state, output)
            except ValueError as problem:  # an object that is not JSON, read as JSON
                why = f"the object is not JSON: {problem}"
                self.feed(ActivityFailed(call.work_id, ReservedError.RUNTIME, why), event)
                return
            self.feed(ActivityCompleted(call.work_id, result), event)
            return
        if error == ReservedError.TIMEOUT and self.fire(
            call.position, (Purpose.TASK_TIMEOUT,), event
        ):
            return
        cause = _text_or_none(details.get("cause"))
        if error == ReservedError.TIMEOUT:
            portable = error
        else:
            portable = portable_error(state.service, error, cause)
        self.feed(ActivityFailed(call.work_id, portable, cause), event)

    def activity_scheduled(self, event: HistoryEvent, call: ActivityCall) -> None:
        self.owners_restarted(call.position, event)
        token = self.snapshot.state.tokens.get(call.position)
        if token is not None and call.attempt == token.attempt + 1:
            self.fire(call.position, (Purpose.RETRY,), event)  # the task's own retry
        entry = self.pending_of(call.position, (Purpose.TASK,))
        if entry is None:
            if self.stale(call.position):
                return
            raise self.diverged(
                event, f"activity {call.activity!r} was called at {call.position!r}"
            )
        command = entry.command
        assert isinstance(command, RunActivity)
        if command.attempt != call.attempt:
            raise self.diverged(
                event,
                f"{call.position!r} ran attempt {call.attempt}, the engine's call is "
                f"attempt {command.attempt}",
            )
        self.calls[event.id] = _Call("activity", call.position, entry.id)

    def event_scheduled(self, event: HistoryEvent, position: str, name: str | None) -> None:
        self.owners_restarted(position, event)
        entry = self.pending_of(position, (Purpose.EVENT,))
        if entry is None:
            if self.stale(position):
                return
            raise self.diverged(event, f"an event wait began at {position!r}")
        self.calls[event.id] = _Call("event", position, entry.id, name)

    def child_scheduled(self, event: HistoryEvent, parameters: Mapping[str, Any]) -> None:
        name = parameters.get("Name")
        for entry in self.snapshot.state.pending.values():
            command = entry.command
            if entry.purpose == Purpose.CHILD and isinstance(command, StartChildFlow):
                resumed = execution_name(command.child_instance_id, self.snapshot.epoch)
                if name == resumed:
                    self.calls[event.id] = _Call("child", entry.token, entry.id)
                    return
        entered = self.entered_before(event)
        position = None if entered is None else self.place(entered, "input", strict=True)
        if position is None:
            raise FailbackError(f"history event {event.id}: cannot place the sub-flow task")
        self.owners_restarted(position, event)
        self.fire(position, (Purpose.RETRY,), event)  # the sub-flow state's own retry
        found = self.pending_of(position, (Purpose.CHILD,))
        if found is None:
            if self.stale(position):
                return
            raise self.diverged(event, f"a sub-flow started at {position!r}")
        self.calls[event.id] = _Call("child", position, found.id)

    def task_ended(self, event: HistoryEvent) -> None:
        found = self.call_of(event)
        if found is None:
            return  # a task of the compiler's own, or work the engine had cancelled
        scheduled_id, call = found
        del self.calls[scheduled_id]
        details = event.details
        ok = event.type == "TaskSucceeded"
        error = str(
            details.get("error") or (ReservedError.TIMEOUT if "TimedOut" in event.type else "")
        )
        if call.kind == "deadline":
            if not ok and error == ReservedError.TIMEOUT:
                self.flow_timer(event)
            return
        assert call.work_id is not None
        if call.kind == "activity":
            self.activity_ended(event, call, ok, error)
        elif call.kind == "service":
            self.service_ended(event, call, ok, error)
        elif call.kind == "event":
            if ok:
                data = json_document(details.get("output"), f"event {event.id} output")
                self.feed(EventReceived(call.event or "", data, wait_id=call.work_id), event)
            elif error == ReservedError.TIMEOUT:
                if not self.fire(call.position, (Purpose.EVENT_TIMEOUT,), event) and not self.stale(
                    call.position
                ):
                    raise self.diverged(event, f"the wait at {call.position!r} has no timeout")
            elif not self.stale(call.position):
                raise self.diverged(event, f"the event wait failed with {error!r}")
        else:
            self.child_ended(event, call, ok, error)

    def activity_ended(self, event: HistoryEvent, call: _Call, ok: bool, error: str) -> None:
        assert call.work_id is not None
        details = event.details
        if ok:
            output = json_document(details.get("output"), f"event {event.id} output")
            payload = output.get("Payload") if isinstance(output, Mapping) else output
            self.feed(ActivityCompleted(call.work_id, payload), event)
            return
        if error == ReservedError.TIMEOUT and self.fire(
            call.position, (Purpose.TASK_TIMEOUT,), event
        ):
            return
        cause = lambda_cause(details.get("cause"))
        self.feed(ActivityFailed(call.work_id, error or ReservedError.TASK_FAILED, cause), event)

    def child_ended(self, event: HistoryEvent, call: _Call, ok: bool, error: str) -> None:
        assert call.work_id is not None
        details = event.details
        if ok:
            output = json_document(details.get("output"), f"event {event.id} output")
            result = output.get("Output") if isinstance(output, Mapping) else output
            result = json_document(result, f"event {event.id} child output")
            self.feed(ChildFinished(call.work_id, "succeeded", output=result), event)
            return
        if error == ReservedError.TIMEOUT and self.fire(
            call.position, (Purpose.CHILD_TIMEOUT,), event
        ):
            return
        cause = details.get("cause")
        described = None
        if isinstance(cause, str):
            try:
                described = json.loads(cause)
            except ValueError:
                described = None
        if isinstance(described, Mapping) and "Status" in described:
            status = str(described.get("Status"))
            child_error = _text_or_none(described.get("Error"))
            child_cause = _text_or_none(described.get("Cause"))
            if status == "ABORTED":
                finished = ChildFinished(call.work_id, "cancelled", error=child_error)
            elif status == "TIMED_OUT":
                finished = ChildFinished(
                    call.work_id, "failed", error=ReservedError.TIMEOUT, cause=child_cause
                )
            else:
                finished = ChildFinished(
                    call.work_id, "failed", error=child_error, cause=child_cause
                )
        else:
            finished = ChildFinished(call.work_id, "failed", error=error or None, cause=cause)
        self.feed(finished, event)

    def wait_exited(self, event: HistoryEvent) -> None:
        position = self.place(event, "output", strict=False)
        if position is None:
            return
        self.owners_restarted(position, event)
        self.fire(position, (Purpose.WAIT, Purpose.RETRY), event)


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# --- from an execution to a snapshot ----------------------------------------------------------


def failback_snapshot(
    execution: Mapping[str, Any],
    history: Iterable[Mapping[str, Any]],
    *,
    base: Snapshot | None = None,
    definition: FlowDefinition | None = None,
    machine_digest: str | None = None,
) -> Snapshot:
    """The snapshot of an execution (``describe_execution``'s answer and its history).

    ``base``: the snapshot the execution continued (required when it was a continuation).
    ``definition``: the flow's definition, for an execution that started fresh (a
    continuation's comes with ``base``). ``machine_digest``: the digest in the machine's
    ``Comment``, checked against the definition when given.
    """
    events = history_events(history)
    document = execution_document(execution, events)
    rf = document.get("rf") if isinstance(document, Mapping) else None
    if not isinstance(rf, Mapping) or not isinstance(rf.get("instance_id"), str):
        raise FailbackError("the execution's input is not a RustyFlower execution input")
    instance_id = rf["instance_id"]
    epoch = rf.get("epoch", 0)
    if rf.get("resume") is not None:
        if base is None:
            raise FailbackError(
                f"execution of {instance_id!r} continued a snapshot (seq {rf.get('seq')}): "
                "the reader needs that snapshot as its base"
            )
        mismatch = [
            name
            for name, value in (
                ("instance_id", base.instance_id),
                ("epoch", base.epoch),
                ("seq", base.seq),
                ("digest", base.digest),
            )
            if rf.get(name) != value
        ]
        if mismatch:
            raise FailbackError(
                f"the base snapshot is not the one the execution continued ({', '.join(mismatch)} "
                "differ)"
            )
        snapshot = base
    else:
        definition = definition or (base.definition if base is not None else None)
        if definition is None:
            raise FailbackError(
                f"execution of {instance_id!r} started fresh: the reader needs the flow's "
                "definition"
            )
        started = next((e for e in events if e.type == "ExecutionStarted"), None)
        at = started.timestamp if started else _aware(execution.get("startDate"))
        snapshot = start(
            definition, document.get("input"), instance_id, at, epoch=int(epoch)
        ).snapshot
    if machine_digest is not None and snapshot.digest != machine_digest:
        raise FailbackError(
            f"the state machine runs definition {machine_digest}, the snapshot's is "
            f"{snapshot.digest}"
        )
    replay = _Replay(snapshot)
    replay.run(events)
    _check_end(execution, events, replay.snapshot)
    return replay.snapshot


def _aware(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    raise FailbackError("the execution has no start time")


def _same_error(aws_error: str, engine_error: str | None) -> bool:
    """The engine's error as the compiled machine names it (docs/aws.md, "Error names")."""
    if aws_error == engine_error:
        return True
    if aws_error == SUB_FLOW_FAILED:
        return engine_error == ReservedError.TASK_FAILED
    if aws_error == UNRAISABLE:
        return engine_error is not None and is_reserved(engine_error)
    return False


def _check_end(
    execution: Mapping[str, Any], events: Sequence[HistoryEvent], snapshot: Snapshot
) -> None:
    status = str(execution.get("status") or "")
    for event in events:
        if event.type == "ExecutionFailed":
            error = str(event.details.get("error") or "")
            if error.startswith("RF.") and not snapshot.finished:
                raise FailbackError(
                    f"the execution refused its input ({error}: "
                    f"{event.details.get('cause')}); nothing ran in AWS"
                )
    expected = _ENDED.get(status)
    if expected is None:
        return  # running, or stopped: the snapshot stands where the replay left it
    if snapshot.status != expected:
        raise FailbackError(
            f"the execution ended {status} but the replay is {snapshot.status}: the history "
            "is incomplete or the engine and the state machine disagree"
        )
    if expected == "failed" and status == "FAILED":
        aws_error = execution.get("error")
        if aws_error is not None and not _same_error(str(aws_error), snapshot.state.error):
            raise FailbackError(
                f"the execution failed with {aws_error!r} but the replay with "
                f"{snapshot.state.error!r}: the engine and the state machine disagree"
            )
    if expected == "succeeded":
        text = execution.get("output")
        try:
            output = json.loads(text) if isinstance(text, str) else text
        except ValueError:
            output = text  # moto writes a text output unquoted; Step Functions does not
        same_text = isinstance(text, str) and text == snapshot.state.output
        if not same_text and canonical_json(output) != canonical_json(snapshot.state.output):
            raise FailbackError(
                "the execution's output differs from the replay's: "
                f"{execution.get('output')!r} vs {json.dumps(snapshot.state.output)!r}"
            )


def stop_execution(
    stepfunctions: Any, execution_arn: str, *, timeout: float = STOP_TIMEOUT
) -> dict[str, Any]:
    """Stop a running execution and wait until it is no longer running (so that its
    history is final); its describe_execution answer."""
    described: dict[str, Any] = stepfunctions.describe_execution(executionArn=execution_arn)
    if described.get("status") != "RUNNING":
        return described
    stepfunctions.stop_execution(
        executionArn=execution_arn,
        error=STOP_ERROR,
        cause="the instance fails back to the on-premises site",
    )
    deadline = time.monotonic() + timeout
    while True:
        described = stepfunctions.describe_execution(executionArn=execution_arn)
        if described.get("status") != "RUNNING":
            return described
        if time.monotonic() > deadline:
            raise FailbackError(f"{execution_arn} still runs {timeout} s after StopExecution")
        time.sleep(0.2)


def failback_execution(
    stepfunctions: Any,
    execution_arn: str,
    *,
    base: Snapshot | None = None,
    definition: FlowDefinition | None = None,
    stop: bool = False,
) -> Snapshot:
    """Read an execution (stopping it first when ``stop``) and return its snapshot."""
    execution = (
        stop_execution(stepfunctions, execution_arn)
        if stop
        else stepfunctions.describe_execution(executionArn=execution_arn)
    )
    machine = stepfunctions.describe_state_machine_for_execution(executionArn=execution_arn)
    return failback_snapshot(
        execution,
        read_history(stepfunctions, execution_arn),
        base=base,
        definition=definition,
        machine_digest=deployed_digest(machine),
    )
