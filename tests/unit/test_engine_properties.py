"""Property tests of the pure engine over random valid flows (hypothesis).

A strategy builds small valid flow definitions (task, pass, choice with bounded loops,
wait, wait_for_event, nested parallel and map, succeed, fail, random retry and catch).
A tiny self-contained runtime (``_Runtime``) plays the engine's commands back as events:
each ``RunActivity`` gets the outcome its activity's behaviour decides, each
``StartTimer`` a ``TimerFired``, each ``AwaitEvent`` an ``EventReceived`` (unless the
plan says to leave that wait unanswered), and ``CancelWork`` withdraws a deliverable.
Hypothesis picks which deliverable goes next; a virtual clock moves to a timer's
``fire_at`` when it is delivered, and never backwards.

Activities (the name encodes the behaviour, so any runtime decides the same outcome):

* ``ok``            returns its input;
* ``inc``           returns ``input["count"] + 1`` (used with ``result_path: $.count``);
* ``boom:<E>``      fails with error ``E``;
* ``flaky:<k>:<E>`` fails with ``E`` on attempts ``<= k``, then returns its input.

The driver also sends, as the plan says: events that name no waiter (the engine picks
the oldest), late duplicates of finished work (refused as stale), hold/release pairs and
a cancel.

Properties:

(a) valid events never crash the engine; the run ends succeeded/failed/cancelled, or
    running only when every outstanding work item is an event wait the plan chose not to
    answer; the runtime's view built from commands always equals ``outstanding()``;
    CancelWork only names live work, never the work just reported; work ids and
    idempotency keys are never reused; no timer is set in the past; a held instance
    dispatches no activity;
(b) a snapshot survives encode/decode unchanged at every step (no keys, signing,
    signing + encryption), and re-encoding gives the same bytes (without encryption);
(c) a run cut and resumed from encoded bytes before every event (with a runtime rebuilt
    from ``outstanding()``) ends exactly like a straight run, and issues the same
    commands in the same order at every step (replay determinism);
(d) rejected events raise their specific EventRejectedError subclass and leave the
    snapshot's bytes unchanged;
(e) the bounded history stays within its limit and ``seq`` grows by one per event;
(f) when no race decided the outcome (timeouts, a first failing branch, a cancel), the
    delivery order does not change the final status, output or error.

The ``*_heavy`` variants run the same checks with more examples (``-m slow``).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rustyflower.core.engine import (
    ActivityCompleted,
    ActivityFailed,
    AwaitEvent,
    CancelRequested,
    CancelWork,
    Command,
    Event,
    EventReceived,
    FinishFlow,
    HoldRequested,
    ReleaseRequested,
    RunActivity,
    Snapshot,
    StartTimer,
    TimerFired,
    Transition,
    advance,
    outstanding,
    start,
)
from rustyflower.core.errors import (
    EventRejectedError,
    InstanceFinishedError,
    InvalidControlError,
    NoWaiterError,
    StaleEventError,
    UnknownCallError,
)
from rustyflower.core.model import FlowDefinition, parse_definition
from rustyflower.core.snapshot import EncryptionKey, SigningKey, SnapshotKeys
from rustyflower.core.snapshot.document import decode_snapshot, encode_snapshot, to_document
from rustyflower.core.timeutil import parse_timestamp

# --- settings -----------------------------------------------------------------------------

_COMMON = {
    "deadline": None,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
    "print_blob": True,
}
FAST = settings(max_examples=100, **_COMMON)
HEAVY = settings(max_examples=400, **_COMMON)

# --- flow definitions ---------------------------------------------------------------------

ERRORS = ("ErrA", "ErrB")
CATCHABLE = (*ERRORS, "States.Timeout", "BadInput")
EVENTS = ("approve", "go")
UNHEARD_EVENT = "nobody-listens"
MAX_STATES = 12
MAX_DEPTH = 2
_OMIT = object()

_NUMERIC_OPS = (
    "numeric_less_than",
    "numeric_less_than_equals",
    "numeric_equals",
    "numeric_greater_than",
    "numeric_greater_than_equals",
)
_MIDDLE_KINDS = ("task", "task", "task", "pass", "choice", "loop", "wait", "wait_for_event")
_NESTED_KINDS = ("parallel", "map")
_LAST_ONLY_KINDS = ("succeed", "fail")


@dataclass
class _Branch:
    states: dict[str, Any] = field(default_factory=dict)
    done: str | None = None


class _FlowBuilder:
    """Builds one random valid definition; ``budget`` caps the number of states."""

    def __init__(self, draw: Callable[..., Any], budget: int) -> None:
        self.draw = draw
        self.budget = budget
        self.count = 0

    # helpers --------------------------------------------------------------------------

    def fresh(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def add(self, branch: _Branch, prefix: str, state: dict[str, Any]) -> str:
        name = self.fresh(prefix)
        branch.states[name] = state
        self.budget -= 1
        return name

    def pick(self, *options: Any) -> Any:
        return self.draw(st.sampled_from(options))

    def link(self, state: dict[str, Any], successor: str | None) -> dict[str, Any]:
        if successor is None:
            state["end"] = True
        else:
            state["next"] = successor
        return state

    def target(self, branch: _Branch, successor: str | None) -> str:
        """Somewhere to go 'forward': the successor, or a shared Succeed at a branch's end."""
        if successor is not None:
            return successor
        if branch.done is None:
            branch.done = self.add(branch, "Done", {"type": "succeed"})
        return branch.done

    def set_result_path(self, state: dict[str, Any], *options: Any) -> None:
        chosen = self.pick(*options)
        if chosen is not _OMIT:
            state["result_path"] = chosen

    def errors(self, last: bool) -> list[str]:
        """ASL: a States.ALL entry stands alone and only in the last retrier or catcher."""
        if last and self.draw(st.booleans()):
            return ["States.ALL"]
        return self.draw(st.lists(st.sampled_from(CATCHABLE), min_size=1, max_size=2, unique=True))

    def retry(self) -> list[dict[str, Any]]:
        policies = []
        count = self.pick(0, 1, 1, 2)
        for index in range(count):
            policy: dict[str, Any] = {
                "errors": self.errors(index == count - 1),
                "max_attempts": self.draw(st.integers(0, 3)),
                "interval_seconds": self.draw(st.integers(1, 3)),
                "jitter": self.pick("none", "full"),
            }
            if self.draw(st.booleans()):
                policy["backoff_rate"] = self.pick(1.0, 1.5, 2.0)
            if self.draw(st.booleans()):
                policy["max_delay_seconds"] = self.draw(st.integers(1, 4))
            policies.append(policy)
        return policies

    def catch(self, branch: _Branch, successor: str | None) -> list[dict[str, Any]]:
        handlers = []
        count = self.draw(st.integers(0, 2))
        for index in range(count):
            handler: dict[str, Any] = {"errors": self.errors(index == count - 1)}
            self.set_result_path(handler, "$.err", "$.err", None, "$", _OMIT)
            if self.budget > 2 and self.draw(st.integers(0, 3)) == 0:
                # a dedicated recovery state, then on
                handler["next"] = self.add(
                    branch,
                    "Recover",
                    self.link({"type": "pass", "result_path": None}, successor),
                )
            else:
                handler["next"] = self.target(branch, successor)
            handlers.append(handler)
        return handlers

    def resilient(self, state: dict[str, Any], branch: _Branch, successor: str | None) -> None:
        retry = self.retry()
        if retry:
            state["retry"] = retry
        catch = self.catch(branch, successor)
        if catch:
            state["catch"] = catch

    # branches and blocks ------------------------------------------------------------

    def branch(self, depth: int) -> dict[str, Any]:
        branch = _Branch()
        low = 2 if depth == 0 and self.budget >= 6 else 1
        length = self.pick(*range(low, max(low, min(4, self.budget // 2)) + 1))
        middle = _MIDDLE_KINDS + (_NESTED_KINDS if depth < MAX_DEPTH else ())
        if depth == 0:
            middle += _NESTED_KINDS
        if depth > 0:  # concurrent waits for the same event: who gets an unaddressed event?
            middle += ("wait_for_event",)
        kinds = [self.pick(*middle) for _ in range(length - 1)]
        kinds.append(self.pick(*middle, *_LAST_ONLY_KINDS))
        successor: str | None = None
        for kind in reversed(kinds):  # built from the end, so each block knows its successor
            if successor is not None and self.budget <= 0:
                break  # out of states: the branch starts at the blocks built so far
            successor = self.block(kind, branch, successor, depth)
        assert successor is not None
        return {"start_at": successor, "states": branch.states}

    def block(self, kind: str, branch: _Branch, successor: str | None, depth: int) -> str:
        if kind in ("loop", "choice", *_NESTED_KINDS) and self.budget < 4:
            kind = self.pick("task", "pass")
        return getattr(self, f"block_{kind}")(branch, successor, depth)

    def block_task(self, branch: _Branch, successor: str | None, depth: int) -> str:
        error = self.pick(*ERRORS)
        activity = self.pick(
            "ok",
            "ok",
            "ok",
            "inc",
            f"flaky:{self.draw(st.integers(1, 3))}:{error}",
            f"flaky:{self.draw(st.integers(1, 3))}:{error}",
            f"boom:{error}",
        )
        state: dict[str, Any] = {"type": "task", "activity": activity}
        if activity == "inc":
            state["result_path"] = "$.count"
        else:
            self.set_result_path(state, _OMIT, "$.r", None)
            shape = self.draw(st.integers(0, 7))
            if shape == 0:  # fails (States.ParameterPathFailure) unless $.r was set before
                state["parameters"] = {"count.$": "$.count", "items.$": "$.items", "r.$": "$.r"}
            elif shape == 1:
                state["result_selector"] = {"n.$": "$.count", "fixed": 1}
        timeout = self.pick(None, None, 5, 30)
        if timeout is not None:
            state["timeout_seconds"] = timeout
        self.resilient(state, branch, successor)
        return self.add(branch, "Task", self.link(state, successor))

    def block_pass(self, branch: _Branch, successor: str | None, depth: int) -> str:
        state: dict[str, Any] = {"type": "pass"}
        variant = self.draw(st.integers(0, 4))
        if variant == 0:
            state["result"] = {"p": self.draw(st.integers(0, 9))}
            state["result_path"] = "$.p"
        elif variant == 1:
            state["result"] = self.draw(st.integers(0, 9))
            state["result_path"] = "$.q"
        elif variant == 2:
            state["result_path"] = None
        elif variant == 3:
            state["result"] = {"replaced": True}  # the data loses its counter: errors later
        return self.add(branch, "Pass", self.link(state, successor))

    def rule(self, operator: str, value: int, next_state: str) -> dict[str, Any]:
        return {"when": {"variable": "$.count", operator: value}, "next": next_state}

    def block_choice(self, branch: _Branch, successor: str | None, depth: int) -> str:
        side = self.block(self.pick("task", "pass"), branch, successor, depth)
        rules = [self.rule(self.pick(*_NUMERIC_OPS), self.draw(st.integers(0, 4)), side)]
        if self.draw(st.booleans()):
            forward = self.target(branch, successor)
            rules.append(self.rule(self.pick(*_NUMERIC_OPS), self.draw(st.integers(0, 4)), forward))
        state: dict[str, Any] = {"type": "choice", "choices": rules}
        default = self.draw(st.integers(0, 4))
        if default == 0:
            state["default"] = side
        elif default < 4:
            state["default"] = self.target(branch, successor)
        # default == 4: no default, States.NoChoiceMatched when nothing holds
        return self.add(branch, "Choice", state)

    def block_loop(self, branch: _Branch, successor: str | None, depth: int) -> str:
        """``Inc -> [Body ->] Check``; Check goes back to Inc while count < bound."""
        inc = self.fresh("Inc")
        check = self.fresh("Loop")
        back = inc
        if self.draw(st.booleans()):
            body = self.pick(
                {"type": "wait", "seconds": self.draw(st.integers(0, 3))},
                {"type": "task", "activity": "ok", "result_path": "$.r"},
                {"type": "pass", "result": "b", "result_path": "$.body"},
            )
            back = self.add(branch, "Body", {**body, "next": inc})
        bound = self.draw(st.integers(1, 4))
        branch.states[check] = {
            "type": "choice",
            "choices": [self.rule("numeric_less_than", bound, back)],
            "default": self.target(branch, successor),
        }
        branch.states[inc] = {
            "type": "task",
            "activity": "inc",
            "result_path": "$.count",
            "next": check,
        }
        self.budget -= 2
        return inc

    def block_wait(self, branch: _Branch, successor: str | None, depth: int) -> str:
        state = {"type": "wait", "seconds": self.draw(st.integers(0, 5))}
        return self.add(branch, "Wait", self.link(state, successor))

    def block_wait_for_event(self, branch: _Branch, successor: str | None, depth: int) -> str:
        state: dict[str, Any] = {"type": "wait_for_event", "event": self.pick(*EVENTS, EVENTS[0])}
        if self.draw(st.booleans()):
            state["timeout_seconds"] = self.pick(10, 100)
            if self.draw(st.booleans()):
                state["on_timeout"] = self.target(branch, successor)
            elif self.draw(st.booleans()):
                state["catch"] = [
                    {"errors": [self.pick("States.Timeout", "States.ALL")], "result_path": "$.err"}
                    | {"next": self.target(branch, successor)}
                ]
        self.set_result_path(state, "$.ev", None, _OMIT)
        return self.add(branch, "Event", self.link(state, successor))

    def block_parallel(self, branch: _Branch, successor: str | None, depth: int) -> str:
        count = self.draw(st.integers(2, 3 if self.budget >= 7 else 2))
        self.budget -= count  # the state itself, and one state kept for each later branch
        branches = []
        for _ in range(count):
            self.budget += 1
            branches.append(self.branch(depth + 1))
        state: dict[str, Any] = {"type": "parallel", "branches": branches}
        self.set_result_path(state, "$.par", "$.par", None, _OMIT)
        self.resilient(state, branch, successor)
        return self.add(branch, "Par", self.link(state, successor))

    def block_map(self, branch: _Branch, successor: str | None, depth: int) -> str:
        iterator = self.branch(depth + 1)
        state: dict[str, Any] = {
            "type": "map",
            "items_path": "$.items",
            "max_concurrency": self.pick(0, 1, 2),
            "iterator": iterator,
        }
        if self.draw(st.integers(0, 3)) > 0:
            state["item_selector"] = {
                "count.$": "$.count",
                "items.$": "$.items",
                "v.$": "$$.Map.Item.Value",
                **({"r.$": "$.r"} if self.draw(st.integers(0, 3)) == 0 else {}),  # may be absent
            }
        self.set_result_path(state, "$.mapped", "$.mapped", None, _OMIT)
        self.resilient(state, branch, successor)
        return self.add(branch, "Map", self.link(state, successor))

    def block_succeed(self, branch: _Branch, successor: str | None, depth: int) -> str:
        assert successor is None
        return self.add(branch, "Succeed", {"type": "succeed"})

    def block_fail(self, branch: _Branch, successor: str | None, depth: int) -> str:
        assert successor is None
        state: dict[str, Any] = {"type": "fail"}
        if self.draw(st.booleans()):
            state["error"] = self.pick(*ERRORS)
            state["cause"] = "failed on purpose"
        return self.add(branch, "Fail", state)


@st.composite
def flow_documents(draw: st.DrawFn, max_states: int = MAX_STATES) -> dict[str, Any]:
    """A valid flow definition as a YAML/JSON-shaped dict (feed it to parse_definition)."""
    builder = _FlowBuilder(draw, max_states)
    document: dict[str, Any] = {"name": "prop", **builder.branch(0)}
    if draw(st.integers(0, 4)) == 0:
        document["timeout_seconds"] = draw(st.sampled_from([50, 500]))
    if draw(st.integers(0, 4)) == 0:
        document["default_retry"] = builder.retry() or [{"errors": ["ErrA"], "max_attempts": 1}]
    return document


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
"""Payload that rides along (big ints, -0.0, unicode...): it must survive every round trip."""


def flow_inputs() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "count": st.integers(0, 3),
            "items": st.lists(st.integers(0, 9) | JSON_VALUES, max_size=3),
            "x": st.integers(-5, 5) | JSON_VALUES,
        }
    )


# --- the driver ---------------------------------------------------------------------------

T0 = datetime(2024, 1, 1, tzinfo=UTC)
INSTANCE = "prop-1"
MAX_STEPS = 1500


@dataclass(frozen=True)
class Plan:
    """Every decision of the driver, so two runtimes given the same plan decide alike."""

    choices: tuple[int, ...] = ()
    holds: frozenset[int] = frozenset()
    cancel_at: int | None = None
    ignore_mod: int = 0
    anonymous: bool = False
    late: bool = False
    salt: int = 0
    history_limit: int = 100

    def choice(self, step: int) -> int:
        return self.choices[step % len(self.choices)] if self.choices else 0

    def pick(self, step: int, options: list[Delivery]) -> Delivery | None:
        """The next event: mostly a completion or event; a quarter of the time the earliest
        timer (timers fire in deadline order); rarely any timer (a runtime that lags) or a
        late duplicate of finished work (refused as stale)."""
        timers = sorted((d for d in options if d.fire_at is not None), key=_by_deadline)
        late = [d for d in options if d.late]
        others = [d for d in options if d.fire_at is None and not d.late]
        choice = self.choice(step)
        if timers and (not others or choice % 4 == 3):
            due = [d for d in timers if d.fire_at == timers[0].fire_at]
            return due[choice // 4 % len(due)]
        if timers and choice % 32 == 5:
            return timers[choice // 32 % len(timers)]
        if late and choice % 32 == 9:
            return late[choice // 32 % len(late)]
        return others[choice % len(others)] if others else None

    def answers(self, wait_id: str) -> bool:
        """Whether the driver ever sends the event a wait asks for (else it may time out)."""
        if self.ignore_mod == 0:
            return True
        return zlib.crc32(f"{self.salt}|{wait_id}".encode()) % self.ignore_mod != 0

    def names_waiter(self, wait_id: str) -> bool:
        """Whether the event names its waiter; if not, the engine picks the oldest waiter."""
        return not self.anonymous or zlib.crc32(f"{self.salt}|anon|{wait_id}".encode()) % 2 == 0


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    holds = draw(st.sets(st.integers(0, 30), max_size=2)) if draw(st.integers(0, 2)) == 0 else ()
    cancel = draw(st.integers(0, 3)) == 0
    return Plan(
        choices=tuple(draw(st.lists(st.integers(0, 2**16), max_size=40))),
        holds=frozenset(holds),
        cancel_at=draw(st.integers(0, 30)) if cancel else None,
        ignore_mod=draw(st.sampled_from([0, 0, 2, 3])),
        anonymous=draw(st.booleans()),
        late=draw(st.booleans()),
        salt=draw(st.integers(0, 1000)),
        history_limit=draw(st.sampled_from([100, 100, 1, 3, 10])),
    )


def _json_copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


def work_id(command: Command) -> str:
    if isinstance(command, RunActivity):
        return command.call_id
    if isinstance(command, StartTimer):
        return command.timer_id
    if isinstance(command, AwaitEvent):
        return command.wait_id
    raise AssertionError(f"not work: {command!r}")


def activity_outcome(command: RunActivity) -> Event:
    """What the activity named in ``command`` reports; a pure function of the command."""
    name, value = command.activity, command.input
    if name == "ok":
        return ActivityCompleted(command.call_id, _json_copy(value))
    if name == "inc":
        count = value.get("count") if isinstance(value, dict) else None
        if isinstance(count, int) and not isinstance(count, bool):
            return ActivityCompleted(command.call_id, count + 1)
        return ActivityFailed(command.call_id, "BadInput", "no numeric count")
    kind, _, rest = name.partition(":")
    if kind == "boom":
        return ActivityFailed(command.call_id, rest, f"boom at {command.position}")
    if kind == "flaky":
        limit, _, error = rest.partition(":")
        if command.attempt <= int(limit):
            return ActivityFailed(command.call_id, error, f"attempt {command.attempt}")
        return ActivityCompleted(command.call_id, _json_copy(value))
    raise AssertionError(f"unknown activity {name!r}")


def event_for(command: Command) -> Event:
    if isinstance(command, RunActivity):
        return activity_outcome(command)
    if isinstance(command, StartTimer):
        return TimerFired(command.timer_id)
    if isinstance(command, AwaitEvent):
        return EventReceived(command.event, {"from": command.event}, command.wait_id)
    raise AssertionError(f"not work: {command!r}")


@dataclass(frozen=True)
class Delivery:
    key: str
    event: Event
    fire_at: datetime | None = None
    late: bool = False  # finished work reported again: must be refused as stale

    @property
    def anonymous(self) -> bool:
        return isinstance(self.event, EventReceived) and self.event.wait_id is None


def _by_deadline(delivery: Delivery) -> tuple[datetime, str]:
    assert delivery.fire_at is not None
    return delivery.fire_at, delivery.key


class _Runtime:
    """What a runtime knows: the work it was asked for and not yet told to drop."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.work: dict[str, Command] = {}
        self.finished: dict[str, Event] = {}  # delivered or cancelled work: its event
        self.echoed: set[str] = set()  # finished work already reported a second time

    @classmethod
    def resumed(cls, plan: Plan, snapshot: Snapshot, old: _Runtime) -> _Runtime:
        """A new runtime that only has the snapshot: it re-issues ``outstanding``.

        Only the old runtime's reports still travelling (late duplicates) reach it.
        """
        runtime = cls(plan)
        for command in outstanding(snapshot):
            runtime.work[work_id(command)] = command
        runtime.finished = dict(old.finished)
        runtime.echoed = set(old.echoed)
        return runtime

    def reconcile_waits(self, snapshot: Snapshot) -> None:
        """After an event that named no waiter: drop the wait the engine gave it to."""
        for key, command in list(self.work.items()):
            if isinstance(command, AwaitEvent) and key not in snapshot.state.pending:
                self.delivered(key)

    def absorb(self, commands: tuple[Command, ...]) -> None:
        for command in commands:
            if isinstance(command, CancelWork):
                assert command.work_id in self.work, f"cancel of unknown work {command!r}"
                self.finished[command.work_id] = event_for(self.work.pop(command.work_id))
            elif isinstance(command, FinishFlow):
                continue
            elif isinstance(command, RunActivity | StartTimer | AwaitEvent):
                self.work[work_id(command)] = command
            else:
                raise AssertionError(f"unexpected command {command!r}")

    def delivered(self, key: str) -> None:
        command = self.work.pop(key, None)
        if command is not None:
            self.finished[key] = event_for(command)

    def deliverables(self, snapshot: Snapshot) -> list[Delivery]:
        found = []
        for key in sorted(self.work):
            command = self.work[key]
            if isinstance(command, AwaitEvent) and not self.plan.answers(key):
                continue
            event = event_for(command)
            fire_at = None
            if isinstance(command, StartTimer):
                fire_at = parse_timestamp(command.fire_at)
                assert fire_at is not None
            elif isinstance(event, EventReceived) and not self.plan.names_waiter(key):
                event = replace(event, wait_id=None)
            found.append(Delivery(key, event, fire_at))
        if snapshot.state.held:
            found.append(Delivery("~release", ReleaseRequested()))
        if self.plan.late:
            found.extend(
                Delivery(key, self.finished[key], late=True)
                for key in sorted(self.finished)
                if key not in self.echoed
            )
        return found


@dataclass
class Step:
    before: Snapshot
    event: Event
    now: datetime
    after: Transition | None  # None: rejected as stale
    runtime: _Runtime


@dataclass
class Outcome:
    snapshot: Snapshot
    steps: int
    reason: str  # "finished", "no deliverables"
    trace: list[Event]
    commands: list[tuple[Command, ...]]
    runtime: _Runtime


def drive(
    definition: FlowDefinition,
    input: Any,
    plan: Plan,
    *,
    cut_keys: SnapshotKeys | None = None,
    observe: Callable[[Step], None] | None = None,
) -> Outcome:
    """Run the flow to its end with ``plan``; with ``cut_keys``, round-trip before each event."""
    now = T0
    transition = start(definition, input, INSTANCE, now, history_limit=plan.history_limit)
    snapshot = transition.snapshot
    runtime = _Runtime(plan)
    runtime.absorb(transition.commands)
    trace: list[Event] = []
    issued: list[tuple[Command, ...]] = [transition.commands]
    for step in range(MAX_STEPS):
        if snapshot.finished:
            return Outcome(snapshot, step, "finished", trace, issued, runtime)
        if cut_keys is not None:
            snapshot = decode_snapshot(encode_snapshot(snapshot, cut_keys), cut_keys)
            runtime = _Runtime.resumed(plan, snapshot, runtime)
        delivery: Delivery | None = None
        if step in plan.holds and not snapshot.state.held:
            event: Event = HoldRequested("plan")
        elif step == plan.cancel_at:
            event = CancelRequested("plan")
        else:
            delivery = plan.pick(step, runtime.deliverables(snapshot))
            if delivery is None:
                return Outcome(snapshot, step, "no deliverables", trace, issued, runtime)
            if delivery.late:
                runtime.echoed.add(delivery.key)
            event = delivery.event
            if delivery.fire_at is not None:
                now = max(now, delivery.fire_at)
            else:
                now += timedelta(seconds=1)
        try:
            transition = advance(snapshot, event, now)
        except StaleEventError:
            # a timer that lost its race with a completion: a runtime drops it
            accepted = None
        else:
            accepted = transition
        if accepted is not None:
            assert delivery is None or not delivery.late, f"late {event!r} was accepted"
            if delivery is not None and not delivery.anonymous:
                runtime.delivered(delivery.key)
            runtime.absorb(accepted.commands)
            if delivery is not None and delivery.anonymous:
                runtime.reconcile_waits(accepted.snapshot)
        else:
            assert delivery is not None and delivery.late, f"{event!r} refused as stale"
        if observe is not None:
            observe(Step(snapshot, event, now, accepted, runtime))
        trace.append(event)
        issued.append(accepted.commands if accepted is not None else ())
        if accepted is not None:
            snapshot = accepted.snapshot
    raise AssertionError(f"the flow did not finish within {MAX_STEPS} events")


def _definition(document: dict[str, Any]) -> FlowDefinition:
    return parse_definition(document, source="generated")


# --- invariants -----------------------------------------------------------------------------


def check_structure(snapshot: Snapshot) -> None:
    state = snapshot.state
    if snapshot.finished:
        assert not state.tokens and not state.pending and not state.frames, snapshot.status
        return
    for entry in state.pending.values():
        if entry.token:
            assert entry.token in state.tokens, f"{entry.id} belongs to no live token"
        assert entry.dispatched or state.held, f"{entry.id} not dispatched while not held"
    for token in state.tokens.values():
        for pending_id in token.pending:
            assert pending_id in state.pending, f"{token.position} waits for gone {pending_id}"


def check_history(before: Snapshot, after: Snapshot) -> None:
    state = after.state
    assert after.seq == before.seq + 1
    assert len(state.history) <= state.history_limit
    total_before = len(before.state.history) + before.state.history_dropped
    assert len(state.history) + state.history_dropped >= total_before
    seqs = [entry.seq for entry in state.history]
    assert seqs == sorted(seqs)
    assert all(seq <= after.seq for seq in seqs)


def issue_number(work: str) -> int:
    return int(work.rpartition("~")[2].partition(":")[0])


def check_cancellations(step: Step) -> None:
    """CancelWork names live work once, never the work whose report was just accepted;
    an event that names no waiter goes to the oldest waiter for it."""
    assert step.after is not None
    before, after = step.before.state.pending, step.after.snapshot.state.pending
    seen: set[str] = set()
    cancelled: list[str] = []
    for command in step.after.commands:
        if isinstance(command, CancelWork):
            assert command.work_id in seen or (
                command.work_id in before and before[command.work_id].dispatched
            ), f"{command!r} names no live work"
            cancelled.append(command.work_id)
        elif isinstance(command, RunActivity | StartTimer | AwaitEvent):
            seen.add(work_id(command))
    assert len(cancelled) == len(set(cancelled)), f"work cancelled twice: {cancelled}"
    event = step.event
    reported = None
    if isinstance(event, ActivityCompleted | ActivityFailed):
        reported = event.call_id
    elif isinstance(event, TimerFired):
        reported = event.timer_id
    elif isinstance(event, EventReceived):
        reported = event.wait_id
    assert reported is None or reported not in cancelled, f"{reported} cancelled after its report"
    if isinstance(event, EventReceived) and event.wait_id is None:
        waiters = [
            key
            for key, entry in before.items()
            if isinstance(entry.command, AwaitEvent)
            and entry.command.event == event.event
            and entry.dispatched
        ]
        taken = [key for key in waiters if key not in after and key not in cancelled]
        assert taken == [min(waiters, key=issue_number)], (waiters, taken)


def check_ending(outcome: Outcome, plan: Plan) -> None:
    snapshot = outcome.snapshot
    assert snapshot.status in ("running", "succeeded", "failed", "cancelled")
    if snapshot.status != "running":
        assert outcome.reason == "finished"
        return
    # Running only because the driver chose not to answer some event waits.
    assert outcome.reason == "no deliverables"
    assert not snapshot.state.held
    work = outstanding(snapshot)
    assert work, "a running instance with no outstanding work can never finish"
    for command in work:
        assert isinstance(command, AwaitEvent), f"{command!r} was outstanding but not delivered"
        assert not plan.answers(command.wait_id)


# --- (a) + (e): valid events never crash; history and seq --------------------------------


def check_new_work(commands: tuple[Command, ...], now: datetime, ever: set[str]) -> None:
    """Work ids and idempotency keys are never reused; no timer is set in the past."""
    for command in commands:
        if isinstance(command, RunActivity | StartTimer | AwaitEvent):
            key = work_id(command)
            assert key not in ever, f"{key} issued twice"
            ever.add(key)
        if isinstance(command, RunActivity):
            assert command.idempotency_key not in ever, command
            ever.add(command.idempotency_key)
        if isinstance(command, StartTimer):
            fire_at = parse_timestamp(command.fire_at)
            assert fire_at is not None and fire_at >= now, command


def _check_valid_run(document: dict[str, Any], input: dict[str, Any], plan: Plan) -> None:
    definition = _definition(document)
    first = start(definition, input, INSTANCE, T0, history_limit=plan.history_limit)
    ever: set[str] = set()
    check_new_work(first.commands, T0, ever)
    check_structure(first.snapshot)

    def observe(step: Step) -> None:
        if step.after is None:
            return
        after = step.after.snapshot
        check_history(step.before, after)
        check_structure(after)
        check_cancellations(step)
        check_new_work(step.after.commands, step.now, ever)
        if after.state.held and not isinstance(step.event, ReleaseRequested):
            # held: running work still reports back, but nothing new is dispatched
            assert not any(isinstance(c, RunActivity) for c in step.after.commands)
        # the runtime's view built from commands is exactly what outstanding() re-issues
        issued = {work_id(command): command for command in outstanding(after)}
        assert issued == step.runtime.work

    outcome = drive(definition, input, plan, observe=observe)
    check_ending(outcome, plan)
    check_structure(outcome.snapshot)


@FAST
@given(document=flow_documents(), input=flow_inputs(), plan=plans())
def test_valid_events_never_crash_the_engine(document, input, plan):
    _check_valid_run(document, input, plan)


@pytest.mark.slow
@HEAVY
@given(document=flow_documents(), input=flow_inputs(), plan=plans())
def test_valid_events_never_crash_the_engine_heavy(document, input, plan):
    _check_valid_run(document, input, plan)


# --- (b) snapshot -> JSON -> snapshot is the identity ----------------------------------------

SIGNING_KEY = SigningKey("prop-sign", b"s" * 32)
ENCRYPTION_KEY = EncryptionKey("prop-enc", bytes(range(32)))
KEY_SETS = {
    "none": SnapshotKeys.none(),
    "signed": SnapshotKeys.signing_only(SIGNING_KEY),
    "signed+encrypted": SnapshotKeys.from_keys([SIGNING_KEY], [ENCRYPTION_KEY]),
}


def check_round_trip(snapshot: Snapshot) -> None:
    for name, keys in KEY_SETS.items():
        data = encode_snapshot(snapshot, keys)
        json.loads(data)  # it is JSON
        again = decode_snapshot(data, keys)
        assert again == snapshot, name
        reencoded = encode_snapshot(again, keys)
        if keys.active_encryption_key is None:
            assert reencoded == data, name
        else:  # a fresh nonce each time: compare what the bytes carry
            assert decode_snapshot(reencoded, keys) == snapshot, name
            assert to_document(again) == to_document(snapshot), name


def _check_round_trips(document: dict[str, Any], input: dict[str, Any], plan: Plan) -> None:
    definition = _definition(document)
    first = start(definition, input, INSTANCE, T0, history_limit=plan.history_limit)
    check_round_trip(first.snapshot)

    def observe(step: Step) -> None:
        if step.after is not None:
            check_round_trip(step.after.snapshot)

    drive(definition, input, plan, observe=observe)


@FAST
@given(document=flow_documents(), input=flow_inputs(), plan=plans())
def test_snapshot_round_trip_is_identity_at_every_step(document, input, plan):
    _check_round_trips(document, input, plan)


@pytest.mark.slow
@HEAVY
@given(document=flow_documents(), input=flow_inputs(), plan=plans())
def test_snapshot_round_trip_is_identity_at_every_step_heavy(document, input, plan):
    _check_round_trips(document, input, plan)


# --- (c) cut-and-resume equivalence -----------------------------------------------------------


def _check_cut_and_resume(
    document: dict[str, Any], input: dict[str, Any], plan: Plan, keys_name: str
) -> None:
    definition = _definition(document)
    straight = drive(definition, input, plan)
    resumed = drive(definition, input, plan, cut_keys=KEY_SETS[keys_name])
    a, b = straight.snapshot, resumed.snapshot
    assert (b.status, b.state.output, b.state.error, b.seq) == (
        a.status,
        a.state.output,
        a.state.error,
        a.seq,
    )
    assert resumed.trace == straight.trace
    # replay determinism: the same commands, in the same order, at every step
    assert resumed.commands == straight.commands
    assert resumed.reason == straight.reason
    assert encode_snapshot(b) == encode_snapshot(a)


@FAST
@given(
    document=flow_documents(),
    input=flow_inputs(),
    plan=plans(),
    keys_name=st.sampled_from(sorted(KEY_SETS)),
)
def test_cut_and_resume_before_every_event_ends_the_same(document, input, plan, keys_name):
    _check_cut_and_resume(document, input, plan, keys_name)


@pytest.mark.slow
@HEAVY
@given(
    document=flow_documents(),
    input=flow_inputs(),
    plan=plans(),
    keys_name=st.sampled_from(sorted(KEY_SETS)),
)
def test_cut_and_resume_before_every_event_ends_the_same_heavy(document, input, plan, keys_name):
    _check_cut_and_resume(document, input, plan, keys_name)


# --- order independence -----------------------------------------------------------------------

RACES = frozenset({"TimedOut", "EventTimedOut", "FlowTimedOut", "BranchFailed", "CancelRequested"})
"""History kinds whose outcome depends on which event came first (timeouts, first failure)."""


def _check_order_independence(
    document: dict[str, Any], input: dict[str, Any], plan: Plan, other: tuple[int, ...]
) -> None:
    definition = _definition(document)
    plan = replace(plan, cancel_at=None, ignore_mod=0, history_limit=100_000)
    first = drive(definition, input, plan).snapshot
    second = drive(definition, input, replace(plan, choices=other)).snapshot
    for snapshot in (first, second):
        if {entry.kind for entry in snapshot.state.history} & RACES:
            return  # a race decided the outcome: another order may rightly end otherwise
    assert (second.status, second.state.output, second.state.error) == (
        first.status,
        first.state.output,
        first.state.error,
    )


@FAST
@given(
    document=flow_documents(),
    input=flow_inputs(),
    plan=plans(),
    other=st.lists(st.integers(0, 2**16), max_size=40).map(tuple),
)
def test_without_races_the_delivery_order_does_not_change_the_result(document, input, plan, other):
    _check_order_independence(document, input, plan, other)


@pytest.mark.slow
@HEAVY
@given(
    document=flow_documents(),
    input=flow_inputs(),
    plan=plans(),
    other=st.lists(st.integers(0, 2**16), max_size=40).map(tuple),
)
def test_without_races_the_delivery_order_does_not_change_the_result_heavy(
    document, input, plan, other
):
    _check_order_independence(document, input, plan, other)


# --- (d) rejected events ------------------------------------------------------------------------


def rejected_events(
    snapshot: Snapshot, runtime: _Runtime
) -> list[tuple[Event, type[EventRejectedError]]]:
    """Events that must be refused by ``snapshot``, each with the error it must raise."""
    if snapshot.finished:
        return [
            (ActivityCompleted("Task1~1", None), InstanceFinishedError),
            (EventReceived(EVENTS[0]), InstanceFinishedError),
            (ReleaseRequested(), InstanceFinishedError),
            (CancelRequested(), InstanceFinishedError),
        ]
    ghost = snapshot.state.counter + 1000
    cases: list[tuple[Event, type[EventRejectedError]]] = [
        (ActivityCompleted(f"Task1~{ghost}", {"x": 1}), UnknownCallError),
        (ActivityFailed(f"Ghost~{ghost}:retry", "ErrA"), UnknownCallError),
        (TimerFired("no-such-timer"), UnknownCallError),
        (EventReceived(UNHEARD_EVENT, {"x": 1}), NoWaiterError),
        (EventReceived(EVENTS[0], None, f"Event1~{ghost}"), UnknownCallError),
        (ReleaseRequested() if not snapshot.state.held else HoldRequested(), InvalidControlError),
    ]
    pending = snapshot.state.pending
    for key, event in runtime.finished.items():  # duplicates and results of cancelled work
        if key not in pending:
            cases.append((event, StaleEventError))
    for key, command in runtime.work.items():  # live work named by the wrong kind of event
        if key not in pending:
            continue
        if isinstance(command, StartTimer | AwaitEvent):
            cases.append((ActivityCompleted(key, None), UnknownCallError))
            cases.append((ActivityFailed(key, "ErrA"), UnknownCallError))
        if isinstance(command, RunActivity | AwaitEvent):
            cases.append((TimerFired(key), UnknownCallError))
        if isinstance(command, RunActivity | StartTimer):
            cases.append((EventReceived(EVENTS[0], None, key), UnknownCallError))
        if isinstance(command, AwaitEvent):  # the right wait, the wrong event name
            cases.append((EventReceived(UNHEARD_EVENT, None, key), NoWaiterError))
    return cases


def check_rejections(snapshot: Snapshot, runtime: _Runtime, now: datetime) -> None:
    before = encode_snapshot(snapshot)
    for event, expected in rejected_events(snapshot, runtime):
        with pytest.raises(EventRejectedError) as raised:
            advance(snapshot, event, now)
        assert type(raised.value) is expected, (event, raised.value)
        assert encode_snapshot(snapshot) == before, event


def _check_rejected(document: dict[str, Any], input: dict[str, Any], plan: Plan) -> None:
    definition = _definition(document)
    first = start(definition, input, INSTANCE, T0, history_limit=plan.history_limit)
    runtime = _Runtime(plan)
    runtime.absorb(first.commands)
    check_rejections(first.snapshot, runtime, T0)

    def observe(step: Step) -> None:
        if step.after is not None:
            check_rejections(step.after.snapshot, step.runtime, step.now)

    outcome = drive(definition, input, plan, observe=observe)
    check_rejections(outcome.snapshot, outcome.runtime, T0 + timedelta(days=1))


@FAST
@given(document=flow_documents(), input=flow_inputs(), plan=plans())
def test_rejected_events_raise_their_error_and_change_nothing(document, input, plan):
    _check_rejected(document, input, plan)


@pytest.mark.slow
@HEAVY
@given(document=flow_documents(), input=flow_inputs(), plan=plans())
def test_rejected_events_raise_their_error_and_change_nothing_heavy(document, input, plan):
    _check_rejected(document, input, plan)


# --- the generator itself -------------------------------------------------------------------


@FAST
@given(document=flow_documents())
def test_generated_definitions_are_valid_and_small(document):
    definition = _definition(document)

    def count(branch: Any) -> int:
        total = 0
        for state in branch.states.values():
            total += 1
            for inner in getattr(state, "branches", []):
                total += count(inner)
            if getattr(state, "iterator", None) is not None:
                total += count(state.iterator)
        return total

    assert count(definition) <= MAX_STATES + 6
