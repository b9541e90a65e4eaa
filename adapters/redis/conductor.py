"""Apply events to instances in the store: load, advance, compare-and-set, retry on conflict."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rustyflower.adapters.redis.scripting import Rider
from rustyflower.adapters.redis.store import (
    LOCAL_OWNER,
    CommitResult,
    InstanceInfo,
    Placement,
    PreparedCommit,
    RedisStore,
    SentCommits,
    UnknownInstanceError,
    WorkAck,
)
from rustyflower.core.engine import (
    CancelRequested,
    Event,
    EventReceived,
    HoldRequested,
    ParentLink,
    ReleaseRequested,
    RetryFailedRequested,
    Snapshot,
    Transition,
    advance,
    start,
)
from rustyflower.core.errors import (
    EventRejectedError,
    RustyFlowerError,
    StaleEventError,
)
from rustyflower.core.snapshot.document import decode_snapshot

Clock = Callable[[], datetime]

CHAIN_LIMIT = 64
"""Events of one instance a batch commits together at most (``Conductor.apply_many``)."""

PLACEMENTS_KEPT = 10_000
"""Instances whose placement a conductor keeps in memory (``Conductor.placement``)."""


class FencedError(RustyFlowerError):
    """The instance now belongs to a newer epoch (it failed over); this runtime must stop."""


class ContentionError(RustyFlowerError):
    """Too many concurrent writers kept changing the instance; the event was not applied."""


@dataclass(frozen=True)
class PendingEvent:
    """One event of a batch, with the message or timer that carried it."""

    instance_id: str
    event: Event
    ack: WorkAck | None = None
    fired_timer: str | None = None
    placement: Placement | None = None
    seen_seq: int | None = None
    """The instance's seq when the work was dispatched (a cached snapshot older than
    this was advanced by another process: it is fetched again before advancing)."""


@dataclass
class PlannedBatch:
    """A batch's commits, prepared by ``Conductor.plan_many``: one per instance, each
    chaining the events of ``planned``'s entry (indexes into ``items``)."""

    items: list[PendingEvent]
    prepared: list[PreparedCommit] = field(default_factory=list)
    planned: list[list[tuple[int, Transition]]] = field(default_factory=list)
    sent: SentCommits | None = None

    def instances(self) -> set[str]:
        return {item.instance_id for item in self.items}


@dataclass(frozen=True)
class Applied:
    transition: Transition


@dataclass(frozen=True)
class Rejected:
    error: EventRejectedError


Outcome = Applied | Rejected


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_instance_id() -> str:
    # time-ordered, so ids sort roughly by start time in listings
    return f"{int(time.time() * 1000):013x}-{uuid.uuid4().hex[:12]}"


