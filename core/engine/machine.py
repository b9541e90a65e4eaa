"""The pure engine: ``start`` and ``advance`` turn (snapshot, event, now) into a Transition.

No I/O and no clock: ``now`` is an argument, jitter is derived from the instance, so every
runtime (and every replay) makes the same decisions from the same inputs.

Why one module: ``_Run`` is the whole step semantics of every state kind (tokens,
frames, pending work, errors) over one mutable working copy; split over files, each part
would reach into the others' private state, and reviewing a semantic change against the
ASL and Durable Functions references needs all of it in one reading.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from rustyflower.core.contract import (
    Purpose,
    ReservedError,
    RunnerError,
    child_instance_id,
    error_matches,
    format_timer_id,
    format_work_id,
    idempotency_key,
    work_number,
)
from rustyflower.core.engine.commands import (
    AwaitEvent,
    CancelWork,
    Command,
    FinishFlow,
    RunActivity,
    StartChildFlow,
    StartTimer,
)
from rustyflower.core.engine.dataflow import (
    StateError,
    effective_input,
    merge_result,
    select,
    state_output,
)
from rustyflower.core.engine.events import (
    ActivityCompleted,
    ActivityFailed,
    CancelRequested,
    ChildFinished,
    Event,
    EventReceived,
    HoldRequested,
    ReleaseRequested,
    RetryFailedRequested,
    TimerFired,
)
from rustyflower.core.engine.state import (
    DEFAULT_HISTORY_LIMIT,
    Frame,
    HistoryEntry,
    InstanceState,
    ParentLink,
    Pending,
    Snapshot,
    Status,
    StepTrace,
    Token,
    Transition,
)
from rustyflower.core.engine.structure import child_scope, split_scope, structure_of
from rustyflower.core.errors import (
    InstanceFinishedError,
    InvalidControlError,
    NoWaiterError,
    PathNotFoundError,
    StaleEventError,
    UnknownCallError,
)
from rustyflower.core.ids import check_instance_id
from rustyflower.core.model import (
    ChoiceState,
    FailState,
    FlowDefinition,
    MapState,
    ParallelState,
    PassState,
    Retry,
    SubFlowState,
    SucceedState,
    TaskState,
    WaitForEventState,
    WaitState,
)
from rustyflower.core.snapshot.canonical import definition_digest
from rustyflower.core.timeutil import format_timestamp, parse_timestamp, require_aware

MAX_STEPS_PER_TRANSITION = 100_000
"""Pass/Choice states run without waiting; past this many in one transition it is a loop."""
MAX_MAP_ITEMS = 10_000
"""Items one map state takes: all of them are placed in one snapshot, and a map of a million
items used to run for minutes before the step limit ended it as a supposed endless loop."""

_RESETTABLE_TIMERS = frozenset({Purpose.TASK_TIMEOUT, Purpose.CHILD_TIMEOUT})
_DIGESTS: dict[int, tuple[FlowDefinition, str]] = {}


def start(
    definition: FlowDefinition,
    input: Any,
    instance_id: str,
    now: datetime,
    *,
    epoch: int = 0,
    parent: ParentLink | None = None,
    history_limit: int = DEFAULT_HISTORY_LIMIT,
) -> Transition:
    """Create instance ``instance_id`` of ``definition`` and run it until it must wait."""
    require_aware(now)
    check_instance_id(instance_id)
    at = format_timestamp(now)
    state = InstanceState(input=input, started_at=at, history_limit=history_limit, parent=parent)
    initial = Snapshot(
        instance_id=instance_id,
        definition=definition,
        digest=_digest(definition),
        status="running",
        seq=0,
        epoch=epoch,
        updated_at=at,
        state=state,
    )
    run = _Run(initial, now)
    run.record("FlowStarted")
    if definition.timeout_seconds is not None:
        run.add_timer("", Purpose.FLOW_TIMEOUT, now + timedelta(seconds=definition.timeout_seconds))
    run.enter("", definition.start_at, input)
    run.drain()
    return run.build()


def advance(snapshot: Snapshot, event: Event, now: datetime) -> Transition:
    """Apply one event. A rejected event raises and leaves ``snapshot`` as it was."""
    require_aware(now)
    if isinstance(event, RetryFailedRequested):
        return _retry_failed(snapshot, now)
    if snapshot.finished:
        raise InstanceFinishedError(
            f"instance {snapshot.instance_id!r} already {snapshot.status}; it takes no events"
        )
    run = _Run(snapshot, now)
    run.apply(event)
    run.drain()
    return run.build()


def _retry_failed(snapshot: Snapshot, now: datetime) -> Transition:
    """Run a failed instance again from the top-level state where it failed, with its input."""
    state = snapshot.state
    if snapshot.status != "failed" or state.failed_position is None:
        raise InvalidControlError(
            f"instance {snapshot.instance_id!r} is {snapshot.status}: only a failed instance "
            "with a recorded failure point can be retried"
        )
    run = _Run(snapshot, now)
    run.status = "running"
    run.retried += 1
    run.output = run.error = run.cause = run.finished_at = None
    run.resume_point = None
    run.record("FlowRetried", state.failed_position, {"error": state.error})
    definition = snapshot.definition
    if definition.timeout_seconds is not None:
        run.add_timer("", Purpose.FLOW_TIMEOUT, now + timedelta(seconds=definition.timeout_seconds))
    run.enter("", state.failed_position, state.failed_input)
    run.drain()
    return run.build()


def outstanding(snapshot: Snapshot) -> list[Command]:
    """The work a runtime must (re-)issue to continue ``snapshot``: calls, timers, waits."""
    entries = sorted(snapshot.state.pending.values(), key=_issue_order)
    return [entry.command for entry in entries if entry.dispatched]


def _digest(definition: FlowDefinition) -> str:
    cached = _DIGESTS.get(id(definition))
    if cached is not None and cached[0] is definition:
        return cached[1]
    digest = definition_digest(definition.document())
    if len(_DIGESTS) > 256:
        _DIGESTS.clear()
    _DIGESTS[id(definition)] = (definition, digest)
    return digest


def jitter_fraction(instance_id: str, position: str, attempt: int) -> float:
    """A replayable stand-in for random(): the same instance and attempt give the same delay."""
    seed = hashlib.sha256(f"{instance_id}|{position}|{attempt}".encode()).digest()
    return int.from_bytes(seed[:8], "big") / 2**64


def retry_delay(policy: Retry, retry_count: int, fraction: float) -> float:
    """ASL: interval * backoff_rate ** retry_count, capped by max_delay, optionally jittered."""
    delay = policy.interval_seconds * policy.backoff_rate**retry_count
    if policy.max_delay_seconds is not None:
        delay = min(delay, float(policy.max_delay_seconds))
    if policy.jitter == "full":
        delay *= fraction
    return delay


class _Run:
    """One transition in the making: mutable copies of the containers it changes."""

    def __init__(self, snapshot: Snapshot, now: datetime) -> None:
        self.snapshot = snapshot
        self.structure = structure_of(snapshot.definition)
        self.instance_id = snapshot.instance_id
        self.now = now
        self.at = format_timestamp(now)
        state = snapshot.state
        self.tokens = dict(state.tokens)
        self.frames = dict(state.frames)
        self.pending = dict(state.pending)
        self.counter = state.counter
        self.retried = state.retried
        self.held = state.held
        self.status: Status = snapshot.status
        self.output = state.output
        self.error = state.error
        self.cause = state.cause
        self.finished_at = state.finished_at
        self.resume_point: tuple[str, Any] | None = (
            (state.failed_position, state.failed_input) if state.failed_position else None
        )
        self.seq = snapshot.seq + 1
        self.history: list[HistoryEntry] = []
        self.commands: list[Command] = []
        self.trace: list[StepTrace] = []
        self.ready: deque[str] = deque()

    # --- events -------------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        if isinstance(event, ActivityCompleted):
            entry = self.take(event.call_id, Purpose.TASK)
            token = self.release(entry.token)
            self.record("TaskSucceeded", token.position)
            self.complete(token, event.output)
        elif isinstance(event, ActivityFailed):
            entry = self.take(event.call_id, Purpose.TASK)
            token = self.release(entry.token)
            self.record("TaskFailed", token.position, {"error": event.error, "cause": event.cause})
            self.fail(token, event.error, event.cause)
        elif isinstance(event, TimerFired):
            self.timer_fired(self.take(event.timer_id, None))
        elif isinstance(event, EventReceived):
            self.event_received(event)
        elif isinstance(event, ChildFinished):
            self.child_finished(event)
        elif isinstance(event, CancelRequested):
            self.record("CancelRequested", detail={"reason": event.reason})
            self.finish("cancelled", error=ReservedError.CANCELLED, cause=event.reason)
        elif isinstance(event, HoldRequested):
            if self.held:
                raise InvalidControlError(f"instance {self.instance_id!r} is already held")
            self.held = True
            self.record("Held", detail={"reason": event.reason})
        elif isinstance(event, ReleaseRequested):
            self.release_hold()
        else:  # pragma: no cover - the Event union is closed
            raise TypeError(f"not an engine event: {event!r}")

    def take(self, work_id: str, purpose: str | None) -> Pending:
        entry = self.pending.get(work_id)
        if entry is None:
            number = work_number(work_id)
            if number is not None and number <= self.counter:
                raise StaleEventError(
                    f"{work_id!r} of instance {self.instance_id!r} already finished "
                    "(a duplicate report, or the result of work that was cancelled)"
                )
            raise UnknownCallError(f"instance {self.instance_id!r} never issued {work_id!r}")
        if purpose is not None and entry.purpose != purpose:
            raise UnknownCallError(
                f"{work_id!r} is a {entry.purpose.replace('_', ' ')}, not an activity call"
            )
        if purpose is None and not isinstance(entry.command, StartTimer):
            raise UnknownCallError(
                f"{work_id!r} is a {entry.purpose.replace('_', ' ')}, not a timer"
            )
        if not entry.dispatched:
            raise UnknownCallError(f"{work_id!r} was not dispatched yet (the instance is held)")
        del self.pending[work_id]
        return entry

    def timer_fired(self, entry: Pending) -> None:
        purpose = entry.purpose
        if purpose == Purpose.FLOW_TIMEOUT:
            root = next((t for t in self.tokens.values() if not t.scope), None)
            if root is not None:
                self.resume_point = (root.state, root.data)
            self.record("FlowTimedOut")
            self.finish(
                "failed", error=ReservedError.TIMEOUT, cause="the flow exceeded its timeout_seconds"
            )
            return
        token = self.tokens[entry.token]
        if purpose == Purpose.RETRY:
            token = self.set_token(token, pending=_without(token.pending, entry.id))
            self.record("RetryStarted", token.position, {"attempt": token.attempt + 1})
            self.ready.append(token.position)
            return
        token = self.release(token.position)
        state = self.state_of(token)
        if purpose == Purpose.WAIT:
            self.record("WaitFinished", token.position)
            try:
                value = select(state.input_path, token.data, "input_path")
                self.next_or_end(token, state, select(state.output_path, value, "output_path"))
            except StateError as problem:
                self.fail(token, problem.error, problem.cause)
        elif purpose in (Purpose.TASK_TIMEOUT, Purpose.CHILD_TIMEOUT):
            self.record("TimedOut", token.position)
            self.fail(
                token, ReservedError.TIMEOUT, f"state {token.state!r} exceeded its timeout_seconds"
            )
        elif purpose == Purpose.EVENT_TIMEOUT:
            self.record("EventTimedOut", token.position)
            assert isinstance(state, WaitForEventState)
            if state.on_timeout is not None:
                self.move(token, state.on_timeout, token.data)
            else:
                self.fail(token, ReservedError.TIMEOUT, f"no event {state.event!r} arrived in time")

    def event_received(self, event: EventReceived) -> None:
        if event.wait_id is not None:
            entry = self.pending.get(event.wait_id)
            if entry is None:
                self.take(event.wait_id, Purpose.EVENT)  # raises: stale or never issued
            if entry is None or not isinstance(entry.command, AwaitEvent):
                raise UnknownCallError(f"{event.wait_id!r} is not an event wait")
            if not _awaits(entry, event.event):
                raise NoWaiterError(
                    f"instance {self.instance_id!r} has no wait {event.wait_id!r} "
                    f"for event {event.event!r}"
                )
        else:
            # the oldest waiter, by issue number: dict order does not survive serialisation
            waiters = [entry for entry in self.pending.values() if _awaits(entry, event.event)]
            if not waiters:
                raise NoWaiterError(
                    f"instance {self.instance_id!r} is not waiting for event {event.event!r}"
                )
            entry = min(waiters, key=_issue_order)
        del self.pending[entry.id]
        token = self.release(entry.token)
        self.record("EventReceived", token.position, {"event": event.event})
        self.complete(token, event.data)

    def child_finished(self, event: ChildFinished) -> None:
        entry = self.take(event.call_id, Purpose.CHILD)
        token = self.release(entry.token)
        self.record("SubFlowFinished", token.position, {"status": event.status})
        if event.status == "succeeded":
            self.complete(token, event.output)
        elif event.status == "cancelled":
            self.fail(token, event.error or RunnerError.SUB_FLOW_CANCELLED, event.cause)
        else:
            self.fail(token, event.error or ReservedError.TASK_FAILED, event.cause)

    def release_hold(self) -> None:
        if not self.held:
            raise InvalidControlError(f"instance {self.instance_id!r} is not held")
        self.held = False
        self.record("Released")
        for entry in sorted(self.pending.values(), key=_issue_order):
            work_id = entry.id
            if entry.dispatched:
                continue
            command = entry.command
            if isinstance(command, StartTimer) and entry.purpose in _RESETTABLE_TIMERS:
                # a timeout counts from dispatch, and dispatch happens now
                seconds = self.state_of(self.tokens[entry.token]).timeout_seconds
                fire_at = format_timestamp(self.now + timedelta(seconds=seconds))
                command = replace(command, fire_at=fire_at)
            self.pending[work_id] = replace(entry, command=command, dispatched=True)
            self.commands.append(command)

    # --- moving tokens ------------------------------------------------------------------

    def enter(self, scope: str, name: str, data: Any) -> None:
        token = Token(scope=scope, state=name, data=data)
        self.trace.append(StepTrace("entered", token.position, data))
        self.tokens[token.position] = token
        self.ready.append(token.position)

    def drain(self) -> None:
        steps = 0
        while self.ready and self.status == "running":
            token = self.tokens.get(self.ready.popleft())
            if token is None or token.pending or token.joining:
                continue
            steps += 1
            if steps > MAX_STEPS_PER_TRANSITION:
                self.record("StepLimitExceeded", token.position)
                self.finish(
                    "failed",
                    error=ReservedError.RUNTIME,
                    cause=f"more than {MAX_STEPS_PER_TRANSITION} states ran without waiting: "
                    "an endless loop of pass/choice states?",
                )
                return
            self.execute(token)

    def execute(self, token: Token) -> None:
        state = self.state_of(token)
        try:
            if isinstance(state, TaskState):
                self.dispatch_task(token, state)
            elif isinstance(state, PassState):
                self.run_pass(token, state)
            elif isinstance(state, ChoiceState):
                self.run_choice(token, state)
            elif isinstance(state, WaitState):
                self.run_wait(token, state)
            elif isinstance(state, WaitForEventState):
                self.await_event(token, state)
            elif isinstance(state, ParallelState):
                self.start_parallel(token, state)
            elif isinstance(state, MapState):
                self.start_map(token, state)
            elif isinstance(state, SubFlowState):
                self.start_child(token, state)
            elif isinstance(state, SucceedState):
                value = select(state.input_path, token.data, "input_path")
                self.branch_end(token, select(state.output_path, value, "output_path"))
            elif isinstance(state, FailState):
                self.run_fail(token, state)
        except StateError as problem:
            self.fail(self.tokens.get(token.position, token), problem.error, problem.cause)

    def state_of(self, token: Token) -> Any:
        return self.structure.branch(token.scope).states[token.state]

    def set_token(self, token: Token, **changes: Any) -> Token:
        updated = replace(token, **changes)
        self.tokens[token.position] = updated
        return updated

    def move(self, token: Token, target: str, data: Any) -> None:
        self.trace.append(StepTrace("left", token.position, data))
        self.drop(token)
        self.enter(token.scope, target, data)

    def next_or_end(self, token: Token, state: Any, output: Any) -> None:
        if state.end:
            self.branch_end(token, output)
        else:
            self.move(token, state.next, output)

    def complete(self, token: Token, result: Any) -> None:
        """The state produced ``result``: shape it into the state's output and go on."""
        state = self.state_of(token)
        try:
            output = state_output(self.structure, state, token.data, result)
        except StateError as problem:
            self.fail(token, problem.error, problem.cause)
            return
        self.next_or_end(token, state, output)

    # --- state kinds --------------------------------------------------------------------

    def dispatch_task(self, token: Token, state: TaskState) -> None:
        value = effective_input(self.structure, state, token.data)
        attempt = token.attempt + 1
        call_id = self.new_id(token.position)
        command = RunActivity(
            call_id=call_id,
            activity=state.work_name,
            input=value,
            position=token.position,
            attempt=attempt,
            idempotency_key=idempotency_key(
                self.instance_id,
                token.position,
                attempt,
                self.counter if self.retried or self.structure.repeatable(token.position) else None,
            ),
            timeout_seconds=state.timeout_seconds,
        )
        ids = [self.add(token.position, Purpose.TASK, command, deferrable=True)]
        if state.timeout_seconds is not None:
            fire_at = self.now + timedelta(seconds=state.timeout_seconds)
            ids.append(
                self.add_timer(token.position, Purpose.TASK_TIMEOUT, fire_at, deferrable=True)
            )
        self.set_token(token, attempt=attempt, pending=token.pending + tuple(ids))
        self.record(
            "TaskScheduled", token.position, {"activity": state.work_name, "attempt": attempt}
        )

    def run_pass(self, token: Token, state: PassState) -> None:
        value = effective_input(self.structure, state, token.data)
        result = state.result if state.result is not None else value
        self.next_or_end(token, state, state_output(self.structure, state, token.data, result))

    def run_choice(self, token: Token, state: ChoiceState) -> None:
        value = select(state.input_path, token.data, "input_path")
        target = state.default
        try:
            for branch in state.choices:
                if branch.when.evaluate(value):
                    target = branch.next
                    break
        except PathNotFoundError as problem:
            raise StateError(ReservedError.RUNTIME, f"choice rule: {problem}") from None
        if target is None:
            raise StateError(
                ReservedError.NO_CHOICE_MATCHED, f"no rule of choice {token.state!r} matched"
            )
        self.move(token, target, select(state.output_path, value, "output_path"))

    def run_wait(self, token: Token, state: WaitState) -> None:
        value = select(state.input_path, token.data, "input_path")
        fire_at = self.wait_deadline(state, value)
        if fire_at <= self.now:
            self.next_or_end(token, state, select(state.output_path, value, "output_path"))
            return
        timer = self.add_timer(token.position, Purpose.WAIT, fire_at)
        self.set_token(token, pending=(*token.pending, timer))
        self.record("WaitStarted", token.position, {"until": format_timestamp(fire_at)})

    def wait_deadline(self, state: WaitState, value: Any) -> datetime:
        if state.seconds is not None:
            return self.now + timedelta(seconds=state.seconds)
        if state.timestamp is not None:
            return _parse_time(state.timestamp)
        if state.seconds_path is not None:
            seconds = select(state.seconds_path, value, "seconds_path")
            if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
                raise StateError(
                    ReservedError.RUNTIME,
                    f"seconds_path must select a whole number >= 0, got {seconds!r}",
                )
            return self.now + timedelta(seconds=seconds)
        assert state.timestamp_path is not None
        text = select(state.timestamp_path, value, "timestamp_path")
        moment = parse_timestamp(text)
        if moment is None:
            raise StateError(
                ReservedError.RUNTIME, f"timestamp_path must select an RFC 3339 time, got {text!r}"
            )
        return moment

    def await_event(self, token: Token, state: WaitForEventState) -> None:
        select(state.input_path, token.data, "input_path")
        wait_id = self.new_id(token.position)
        command = AwaitEvent(wait_id=wait_id, event=state.event, position=token.position)
        ids = [self.add(token.position, Purpose.EVENT, command, work_id=wait_id)]
        if state.timeout_seconds is not None:
            fire_at = self.now + timedelta(seconds=state.timeout_seconds)
            ids.append(self.add_timer(token.position, Purpose.EVENT_TIMEOUT, fire_at))
        self.set_token(token, pending=token.pending + tuple(ids))
        self.record("EventAwaited", token.position, {"event": state.event})

    def start_child(self, token: Token, state: SubFlowState) -> None:
        value = effective_input(self.structure, state, token.data)
        attempt = token.attempt + 1
        call_id = self.new_id(token.position)
        # named like an activity call's key: by position and attempt where the state is
        # entered once per scope, so a child the site started in the replication gap is the
        # child the cloud starts again; by call number where it can be entered again
        numbered = self.retried or self.structure.repeatable(token.position)
        command = StartChildFlow(
            call_id=call_id,
            flow=state.flow,
            version=state.version,
            input=value,
            child_instance_id=child_instance_id(
                self.instance_id, token.position, attempt, call_id if numbered else None
            ),
            position=token.position,
        )
        ids = [self.add(token.position, Purpose.CHILD, command, deferrable=True, work_id=call_id)]
        if state.timeout_seconds is not None:
            fire_at = self.now + timedelta(seconds=state.timeout_seconds)
            ids.append(
                self.add_timer(token.position, Purpose.CHILD_TIMEOUT, fire_at, deferrable=True)
            )
        self.set_token(token, attempt=attempt, pending=token.pending + tuple(ids))
        self.record("SubFlowStarted", token.position, {"flow": state.flow, "attempt": attempt})

    def start_parallel(self, token: Token, state: ParallelState) -> None:
        value = effective_input(self.structure, state, token.data)
        count = len(state.branches)
        self.frames[token.position] = Frame(
            owner=token.position,
            kind="parallel",
            results=(None,) * count,
            done=(False,) * count,
            running=count,
        )
        self.set_token(token, joining=True, attempt=token.attempt + 1)
        self.record("ParallelStarted", token.position, {"branches": count})
        for index, branch in enumerate(state.branches):
            self.enter(child_scope(token.position, index), branch.start_at, value)

    def start_map(self, token: Token, state: MapState) -> None:
        value = select(state.input_path, token.data, "input_path")
        items = select(state.items_path, value, "items_path")
        if not isinstance(items, list):
            raise StateError(
                ReservedError.RUNTIME, f"items_path {state.items_path!r} must select an array"
            )
        if len(items) > MAX_MAP_ITEMS:
            raise StateError(
                ReservedError.RUNTIME,
                f"items_path {state.items_path!r} selected {len(items)} items; a map takes at "
                f"most {MAX_MAP_ITEMS} (split them over several maps, or a sub-flow per batch)",
            )
        self.record("MapStarted", token.position, {"items": len(items)})
        if not items:
            self.complete(token, [])
            return
        frame = Frame(
            owner=token.position,
            kind="map",
            results=(None,) * len(items),
            done=(False,) * len(items),
            running=0,
            items=tuple(items),
            effective_input=value,
        )
        token = self.set_token(token, joining=True, attempt=token.attempt + 1)
        limit = state.max_concurrency or len(items)
        try:
            for _ in range(min(limit, len(items))):
                frame = self.launch_item(state, frame)
                self.frames[token.position] = frame
        except StateError:
            self.frames[token.position] = frame
            self.cancel_frame(token.position)
            self.set_token(token, joining=False)
            raise

    def launch_item(self, state: MapState, frame: Frame) -> Frame:
        index = frame.next_item
        item = frame.items[index]
        if state.item_selector is None:
            item_input = item
        else:
            context = {"Map": {"Item": {"Index": index, "Value": item}}}
            try:
                item_input = self.structure.template(state.item_selector).render(
                    frame.effective_input, context
                )
            except PathNotFoundError as problem:
                raise StateError(
                    ReservedError.PARAMETER_PATH_FAILURE, f"item_selector: {problem}"
                ) from None
        self.enter(child_scope(frame.owner, index), state.iterator.start_at, item_input)
        return replace(frame, next_item=index + 1, running=frame.running + 1)

    def run_fail(self, token: Token, state: FailState) -> None:
        error = state.error
        cause = state.cause
        if state.error_path is not None:
            error = _text_or_none(select(state.error_path, token.data, "error_path"))
        if state.cause_path is not None:
            cause = _text_or_none(select(state.cause_path, token.data, "cause_path"))
        self.record("FailReached", token.position, {"error": error})
        self.branch_fail(token, error or ReservedError.FAILED, cause)

    # --- ends of branches and errors --------------------------------------------------

    def branch_end(self, token: Token, output: Any) -> None:
        self.trace.append(StepTrace("left", token.position, output))
        self.drop(token)
        if not token.scope:
            self.finish("succeeded", output=output)
            return
        parent_scope, owner, index = split_scope(token.scope)
        owner_position = parent_scope + owner
        frame = self.frames[owner_position]
        results = list(frame.results)
        results[index] = output
        done = list(frame.done)
        done[index] = True
        frame = replace(frame, results=tuple(results), done=tuple(done), running=frame.running - 1)
        owner_token = self.tokens[owner_position]
        if frame.kind == "map" and frame.next_item < len(frame.items):
            try:
                frame = self.launch_item(self.state_of(owner_token), frame)
            except StateError as problem:
                self.frames[owner_position] = frame
                self.cancel_frame(owner_position)
                self.fail(self.set_token(owner_token, joining=False), problem.error, problem.cause)
                return
        if frame.running == 0 and frame.next_item >= len(frame.items) and all(frame.done):
            del self.frames[owner_position]
            owner_token = self.set_token(owner_token, joining=False)
            self.record("JoinCompleted", owner_position)
            self.complete(owner_token, list(frame.results))
        else:
            self.frames[owner_position] = frame

    def branch_fail(self, token: Token, error: str, cause: str | None) -> None:
        """A branch ended in error: fail its owner (parallel/map) or the whole flow."""
        self.drop(token)
        if not token.scope:
            self.resume_point = (token.state, token.data)
            self.finish("failed", error=error, cause=cause)
            return
        parent_scope, owner, _ = split_scope(token.scope)
        owner_position = parent_scope + owner
        self.cancel_frame(owner_position)
        owner_token = self.set_token(self.tokens[owner_position], joining=False)
        self.record("BranchFailed", token.position, {"error": error})
        self.fail(owner_token, error, cause)

    def fail(self, token: Token, error: str, cause: str | None) -> None:
        """An error raised at ``token``'s state: retry it, catch it, or pass it outwards."""
        state = self.state_of(token)
        retriers: list[Retry] = list(getattr(state, "retry", []))
        if not retriers and isinstance(state, TaskState | SubFlowState):
            retriers = list(self.structure.definition.default_retry)
        for index, policy in enumerate(retriers):
            if not error_matches(policy.errors, error):
                continue
            retries = list(token.retries) + [0] * (len(retriers) - len(token.retries))
            if retries[index] < policy.max_attempts:
                fraction = jitter_fraction(self.instance_id, token.position, token.attempt)
                delay = retry_delay(policy, retries[index], fraction)
                retries[index] += 1
                timer = self.add_timer(
                    token.position, Purpose.RETRY, self.now + timedelta(seconds=delay)
                )
                self.set_token(token, retries=tuple(retries), pending=(*token.pending, timer))
                self.record(
                    "RetryScheduled",
                    token.position,
                    {"error": error, "retry": retries[index], "delay_seconds": round(delay, 3)},
                )
                return
            break  # ASL: the first matching retrier decides, even when it is used up
        catchers = list(getattr(state, "catch", []))
        if not token.scope:
            catchers += self.structure.definition.on_error
        for handler in catchers:
            if error_matches(handler.errors, error):
                try:
                    data = merge_result(
                        token.data, handler.result_path, {"Error": error, "Cause": cause}
                    )
                except StateError as problem:
                    self.branch_fail(token, ReservedError.RESULT_PATH_MATCH_FAILURE, problem.cause)
                    return
                self.record("ErrorCaught", token.position, {"error": error, "next": handler.next})
                self.move(token, handler.next, data)
                return
        self.branch_fail(token, error, cause)

    def cancel_frame(self, owner_position: str) -> None:
        """Stop every token and nested frame under a parallel/map state."""
        prefix = owner_position + "["
        for position in sorted(p for p in self.tokens if p.startswith(prefix)):
            self.drop(self.tokens[position])
        for position in [p for p in self.frames if p == owner_position or p.startswith(prefix)]:
            del self.frames[position]

    def finish(
        self,
        status: Status,
        output: Any = None,
        error: str | None = None,
        cause: str | None = None,
    ) -> None:
        self.tokens.clear()
        for entry in sorted(self.pending.values(), key=_issue_order):
            self.cancel(entry)
        self.frames.clear()
        self.ready.clear()
        self.status = status
        self.output = output
        self.error = error
        self.cause = cause
        self.finished_at = self.at
        self.record(f"Flow{status.capitalize()}", detail={"error": error} if error else None)
        self.commands.append(FinishFlow(status=status, output=output, error=error, cause=cause))

    # --- pending work -------------------------------------------------------------------

    def new_id(self, position: str) -> str:
        self.counter += 1
        return format_work_id(position, self.counter)

    def add(
        self,
        token_position: str,
        purpose: str,
        command: Command,
        *,
        deferrable: bool = False,
        work_id: str | None = None,
    ) -> str:
        work_id = work_id or _command_id(command)
        dispatched = not (deferrable and self.held)
        self.pending[work_id] = Pending(work_id, token_position, purpose, command, dispatched)
        if dispatched:
            self.commands.append(command)
        return work_id

    def add_timer(
        self, token_position: str, purpose: str, fire_at: datetime, *, deferrable: bool = False
    ) -> str:
        self.counter += 1
        command = StartTimer(
            timer_id=format_timer_id(token_position, self.counter, purpose),
            fire_at=format_timestamp(fire_at),
            purpose=purpose,
            position=token_position,
        )
        return self.add(token_position, purpose, command, deferrable=deferrable)

    def release(self, position: str) -> Token:
        """The token's wait is over: cancel whatever else it waited for (timeouts, calls)."""
        token = self.tokens[position]
        for work_id in token.pending:
            entry = self.pending.get(work_id)
            if entry is not None:
                self.cancel(entry)
        return self.set_token(token, pending=())

    def cancel(self, entry: Pending) -> None:
        del self.pending[entry.id]
        if entry.dispatched:
            child = entry.command if isinstance(entry.command, StartChildFlow) else None
            self.commands.append(
                CancelWork(
                    work_id=entry.id,
                    work_kind=entry.command.kind,
                    child_instance_id=None if child is None else child.child_instance_id,
                )
            )

    def drop(self, token: Token) -> None:
        current = self.tokens.pop(token.position, None)
        if current is None:
            return
        for work_id in current.pending:
            entry = self.pending.get(work_id)
            if entry is not None:
                self.cancel(entry)

    def record(self, kind: str, position: str = "", detail: Any = None) -> None:
        self.history.append(HistoryEntry(self.seq, self.at, kind, position, detail))

    def build(self) -> Transition:
        old = self.snapshot.state
        history = old.history + tuple(self.history)
        dropped = old.history_dropped
        overflow = len(history) - old.history_limit
        if overflow > 0:
            history = history[overflow:]
            dropped += overflow
        state = replace(
            old,
            tokens=self.tokens,
            frames=self.frames,
            pending=self.pending,
            counter=self.counter,
            retried=self.retried,
            held=self.held,
            output=self.output,
            error=self.error,
            cause=self.cause,
            finished_at=self.finished_at,
            failed_position=self.resume_point[0] if self.resume_point else None,
            failed_input=self.resume_point[1] if self.resume_point else None,
            history=history,
            history_dropped=dropped,
        )
        snapshot = replace(
            self.snapshot, status=self.status, seq=self.seq, updated_at=self.at, state=state
        )
        return Transition(snapshot, tuple(self.commands), tuple(self.trace))


def _command_id(command: Command) -> str:
    if isinstance(command, RunActivity | StartChildFlow):
        return command.call_id
    if isinstance(command, StartTimer):
        return command.timer_id
    if isinstance(command, AwaitEvent):
        return command.wait_id
    raise TypeError(f"{command.kind} is not pending work")


def _awaits(entry: Pending, event: str) -> bool:
    command = entry.command
    return isinstance(command, AwaitEvent) and command.event == event and entry.dispatched


def _issue_order(entry: Pending) -> int:
    return work_number(entry.id) or 0


def _without(ids: tuple[str, ...], work_id: str) -> tuple[str, ...]:
    return tuple(existing for existing in ids if existing != work_id)


def _parse_time(text: str) -> datetime:
    moment = parse_timestamp(text)
    if moment is None:  # the model validated it; this guards hand-built definitions
        raise StateError(ReservedError.RUNTIME, f"{text!r} is not an RFC 3339 time")
    return moment


def _text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)
