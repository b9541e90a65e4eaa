"""An in-process runtime on a virtual clock, for conformance and cut-point tests.

The runtime carries out the engine's commands the way a real runtime would, but time is
virtual: an *agenda* holds the events that will happen, ordered by (time, creation order),
and the clock jumps from one to the next. Nothing sleeps, so a flow that waits an hour
runs in microseconds and every run is deterministic.

Two kinds of thing take part in a run:

* :class:`World`: what outlives any one runtime: the activity code and its virtual
  durations, the registered sub-flow definitions, the external events a test case
  scripts, the snapshot keys, and a log of every activity call;
* :class:`VirtualRuntime`: one runtime "process": its clock, its agenda and the
  snapshot it owns. A *failover* throws it away and builds a new one from the decoded
  snapshot alone (``outstanding(snapshot)``), keeping virtual time.

Command by command:

* ``RunActivity``: the activity runs at once with an :class:`ActivityContext` (so
  ``current_call().attempt`` works); its ``ActivityCompleted`` (or ``ActivityFailed``,
  error = the exception's class name, cause = ``str(exc)``) is scheduled
  ``VIRTUAL_DURATIONS[name](input)`` seconds later (0 when absent);
* ``StartTimer``: ``TimerFired`` at ``fire_at``;
* ``AwaitEvent``: the next unused scripted event of that name is sent ``after_seconds``
  after the wait was first issued (nothing when the case scripts none). It is sent by
  name (``EventReceived`` without ``wait_id``: the engine gives it to the oldest waiter of
  that name), or, with ``World.address_events == "wait_id"``, to that very wait. The
  sender belongs to the world: a wait that ends first (a timeout) does not stop it, and an
  event that nothing waits for when it arrives is refused (``NoWaiterError``) and dropped;
* ``StartChildFlow``: the child (looked up by name and version, the highest version
  when none is given) runs to its end on the same clock, from now, with a runtime of
  its own (and the same cut policy, when ``cut_children``); ``ChildFinished`` is
  scheduled at the child's end (never, when the child stalls);
* ``CancelWork``: the scheduled event of that work is removed;
* ``FinishFlow``: the run is over.

An event the engine rejects with ``StaleEventError`` is a lost race and is skipped; so is
a sent event nothing waits for (above); any other rejection is a harness failure
(:class:`HarnessError`).

At a cut (``cut(k)`` true after transition ``k``, the snapshot's ``seq``), before the
next event is delivered, the snapshot is encoded with signing keys and decoded again
(and the decoded value must encode to the same bytes). Without ``failover`` the same
runtime continues with the decoded value; with ``failover`` a brand-new runtime is
built from it: its clock goes on from the world's virtual time (the time of the last
event, never before the snapshot's ``updated_at``), and its agenda is rebuilt from the
re-issued ``outstanding`` commands. Activities in flight at the cut run again (same
idempotency key) and take their full duration again from the cut; timers keep their
absolute deadlines; scripted events are sent by the world, which a failover does not
touch; a child flow started again under the same ``child_instance_id`` is the child
that already ran (it finishes when it finished).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from rustyflower.core.activities import ActivityContext, ActivityRegistry
from rustyflower.core.engine import (
    ActivityCompleted,
    ActivityFailed,
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
    advance,
    outstanding,
    start,
)
from rustyflower.core.errors import EventRejectedError, NoWaiterError, StaleEventError
from rustyflower.core.model import FlowDefinition, version_key
from rustyflower.core.snapshot import SnapshotKeys, generate_signing_key
from rustyflower.core.snapshot.document import decode_snapshot, encode_snapshot
from rustyflower.core.timeutil import parse_timestamp

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
"""Where every virtual clock starts."""

DEFAULT_MAX_EVENTS = 10_000

Cut = Callable[[int], bool] | Literal["every"] | None


class HarnessError(AssertionError):
    """The runtime could not carry out a run: a rejected event, a missing flow, a loop."""


def every_transition(_seq: int) -> bool:
    return True


# --- the world outside the runtime ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScriptedEvent:
    """An external event a test case sends ``after_seconds`` after the flow waits for it."""

    event: str
    data: Any = None
    after_seconds: float = 0


@dataclass(frozen=True, slots=True)
class ActivityCall:
    """One execution of an activity (a re-run after a failover is a second entry)."""

    instance_id: str
    call_id: str
    activity: str
    attempt: int
    idempotency_key: str
    at: datetime


class FlowLibrary:
    """Sub-flow definitions by name and version."""

    def __init__(self, definitions: Iterable[FlowDefinition] = ()) -> None:
        self._flows: dict[str, dict[str, FlowDefinition]] = {}
        for definition in definitions:
            versions = self._flows.setdefault(definition.name, {})
            if definition.version in versions:
                raise ValueError(f"flow {definition.key} is given twice")
            versions[definition.version] = definition

    def find(self, name: str, version: str | None) -> FlowDefinition:
        versions = self._flows.get(name)
        if not versions:
            raise HarnessError(f"no sub-flow named {name!r} is registered")
        if version is None:
            return versions[max(versions, key=version_key)]
        if version not in versions:
            raise HarnessError(f"sub-flow {name!r} has no version {version!r}")
        return versions[version]


@dataclass(order=True)
class _Entry:
    """Something due to happen to one instance at ``when`` (``order``: creation order)."""

    when: datetime
    order: int
    work_id: str = field(compare=False)
    event: Event = field(compare=False)
    instance_id: str = field(default="", compare=False)
    from_world: bool = field(default=False, compare=False)
    cancelled: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class _ChildOutcome:
    ended_at: datetime
    result: RunResult


@dataclass
class World:
    """Everything a run uses that is not the runtime itself; it survives failovers.

    It is the activity code, the sub-flow definitions and the outside world: the sender
    of the scripted events (its sends are scheduled here, not in a runtime, so a failover
    loses none and repeats none) and the child instances (a child is its own instance:
    starting it again under the same ``child_instance_id`` after a failover attaches to
    the one that already ran, as a runtime keyed by instance id does).
    """

    registry: ActivityRegistry
    durations: Mapping[str, Callable[[Any], float]] = field(default_factory=dict)
    flows: FlowLibrary = field(default_factory=FlowLibrary)
    events: Sequence[ScriptedEvent] = ()
    keys: SnapshotKeys = field(
        default_factory=lambda: SnapshotKeys.signing_only(generate_signing_key("conformance"))
    )
    max_events: int = DEFAULT_MAX_EVENTS
    address_events: Literal["name", "wait_id"] = "name"
    """``name``: events are sent by name, as an outside system does (the engine hands each
    to the oldest waiter of that name); ``wait_id``: each goes to the wait it answers."""
    calls: list[ActivityCall] = field(default_factory=list)
    _order: Iterator[int] = field(default_factory=itertools.count)
    _used: set[int] = field(default_factory=set)
    _bound: set[tuple[str, str]] = field(default_factory=set)
    _sends: list[_Entry] = field(default_factory=list)
    _children: dict[str, _ChildOutcome] = field(default_factory=dict)

    def next_order(self) -> int:
        return next(self._order)

    def duration(self, activity: str, payload: Any) -> float:
        measure = self.durations.get(activity)
        return 0.0 if measure is None else float(measure(payload))

    # --- the event sender ---------------------------------------------------------------

    def see_wait(self, instance_id: str, command: AwaitEvent, now: datetime) -> None:
        """A wait was issued: the first time, schedule the next unused event of its name."""
        key = (instance_id, command.wait_id)
        if key in self._bound:
            return  # re-issued after a failover: the sender already knows
        self._bound.add(key)
        for index, scripted in enumerate(self.events):
            if index not in self._used and scripted.event == command.event:
                self._used.add(index)
                wait_id = command.wait_id if self.address_events == "wait_id" else None
                entry = _Entry(
                    now + timedelta(seconds=scripted.after_seconds),
                    self.next_order(),
                    command.wait_id,
                    EventReceived(scripted.event, scripted.data, wait_id=wait_id),
                    instance_id=instance_id,
                    from_world=True,
                )
                self._sends.append(entry)
                return

    def peek_send(self, instance_id: str) -> _Entry | None:
        candidates = [e for e in self._sends if e.instance_id == instance_id]
        return min(candidates) if candidates else None

    def take_send(self, entry: _Entry) -> None:
        self._sends.remove(entry)


# --- the runtime -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunResult:
    status: str
    output: Any
    error: str | None
    cause: str | None
    transitions: int
    """How many transitions the instance went through (the final snapshot's ``seq``)."""
    snapshot: Snapshot
    elapsed_seconds: float
    """Virtual time from the start to the end (or to the stall) of the run."""
    events_delivered: int
    stale_events: int
    unheard_events: int
    """Events sent by name when nothing waited for them (refused with NoWaiterError)."""
    cuts: int
    failovers: int
    calls: tuple[ActivityCall, ...]
    """Every activity execution of this run and of its child flows."""

    @property
    def finished(self) -> bool:
        return self.status != "running"


class VirtualRuntime:
    """One runtime: a clock, an agenda of future events and the snapshot it advances."""

    def __init__(
        self,
        world: World,
        now: datetime,
        *,
        cut: Cut = None,
        failover: bool = False,
        cut_children: bool = True,
    ) -> None:
        self.world = world
        self.now = now
        self.cut = cut
        self.failover = failover
        self.cut_children = cut_children
        self.snapshot: Snapshot | None = None
        self.finish: FinishFlow | None = None
        self._agenda: list[_Entry] = []
        self._by_work: dict[str, _Entry] = {}

    # --- building ---------------------------------------------------------------------

    @classmethod
    def recover(
        cls, world: World, snapshot: Snapshot, now: datetime | None = None, **options: Any
    ) -> VirtualRuntime:
        """A fresh runtime that continues ``snapshot`` from what the snapshot holds alone.

        ``now`` is the virtual clock (the world's); by default the snapshot's ``updated_at``.
        """
        moment = parse_timestamp(snapshot.updated_at)
        if moment is None:
            raise HarnessError(f"snapshot updated_at {snapshot.updated_at!r} is not a time")
        runtime = cls(world, max(moment, now) if now is not None else moment, **options)
        runtime.snapshot = snapshot
        runtime.carry_out(outstanding(snapshot))
        return runtime

    # --- commands ---------------------------------------------------------------------

    def carry_out(self, commands: Iterable[Command]) -> None:
        for command in commands:
            if isinstance(command, RunActivity):
                self._run_activity(command)
            elif isinstance(command, StartTimer):
                fire_at = parse_timestamp(command.fire_at)
                if fire_at is None:
                    raise HarnessError(
                        f"timer {command.timer_id!r}: bad fire_at {command.fire_at!r}"
                    )
                self._schedule(
                    max(fire_at, self.now), command.timer_id, TimerFired(command.timer_id)
                )
            elif isinstance(command, AwaitEvent):
                self.world.see_wait(self._instance_id, command, self.now)
            elif isinstance(command, StartChildFlow):
                self._start_child(command)
            elif isinstance(command, CancelWork):
                entry = self._by_work.pop(command.work_id, None)
                if entry is not None:
                    entry.cancelled = True
            elif isinstance(command, FinishFlow):
                self.finish = command
            else:  # pragma: no cover - the Command union is closed
                raise HarnessError(f"unknown command {command!r}")

    @property
    def _instance_id(self) -> str:
        assert self.snapshot is not None
        return self.snapshot.instance_id

    def _schedule(self, when: datetime, work_id: str, event: Event) -> None:
        entry = _Entry(when, self.world.next_order(), work_id, event, self._instance_id)
        self._by_work[work_id] = entry
        heapq.heappush(self._agenda, entry)

    def _run_activity(self, command: RunActivity) -> None:
        context = ActivityContext(
            instance_id=self._instance_id,
            call_id=command.call_id,
            idempotency_key=command.idempotency_key,
            attempt=command.attempt,
            activity=command.activity,
        )
        self.world.calls.append(
            ActivityCall(
                self._instance_id,
                command.call_id,
                command.activity,
                command.attempt,
                command.idempotency_key,
                self.now,
            )
        )
        event: Event
        try:
            output = self.world.registry.call(command.activity, command.input, context)
        except Exception as error:  # the activity failed: its class name is the error name
            event = ActivityFailed(command.call_id, type(error).__name__, str(error))
        else:
            event = ActivityCompleted(command.call_id, output)
        seconds = self.world.duration(command.activity, command.input)
        self._schedule(self.now + timedelta(seconds=seconds), command.call_id, event)

    def _start_child(self, command: StartChildFlow) -> None:
        outcome = self.world._children.get(command.child_instance_id)
        if outcome is None:
            definition = self.world.flows.find(command.flow, command.version)
            child = run_flow(
                definition,
                command.input,
                self.world,
                instance_id=command.child_instance_id,
                parent=ParentLink(self._instance_id, command.call_id),
                now=self.now,
                cut=self.cut if self.cut_children else None,
                failover=self.failover,
                cut_children=self.cut_children,
            )
            ended_at = self.now + timedelta(seconds=child.elapsed_seconds)
            outcome = _ChildOutcome(ended_at, child)
            self.world._children[command.child_instance_id] = outcome
        child = outcome.result
        if not child.finished:
            return  # the child stalled: the parent waits for ever, as it would for real
        event = ChildFinished(command.call_id, child.status, child.output, child.error, child.cause)
        self._schedule(max(outcome.ended_at, self.now), command.call_id, event)

    # --- events -----------------------------------------------------------------------

    def next_entry(self) -> _Entry | None:
        """The next thing due: from this runtime's agenda or from the outside world."""
        while self._agenda and self._agenda[0].cancelled:
            heapq.heappop(self._agenda)
        own = self._agenda[0] if self._agenda else None
        sent = self.world.peek_send(self._instance_id)
        if sent is not None and (own is None or sent < own):
            self.world.take_send(sent)
            return sent
        if own is None:
            return None
        heapq.heappop(self._agenda)
        if self._by_work.get(own.work_id) is own:
            del self._by_work[own.work_id]
        return own


def _cut_policy(cut: Cut) -> Callable[[int], bool] | None:
    if cut == "every":
        return every_transition
    return cut


def _reseal(snapshot: Snapshot, keys: SnapshotKeys) -> Snapshot:
    """Encode, decode and check that the decoded value encodes to the same bytes."""
    data = encode_snapshot(snapshot, keys)
    decoded = decode_snapshot(data, keys)
    again = encode_snapshot(decoded, keys)
    if again != data:
        raise HarnessError(
            f"snapshot seq {snapshot.seq} does not survive a round trip: decoding and "
            "encoding again gives different bytes"
        )
    return decoded


def run_flow(
    definition: FlowDefinition,
    input: Any,
    world: World,
    *,
    instance_id: str = "conformance-1",
    parent: ParentLink | None = None,
    now: datetime = EPOCH,
    cut: Cut = None,
    failover: bool = False,
    cut_children: bool = True,
) -> RunResult:
    """Run one instance to its end (or until nothing is left to happen) on a virtual clock.

    ``cut(k)`` says whether to serialise the snapshot after transition ``k`` (``"every"``:
    after every one); ``failover`` makes each cut continue on a brand-new runtime.
    """
    policy = _cut_policy(cut)
    options: dict[str, Any] = {"cut": cut, "failover": failover, "cut_children": cut_children}
    calls_before = len(world.calls)
    started = now
    runtime = VirtualRuntime(world, now, **options)
    transition = start(definition, input, instance_id, now, parent=parent)
    runtime.snapshot = transition.snapshot
    runtime.carry_out(transition.commands)
    delivered = stale = unheard = cuts = failovers = 0
    last_cut = -1
    while runtime.finish is None:
        snapshot = runtime.snapshot
        assert snapshot is not None
        if policy is not None and snapshot.seq != last_cut and policy(snapshot.seq):
            last_cut = snapshot.seq
            decoded = _reseal(snapshot, world.keys)
            cuts += 1
            if failover:
                runtime = VirtualRuntime.recover(world, decoded, runtime.now, **options)
                failovers += 1
            else:
                runtime.snapshot = decoded
        entry = runtime.next_entry()
        if entry is None:
            break  # nothing more will happen: the instance waits for ever
        delivered += 1
        if delivered > world.max_events:
            raise HarnessError(
                f"{instance_id}: more than {world.max_events} events; an endless flow?"
            )
        runtime.now = entry.when
        assert runtime.snapshot is not None
        try:
            transition = advance(runtime.snapshot, entry.event, entry.when)
        except StaleEventError:
            stale += 1
            continue
        except NoWaiterError:
            if not entry.from_world:
                raise HarnessError(f"{instance_id}: nothing waits for {entry.event!r}") from None
            unheard += 1  # the outside world sent an event that nothing waits for any more
            continue
        except EventRejectedError as error:
            raise HarnessError(
                f"{instance_id}: the engine rejected {entry.event!r} at "
                f"{(entry.when - started).total_seconds()}s: {type(error).__name__}: {error}"
            ) from error
        runtime.snapshot = transition.snapshot
        runtime.carry_out(transition.commands)
    final = runtime.snapshot
    assert final is not None
    finish = runtime.finish
    return RunResult(
        status=final.status,
        output=finish.output if finish else None,
        error=finish.error if finish else None,
        cause=finish.cause if finish else None,
        transitions=final.seq,
        snapshot=final,
        elapsed_seconds=(runtime.now - started).total_seconds(),
        events_delivered=delivered,
        stale_events=stale,
        unheard_events=unheard,
        cuts=cuts,
        failovers=failovers,
        calls=tuple(world.calls[calls_before:]),
    )