class Conductor:
    def __init__(self, store: RedisStore, clock: Clock = utc_now, max_conflicts: int = 100) -> None:
        self.store = store
        self.clock = clock
        self.max_conflicts = max_conflicts
        self._placements: dict[str, Placement] = {}

    # --- starting -------------------------------------------------------------------------

    def start(
        self,
        flow: str,
        flow_input: Any,
        *,
        version: str | None = None,
        instance_id: str | None = None,
        placement: Placement | None = None,
        parent: ParentLink | None = None,
    ) -> Snapshot:
        """Start an instance; with an id that exists already, return it and run nothing twice."""
        snapshot, _ = self.start_or_find(
            flow,
            flow_input,
            version=version,
            instance_id=instance_id,
            placement=placement,
            parent=parent,
        )
        return snapshot

    def start_or_find(
        self,
        flow: str,
        flow_input: Any,
        *,
        version: str | None = None,
        instance_id: str | None = None,
        placement: Placement | None = None,
        parent: ParentLink | None = None,
    ) -> tuple[Snapshot, bool]:
        """``start``, and whether this call created the instance (False: the id existed)."""
        instance_id = instance_id or new_instance_id()
        # no existence check first: the commit script answers "exists" atomically
        definition = self.store.definition(flow, version)
        transition = start(definition, flow_input, instance_id, self.clock(), parent=parent)
        placement = placement or Placement()
        result = self.store.commit(None, transition, placement)
        if result == "exists":
            return self.store.load(instance_id, fresh=True), False
        self._note_placement(instance_id, placement)
        return transition.snapshot, True

    def start_many(
        self,
        flow: str,
        inputs: Sequence[Any],
        *,
        version: str | None = None,
        placement: Placement | None = None,
        chunk: int = 200,
    ) -> list[Snapshot]:
        """Start one instance per input, committing each chunk in one round trip.

        For bulk submissions (a nightly batch, an import): the same guarantees as
        ``start`` for each instance, far fewer round trips.
        """
        definition = self.store.definition(flow, version)
        placement = placement or Placement()
        started: list[Snapshot] = []
        for offset in range(0, len(inputs), chunk):
            now = self.clock()
            transitions = [
                start(definition, flow_input, new_instance_id(), now)
                for flow_input in inputs[offset : offset + chunk]
            ]
            prepared = [self.store.prepare(None, t, placement) for t in transitions]
            for transition, result in zip(
                transitions, self.store.commit_many(prepared), strict=True
            ):
                if result != "ok":  # a fresh random id cannot exist: this is a real fault
                    raise ContentionError(
                        f"instance {transition.snapshot.instance_id!r} could not be created "
                        f"({result})"
                    )
                self._note_placement(transition.snapshot.instance_id, placement)
                started.append(transition.snapshot)
        return started

    # --- events ---------------------------------------------------------------------------

    def apply(
        self,
        instance_id: str,
        event: Event,
        *,
        ack: WorkAck | None = None,
        fired_timer: str | None = None,
        placement: Placement | None = None,
        seen_seq: int | None = None,
    ) -> Outcome:
        """Apply one event exactly once; a rejected event is returned, not raised."""
        if placement is not None:
            self._note_placement(instance_id, placement)
        fresh = False
        for _ in range(self.max_conflicts):
            snapshot = self.store.load(instance_id, fresh=fresh, at_least=seen_seq)
            try:
                transition = advance(snapshot, event, self.clock())
            except EventRejectedError as error:
                if not fresh:
                    fresh = True  # a cached value may be behind: judge on the stored one
                    continue
                self._discard(instance_id, ack, fired_timer, error)
                return Rejected(error)
            result = self.store.commit(
                snapshot, transition, self.placement(instance_id), ack=ack, fired_timer=fired_timer
            )
            if result == "ok":
                return Applied(transition)
            if result == "fenced" and self._owned_elsewhere(instance_id, fresh):
                self._drop_fenced(instance_id, ack, fired_timer)
                raise FencedError(
                    f"instance {instance_id!r} was taken over by a newer epoch "
                    "(failed over); this runner no longer advances it"
                )
            # a conflict, or fenced by a cached value that predates a failover and failback
            fresh = True
        raise ContentionError(
            f"instance {instance_id!r} changed {self.max_conflicts} times while applying "
            f"{event.kind}; try again"
        )

    def apply_many(self, items: list[PendingEvent], rider: Rider | None = None) -> list[Outcome]:
        """Apply several events with one round trip for all their commits.

        The events of one instance are applied in order, each on the last one's result,
        and committed together as one compare-and-set (``store.prepare_chain``): a wide
        Map whose items finish in one batch writes its snapshot once. A commit that loses
        a race (or an event the cached value cannot judge) is applied again event by
        event, from the stored value. A ``rider`` (the worker's next read) goes in the
        round trip of the commits, when there are any.
        """
        batch = self.plan_many(items)
        return self._settle_many(batch, self.store.commit_many(batch.prepared, rider))

    def plan_many(self, items: list[PendingEvent]) -> PlannedBatch:
        """The commits of ``apply_many``, prepared but not sent."""
        now = self.clock()
        seen: dict[str, int] = {}
        by_instance: dict[str, list[int]] = {}
        for index, item in enumerate(items):
            if item.placement is not None:
                self._note_placement(item.instance_id, item.placement)
            if item.seen_seq is not None:
                seen[item.instance_id] = max(item.seen_seq, seen.get(item.instance_id, 0))
            by_instance.setdefault(item.instance_id, []).append(index)
        self.store.preload(list(by_instance), at_least=seen)
        batch = PlannedBatch(items)
        for instance_id, indexes in by_instance.items():
            chained = self._chain(instance_id, [items[i] for i in indexes], seen, now)
            if chained is None:
                continue  # judged again on the stored value when settled
            snapshot, links = chained
            chain = list(zip(indexes, links, strict=False))
            picked = [items[index] for index, _ in chain]
            batch.prepared.append(
                self.store.prepare_chain(
                    snapshot,
                    links,
                    self.placement(instance_id),
                    acks=[item.ack for item in picked if item.ack is not None],
                    fired_timers=[item.fired_timer for item in picked if item.fired_timer],
                )
            )
            batch.planned.append(chain)
        return batch

    def send_many(self, batch: PlannedBatch, rider: Rider | None = None) -> bool:
        """Send a planned batch's commits (and the ``rider``) without waiting for the
        replies; ``finish_many`` reads them. False: the store cannot send ahead (a cluster
        client) or there is nothing to commit; nothing was sent."""
        batch.sent = self.store.send_commits(batch.prepared, rider)
        return batch.sent is not None

    def finish_many(self, batch: PlannedBatch) -> list[Outcome]:
        """The outcomes of a batch sent by ``send_many`` (or of one with nothing sent)."""
        sent, batch.sent = batch.sent, None
        results = [] if sent is None else self.store.receive_commits(sent)
        return self._settle_many(batch, results)

    def _settle_many(self, batch: PlannedBatch, results: list[CommitResult]) -> list[Outcome]:
        """Outcomes of the events: applied by their chain's commit, or (a chain that lost
        a race, an event not chained) applied now on the stored value, one by one."""
        items = batch.items
        outcomes: list[Outcome | None] = [None] * len(items)
        for chain, result in zip(batch.planned, results, strict=True):
            if result == "ok":
                for index, transition in chain:
                    outcomes[index] = Applied(transition)
        finished: list[Outcome] = []
        for index, item in enumerate(items):
            outcome = outcomes[index]
            if outcome is None:
                outcome = self.apply(
                    item.instance_id,
                    item.event,
                    ack=item.ack,
                    fired_timer=item.fired_timer,
                    seen_seq=item.seen_seq,
                )
            finished.append(outcome)
        return finished

    def _chain(
        self, instance_id: str, events: list[PendingEvent], seen: dict[str, int], now: datetime
    ) -> tuple[Snapshot, list[Transition]] | None:
        """The instance's (cached) snapshot and the transitions of its first events, each
        advanced from the last; it stops before an event the cached value rejects (that
        one and the rest are judged on the stored value). None: nothing to chain."""
        try:
            snapshot = self.store.load(instance_id, at_least=seen.get(instance_id))
        except UnknownInstanceError:
            return None
        links: list[Transition] = []
        current = snapshot
        for item in events[:CHAIN_LIMIT]:
            try:
                transition = advance(current, item.event, now)
            except EventRejectedError:
                break
            links.append(transition)
            current = transition.snapshot
        if not links:
            return None
        return snapshot, links

    def _owned_elsewhere(self, instance_id: str, judged_fresh: bool) -> bool:
        """A fenced answer is final only when the stored instance says another owner has it.

        Judged on a cached snapshot it may only mean the cache predates a failover and a
        failback (a newer epoch, owner local again): reload and decide again.
        """
        if not judged_fresh:
            return False
        return self.store.info(instance_id).owner != LOCAL_OWNER

    def _drop_fenced(self, instance_id: str, ack: WorkAck | None, fired_timer: str | None) -> None:
        """Fenced for another owner: its failback re-dispatches the work, so drop ours."""
        if ack is not None:
            self.store.ack(ack)
        if fired_timer is not None:
            self.store.drop_orphan_timer(instance_id, fired_timer)

    def _discard(
        self,
        instance_id: str,
        ack: WorkAck | None,
        fired_timer: str | None,
        error: EventRejectedError | None,
    ) -> None:
        """The event will never apply: drop the message or timer that carried it."""
        if ack is not None:
            self.store.ack(ack)
        if fired_timer is not None:
            self.store.remove_timer(instance_id, fired_timer)
        del error

    def placement(self, instance_id: str) -> Placement:
        found = self._placements.get(instance_id)
        if found is None:
            found = self.store.placement(instance_id)
            self._note_placement(instance_id, found)
        return found

    def _note_placement(self, instance_id: str, placement: Placement) -> None:
        """Remember an instance's placement, at most ``PLACEMENTS_KEPT`` of them: a client
        or worker that runs for months sees millions of instances (each start and each
        message used to add one for good); one forgotten is read again from its hash."""
        placements = self._placements
        if len(placements) >= PLACEMENTS_KEPT and instance_id not in placements:
            placements.clear()
        placements[instance_id] = placement

    # --- operator controls (raise on rejection: a person asked for it) --------------------

    def control(self, instance_id: str, event: Event) -> Transition:
        outcome = self.apply(instance_id, event)
        if isinstance(outcome, Rejected):
            raise outcome.error
        return outcome.transition

    def signal(
        self, instance_id: str, event_name: str, data: Any = None, wait_id: str | None = None
    ) -> Transition:
        return self.control(instance_id, EventReceived(event_name, data, wait_id))

    def hold(self, instance_id: str, reason: str | None = None) -> Transition:
        return self.control(instance_id, HoldRequested(reason))

    def release(self, instance_id: str) -> Transition:
        return self.control(instance_id, ReleaseRequested())

    def cancel(self, instance_id: str, reason: str | None = None) -> Transition:
        return self.control(instance_id, CancelRequested(reason))

    def retry_failed(self, instance_id: str) -> Transition:
        return self.control(instance_id, RetryFailedRequested())

    def info(self, instance_id: str) -> InstanceInfo:
        return self.store.info(instance_id)

    # --- snapshots ------------------------------------------------------------------------

    def export(self, instance_id: str) -> bytes:
        """The stored, signed snapshot bytes of an instance."""
        return self.store.raw_snapshot(instance_id)

    def resume(
        self,
        data: bytes,
        *,
        take_ownership: bool = False,
        discard_newer_state: bool = False,
        placement: Placement | None = None,
    ) -> Snapshot:
        """Continue a snapshot here: store it and dispatch its outstanding work.

        An instance already here under a newer epoch, or at the same epoch but further
        along, is refused (``core.instance_store.plan_resume``), also with
        ``take_ownership`` (which raises the epoch so the previous owner is fenced off);
        only ``discard_newer_state`` rolls newer state back, recorded in the history.
        """
        snapshot = decode_snapshot(data, self.store.snapshot_keys)
        return self.store.resume(
            snapshot,
            take_ownership=take_ownership,
            discard_newer_state=discard_newer_state,
            now=self.clock(),
            placement=placement,
        )


def is_stale(outcome: Outcome) -> bool:
    return isinstance(outcome, Rejected) and isinstance(outcome.error, StaleEventError)
