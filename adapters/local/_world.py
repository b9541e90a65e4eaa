"""The world around the in-process runtime: what outlives any one runtime.

It is the activity code (and, for a virtual clock, how long each call lasts), the
sub-flow definitions, the outside world that sends events, the snapshot keys and a log
of every activity call. A failover throws a runtime away and builds a new one from the
snapshot alone; the world stays, so the events it sends are neither lost nor sent twice.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from rustyflower.adapters.local._errors import HarnessError
from rustyflower.adapters.local._results import ActivityCall, RunResult
from rustyflower.core.activities import ActivityRegistry
from rustyflower.core.engine import AwaitEvent, Event, EventReceived
from rustyflower.core.model import FlowDefinition, version_key
from rustyflower.core.snapshot import SnapshotKeys, generate_signing_key

DEFAULT_MAX_EVENTS = 10_000


@dataclass(frozen=True, slots=True)
class ScriptedEvent:
    """An external event the world sends ``after_seconds`` after the flow waits for it."""

    event: str
    data: Any = None
    after_seconds: float = 0


class FlowLibrary:
    """Sub-flow definitions by name and version."""

    def __init__(self, definitions: Iterable[FlowDefinition] = ()) -> None:
        self._flows: dict[str, dict[str, FlowDefinition]] = {}
        for definition in definitions:
            versions = self._flows.setdefault(definition.name, {})
            if definition.version in versions:
                raise ValueError(f"flow {definition.key} is given twice")
            versions[definition.version] = definition

    def get(self, name: str, version: str | None) -> FlowDefinition | None:
        """The definition (the highest version when ``version`` is None), or None."""
        versions = self._flows.get(name)
        if not versions:
            return None
        if version is None:
            return versions[max(versions, key=version_key)]
        return versions.get(version)

    def find(self, name: str, version: str | None) -> FlowDefinition:
        """Like ``get``, but a missing flow is a :class:`HarnessError`."""
        found = self.get(name, version)
        if found is not None:
            return found
        if name not in self._flows:
            raise HarnessError(f"no sub-flow named {name!r} is registered")
        raise HarnessError(f"sub-flow {name!r} has no version {version!r}")

    def __iter__(self) -> Iterator[FlowDefinition]:
        for versions in self._flows.values():
            yield from versions.values()


@dataclass(order=True)
class Entry:
    """Something due to happen to one instance at ``when`` (``order``: creation order)."""

    when: datetime
    order: int
    work_id: str = field(compare=False)
    event: Event = field(compare=False)
    instance_id: str = field(default="", compare=False)
    from_world: bool = field(default=False, compare=False)
    cancelled: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class ChildOutcome:
    """A child instance's run, and when it ended on its parent's timeline."""

    ended_at: datetime
    result: RunResult


@dataclass
class World:
    """Everything a run uses that is not the runtime itself; it survives failovers.

    The world is also the outside: the sender of the scripted events (its sends are
    scheduled here, not in a runtime, so a failover loses none and repeats none) and the
    child instances (a child is its own instance: starting it again under the same
    ``child_instance_id`` after a failover attaches to the one that already ran, as a
    runtime keyed by instance id does).
    """

    registry: ActivityRegistry
    durations: Mapping[str, Callable[[Any], float]] = field(default_factory=dict)
    """Virtual seconds a call of an activity lasts, from its input (absent: no time);
    a real clock ignores them."""
    flows: FlowLibrary = field(default_factory=FlowLibrary)
    events: Sequence[ScriptedEvent] = ()
    keys: SnapshotKeys = field(
        default_factory=lambda: SnapshotKeys.signing_only(generate_signing_key("testing"))
    )
    """The keys a cut signs and verifies snapshots with."""
    max_events: int | None = DEFAULT_MAX_EVENTS
    """More events than this in one instance's run is an :class:`EndlessFlowError`
    (None: no limit, for a run on the real clock that may poll for ever)."""
    address_events: Literal["name", "wait_id"] = "name"
    """``name``: events are sent by name, as an outside system does (the engine hands each
    to the oldest waiter of that name); ``wait_id``: each goes to the wait it answers."""
    calls: list[ActivityCall] = field(default_factory=list)
    """Every activity call, in the order they started, across runs, children, failovers."""
    _order: Iterator[int] = field(default_factory=itertools.count)
    _used: set[int] = field(default_factory=set)
    _bound: set[tuple[str, str]] = field(default_factory=set)
    _sends: list[Entry] = field(default_factory=list)
    _children: dict[str, ChildOutcome] = field(default_factory=dict)

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
                entry = Entry(
                    now + timedelta(seconds=scripted.after_seconds),
                    self.next_order(),
                    command.wait_id,
                    EventReceived(scripted.event, scripted.data, wait_id=wait_id),
                    instance_id=instance_id,
                    from_world=True,
                )
                self._sends.append(entry)
                return

    def peek_send(self, instance_id: str) -> Entry | None:
        candidates = [e for e in self._sends if e.instance_id == instance_id]
        return min(candidates) if candidates else None

    def take_send(self, entry: Entry) -> None:
        self._sends.remove(entry)
