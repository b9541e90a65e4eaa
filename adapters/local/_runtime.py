"""The in-process runtime: one instance's commands carried out in this process, on a clock.

An *agenda* holds the events that will happen to the instance, ordered by (time,
creation order); the runtime delivers them one by one to the pure engine and carries
out the commands each transition returns. The clock (``_clock``) decides how time
passes: a :class:`VirtualClock` jumps from one event to the next (nothing sleeps, a flow
that waits an hour runs in microseconds, every run is deterministic), a
:class:`RealClock` sleeps and runs activities in threads. The world (``_world``) is what
outlives a runtime: activities, sub-flows, the sender of scripted events, the keys.

Command by command:

* ``RunActivity``: the call starts with an ``ActivityContext`` (``current_call()``
  works) and reports as on every runtime (``perform``: error = the exception's class
  name, cause = its message). On a virtual clock it runs at once and its result is due
  ``World.durations[name](input)`` seconds later (0 when absent); on a real clock it runs
  in a thread and its result is due when it returns. A task's ``timeout_seconds`` is the
  engine's timer either way, as on the Redis runner: whichever is due first, the result
  or the timer, wins; a result that comes after ``States.Timeout`` is dropped (the call
  is *abandoned*; a real clock leaves its thread running and does not wait for it).
  An async activity on a real clock is also stopped at its timeout, as a worker does;
* ``StartTimer``: ``TimerFired`` at ``fire_at``;
* ``AwaitEvent``: the world sends the next unused scripted event of that name
  ``after_seconds`` after the wait was first issued (nothing when none is scripted). It
  is sent by name (the engine gives it to the oldest waiter of that name), or, with
  ``World.address_events == "wait_id"``, to that very wait. A wait that ends first (a
  timeout) does not stop the sender; an event that nothing waits for when it arrives is
  refused (``NoWaiterError``) and counted as unheard;
* ``StartChildFlow``: the child (by name and version, the highest version when none is
  given) runs to its end on a clock of its own forked from this one, with the same cut
  policy when ``cut_children``; ``ChildFinished`` is due at the child's end (never, when
  the child stalls: the parent waits, as it would on a runner). A child flow the world
  does not know fails the call with ``UnknownFlow``, as on the Redis runner;
* ``CancelWork``: the scheduled event of that work is dropped (a call is abandoned);
* ``FinishFlow``: the run is over.

An event the engine rejects with ``StaleEventError`` is a lost race and is skipped; any
other rejection is a :class:`HarnessError`.

At a cut (``cut(k)`` true after transition ``k``, the snapshot's ``seq``), before the
next event is delivered, the snapshot goes through ``transfer`` (by default
:func:`round_trip`: encoded with the world's keys, decoded, and the decoded value must
encode to the same bytes). Without ``failover`` the same runtime continues with the
decoded value; with ``failover`` a brand-new runtime is built from it alone
(``outstanding(snapshot)``): its clock goes on from the time of the last event (never
before the snapshot's ``updated_at``), activities in flight at the cut run again (same
idempotency key, their full duration again from the cut), timers keep their absolute
deadlines, scripted events are still sent by the world, and a child flow started again
under the same ``child_instance_id`` is the child that already ran.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Literal

from rustyflower.adapters.local._clock import EPOCH, Clock, VirtualClock
from rustyflower.adapters.local._errors import EndlessFlowError, HarnessError
from rustyflower.adapters.local._results import ActivityCall, RunResult
from rustyflower.adapters.local._world import ChildOutcome, Entry, World
from rustyflower.core.activities import perform
from rustyflower.core.contract import RunnerError
from rustyflower.core.engine import (
    AwaitEvent,
    CancelWork,
    ChildFinished,
    Command,
    Event,
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
from rustyflower.core.model import FlowDefinition
from rustyflower.core.snapshot import SnapshotKeys
from rustyflower.core.snapshot.document import decode_snapshot, encode_snapshot
from rustyflower.core.timeutil import parse_timestamp

Cut = Callable[[int], bool] | Literal["every"] | None
"""When to cut: after transition ``k`` when ``cut(k)`` is true; ``"every"``: always."""

Transfer = Callable[[Snapshot, SnapshotKeys], Snapshot]
"""What a cut does with the snapshot: returns the value the run continues with."""

TransitionListener = Callable[[Snapshot, Event | None, tuple[Command, ...]], None]
"""Told of every transition of the instance: its snapshot, the event (None at the
start) and the commands."""

UNKNOWN_FLOW = RunnerError.UNKNOWN_FLOW
"""The error of a sub-flow call whose flow is not known (as every runtime names it)."""


def every_transition(_seq: int) -> bool:
    """A cut policy: cut after every transition."""
    return True


def at_transitions(*seqs: int) -> Callable[[int], bool]:
    """A cut policy: cut after the given transitions only."""
    chosen = frozenset(seqs)

    def policy(seq: int) -> bool:
        return seq in chosen

    return policy


def round_trip(snapshot: Snapshot, keys: SnapshotKeys) -> Snapshot:
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


class LocalRuntime:
    """One runtime "process": a clock, an agenda of future events, the snapshot it owns."""

    def __init__(
        self,
        world: World,
        clock: Clock,
        *,
        now: datetime | None = None,
        cut: Cut = None,
        failover: bool = False,
        cut_children: bool = True,
        transfer: Transfer = round_trip,
    ) -> None:
        self.world = world
        self.clock = clock
        self.now = clock.now() if now is None else now
        """The runtime's time: when the event it carried out last happened."""
        self.cut = cut
        self.failover = failover
        self.cut_children = cut_children
        self.transfer = transfer
        self.snapshot: Snapshot | None = None
        self.finish: FinishFlow | None = None
        self.abandoned_calls = 0
        self._agenda: list[Entry] = []
        self._by_work: dict[str, Entry] = {}

    @property
    def options(self) -> dict[str, Any]:
        """The cut options, for a runtime that takes over from this one or for a child."""
        return {
            "cut": self.cut,
            "failover": self.failover,
            "cut_children": self.cut_children,
            "transfer": self.transfer,
        }

    def recover(self, snapshot: Snapshot) -> LocalRuntime:
        """A brand-new runtime that continues ``snapshot`` from what the snapshot holds
        alone; its clock goes on from this runtime's time (or the snapshot's, if later)."""
        moment = parse_timestamp(snapshot.updated_at)
        if moment is None:
            raise HarnessError(f"snapshot updated_at {snapshot.updated_at!r} is not a time")
        now = max(moment, self.now)
        runtime = LocalRuntime(self.world, self.clock.fork(not_before=now), now=now, **self.options)
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
                self._cancel(command)
            elif isinstance(command, FinishFlow):
                self.finish = command
            else:  # pragma: no cover - the Command union is closed
                raise HarnessError(f"unknown command {command!r}")

    @property
    def _instance_id(self) -> str:
        assert self.snapshot is not None
        return self.snapshot.instance_id

    def _schedule(self, when: datetime, work_id: str, event: Event) -> None:
        entry = Entry(when, self.world.next_order(), work_id, event, self._instance_id)
        self._by_work[work_id] = entry
        heapq.heappush(self._agenda, entry)

    def _cancel(self, command: CancelWork) -> None:
        entry = self._by_work.pop(command.work_id, None)
        if entry is not None:
            entry.cancelled = True
        if command.work_kind == "run_activity":
            self.clock.abandon(command.work_id)
            self.abandoned_calls += 1

    def _run_activity(self, command: RunActivity) -> None:
        instance_id = self._instance_id
        registry = self.world.registry
        self.world.calls.append(
            ActivityCall(
                instance_id,
                command.call_id,
                command.activity,
                command.attempt,
                command.idempotency_key,
                self.now,
            )
        )

        def work(limit: int | None) -> Event:
            return perform(registry, instance_id, replace(command, timeout_seconds=limit))

        seconds = self.world.duration(command.activity, command.input)
        self.clock.call(command.call_id, work, seconds, command.timeout_seconds, self.now)
        self._collect()

    def _collect(self) -> None:
        """Book the results of the calls that returned, at the time they returned."""
        for item in self.clock.finished():
            self._schedule(max(item.at, self.now), item.call_id, item.event)

    def _start_child(self, command: StartChildFlow) -> None:
        outcome = self.world._children.get(command.child_instance_id)
        if outcome is None:
            definition = self.world.flows.get(command.flow, command.version)
            if definition is None:
                key = f"{command.flow}@{command.version}" if command.version else command.flow
                cause = f"sub-flow {key!r} is not known to this runtime"
                failed = ChildFinished(command.call_id, "failed", error=UNKNOWN_FLOW, cause=cause)
                self._schedule(self.now, command.call_id, failed)
                return
            options = self.options
            if not self.cut_children:
                options["cut"] = None
            child = run_flow(
                definition,
                command.input,
                self.world,
                instance_id=command.child_instance_id,
                parent=ParentLink(self._instance_id, command.call_id),
                clock=self.clock.fork(not_before=self.now),
                **options,
            )
            ended_at = self.now + timedelta(seconds=child.elapsed_seconds)
            outcome = ChildOutcome(ended_at, child)
            self.world._children[command.child_instance_id] = outcome
        child = outcome.result
        if not child.finished:
            return  # the child stalled: the parent waits for ever, as it would for real
        event = ChildFinished(command.call_id, child.status, child.output, child.error, child.cause)
        self._schedule(max(outcome.ended_at, self.now), command.call_id, event)

    # --- events -----------------------------------------------------------------------

    def next_entry(self) -> Entry | None:
        """The next thing due, from this runtime's agenda or from the outside world, once
        it is due (on a real clock this waits); None when nothing more will happen."""
        while True:
            self._collect()
            entry = self._peek()
            if entry is not None and entry.when <= self.clock.now():
                self._take(entry)
                return entry
            if not self.clock.wait(None if entry is None else entry.when):
                return None

    def _peek(self) -> Entry | None:
        while self._agenda and self._agenda[0].cancelled:
            heapq.heappop(self._agenda)
        own = self._agenda[0] if self._agenda else None
        sent = self.world.peek_send(self._instance_id)
        if sent is not None and (own is None or sent < own):
            return sent
        return own

    def _take(self, entry: Entry) -> None:
        if entry.from_world:
            self.world.take_send(entry)
            return
        heapq.heappop(self._agenda)
        if self._by_work.get(entry.work_id) is entry:
            del self._by_work[entry.work_id]


class VirtualRuntime(LocalRuntime):
    """The runtime on a virtual clock that starts at ``now``."""

    def __init__(self, world: World, now: datetime = EPOCH, **options: Any) -> None:
        super().__init__(world, VirtualClock(now), **options)


def _with_activity_defaults(world: World, definition: FlowDefinition) -> FlowDefinition:
    """The definition with its activities' default retry and timeout, as a runner
    registers it (``rustyflower flows register``); unchanged when no activity has any."""
    registry = world.registry
    if any(a.retry or a.timeout_seconds is not None for a in registry):
        return registry.apply_defaults(definition)
    return definition


def _cut_policy(cut: Cut) -> Callable[[int], bool] | None:
    if cut == "every":
        return every_transition
    return cut


def run_flow(
    definition: FlowDefinition,
    input: Any,
    world: World,
    *,
    instance_id: str = "instance-1",
    parent: ParentLink | None = None,
    clock: Clock | None = None,
    now: datetime | None = None,
    cut: Cut = None,
    failover: bool = False,
    cut_children: bool = True,
    transfer: Transfer = round_trip,
    on_transition: TransitionListener | None = None,
) -> RunResult:
    """Run one instance to its end (or until nothing more will happen to it).

    ``clock`` is a :class:`VirtualClock` starting at ``now`` (default :data:`EPOCH`)
    unless given;
    ``cut(k)`` says whether to cut after transition ``k`` (``"every"``: after every one);
    ``failover`` makes each cut continue on a brand-new runtime; ``transfer`` is what a
    cut does with the snapshot (default :func:`round_trip`); ``on_transition`` is told
    of every transition of this instance (not of its children).
    """
    definition = _with_activity_defaults(world, definition)
    if clock is None:
        clock = VirtualClock(EPOCH if now is None else now)
    elif now is not None:
        raise ValueError("run_flow: give the start time to the clock, not as now=")
    policy = _cut_policy(cut)
    options: dict[str, Any] = {
        "cut": cut,
        "failover": failover,
        "cut_children": cut_children,
        "transfer": transfer,
    }
    calls_before = len(world.calls)
    runtime = LocalRuntime(world, clock, **options)
    started = runtime.now
    transition = start(definition, input, instance_id, started, parent=parent)
    runtime.snapshot = transition.snapshot
    if on_transition is not None:
        on_transition(transition.snapshot, None, transition.commands)
    runtime.carry_out(transition.commands)
    delivered = stale = unheard = cuts = failovers = abandoned = 0
    last_cut = -1
    while runtime.finish is None:
        snapshot = runtime.snapshot
        assert snapshot is not None
        if policy is not None and snapshot.seq != last_cut and policy(snapshot.seq):
            last_cut = snapshot.seq
            decoded = transfer(snapshot, world.keys)
            cuts += 1
            if failover:
                abandoned += runtime.abandoned_calls
                runtime = runtime.recover(decoded)
                failovers += 1
            else:
                runtime.snapshot = decoded
        entry = runtime.next_entry()
        if entry is None:
            break  # nothing more will happen: the instance waits for ever
        delivered += 1
        if world.max_events is not None and delivered > world.max_events:
            raise EndlessFlowError(
                f"{instance_id}: more than {world.max_events} events; an endless flow?"
            )
        runtime.now = max(entry.when, runtime.now)
        assert runtime.snapshot is not None
        try:
            transition = advance(runtime.snapshot, entry.event, runtime.now)
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
                f"{(runtime.now - started).total_seconds()}s: {type(error).__name__}: {error}"
            ) from error
        runtime.snapshot = transition.snapshot
        if on_transition is not None:
            on_transition(transition.snapshot, entry.event, transition.commands)
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
        abandoned_calls=abandoned + runtime.abandoned_calls,
    )
