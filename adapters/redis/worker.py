"""The worker: runs activities from the streams, fires timers, reclaims work of dead workers.

Everything it does is safe to repeat: a message is acknowledged in the same atomic step
that applies its result, a timer is removed in the step that fires it, and a worker that
dies (even with kill -9) leaves its messages to be claimed by another after the
visibility timeout. An activity may therefore run twice; its idempotency key says so.

Every thread survives any error of one message or one round: it logs, backs off and goes
on (``health``). A thread that keeps failing past ``failure_limit`` makes the worker
unhealthy, and ``run_until_signalled`` (like ``rustyflower worker``) then stops and
reports it, so that the process exits non-zero and its supervisor restarts it.

Work for an activity this worker does not have is *routed*: moved, in one atomic step,
to that activity's stream, which only workers that have the activity read (see
``maintenance``). Failing the task with ``UnknownActivity`` instead is a setting
(``unknown_activity="fail"``).

Why one module: the consume loop, the handling of each kind of work message and the
thread supervision share the worker's stop event, health record, in-flight table and
read-ahead slots (the read that rides with a thread's commits);
reading the shards (``reading``), timers and reclaiming (``maintenance``) and the options
(``worker_options``) already live apart, and what stays is one message's path.
"""

from __future__ import annotations

import functools
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from rustyflower.adapters.redis import scripts
from rustyflower.adapters.redis.conductor import Conductor, FencedError, PendingEvent, Rejected
from rustyflower.adapters.redis.failures import TRANSIENT_ERRORS, UNVERIFIABLE
from rustyflower.adapters.redis.health import Health
from rustyflower.adapters.redis.keycheck import verify_signing_keys
from rustyflower.adapters.redis.keys import CONSUMER_GROUP, PRIORITIES, Keyspace
from rustyflower.adapters.redis.lanes import Lanes
from rustyflower.adapters.redis.limits import Limits
from rustyflower.adapters.redis.maintenance import Maintenance, Reclaimed
from rustyflower.adapters.redis.messages import WorkMessage
from rustyflower.adapters.redis.reading import (
    MULTI_SHARD_BLOCK_MS,
    batch_of,
    blocking_read,
    read_shards,
)
from rustyflower.adapters.redis.scripting import Rider
from rustyflower.adapters.redis.store import (
    Placement,
    RedisStore,
    UnknownFlowError,
    UnknownInstanceError,
    WorkAck,
)
from rustyflower.adapters.redis.worker_options import (
    WEEK,
    UnknownActivityPolicy,
    WorkerOptions,
    WorkerStats,
)
from rustyflower.adapters.services.onprem import OnPremBackends
from rustyflower.core.activities import INVALID_OUTPUT, UNKNOWN_ACTIVITY, ActivityRegistry, perform
from rustyflower.core.contract import RunnerError
from rustyflower.core.engine import (
    ActivityFailed,
    CancelRequested,
    ChildFinished,
    Event,
    ParentLink,
    RunActivity,
    StartChildFlow,
)
from rustyflower.core.errors import (
    RustyFlowerError,
)
from rustyflower.core.services.calls import with_services

log = logging.getLogger("rustyflower.worker")


@dataclass
class InFlight:
    stream: str
    message_id: str
    message: WorkMessage | None  # None: read, waiting its turn in a batch


class WorkerUnhealthyError(RustyFlowerError):
    """A thread of the worker kept failing past its limit; the process should be restarted."""


class Worker:
    def __init__(
        self,
        store: RedisStore,
        registry: ActivityRegistry,
        options: WorkerOptions | None = None,
        conductor: Conductor | None = None,
    ) -> None:
        self.store = store
        self.keys: Keyspace = store.keys
        self.client = store.client
        self.options = options or WorkerOptions()
        # service tasks run here like activities, on the site's backends: this Redis for
        # queues and buses, a folder (or this Redis) for objects
        backends = OnPremBackends(
            self.client, self.keys.prefix, objects_dir=self.options.objects_dir
        )
        self.registry = with_services(registry, backends)
        self.conductor = conductor or Conductor(store)
        self.limits = Limits(
            self.client, self.keys, lease_ms=int(self.options.visibility_timeout * 1000)
        )
        self.stats = WorkerStats()
        self.health = Health(self.options.failure_limit)
        self.started_at = time.time()
        self._read_by_priority = self.client.register_script(scripts.READ_BY_PRIORITY)
        self.lanes = Lanes(
            self,
            self._read_by_priority,
            send_ahead=self.options.send_ahead and store.can_send_ahead,
        )
        """Per thread: the messages read ahead, and the commits sent ahead (``lanes``)."""
        self._defer = self.client.register_script(scripts.DEFER)
        self._route = self.client.register_script(scripts.ROUTE)
        self._stopping = threading.Event()
        self._abandoning = threading.Event()
        self._threads: list[threading.Thread] = []
        self.in_flight: dict[str, InFlight] = {}
        self.in_flight_lock = threading.Lock()
        self._average_seconds = 0.0
        self.reclaimed: queue.Queue[Reclaimed] = queue.Queue()
        self.routed_away: dict[str, int] = {}
        self._route_warned: dict[str, float] = {}
        self.maintenance = Maintenance(self)

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Check the setup (refuse to start with a signing key the fleet disagrees with),
        then start the executor threads and the maintenance thread."""
        verify_signing_keys(self.client, self.keys, self.store.snapshot_keys)
        self.store.ensure_groups()
        self.store.ensure_indexes()  # once after an upgrade: index the instances already here
        for index in range(self.options.concurrency):
            self._spawn(f"executor-{index}", functools.partial(self._consume, index))
        self._spawn("maintenance", self.maintenance.run)
        log.info(
            "worker %s started: %d executors, activities: %s",
            self.options.name,
            self.options.concurrency,
            ", ".join(self.registry.names()) or "(none)",
        )

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread_name = f"rustyflower-{name}"
        self.health.register(thread_name)
        thread = threading.Thread(
            target=self._supervised, args=(target,), name=thread_name, daemon=True
        )
        thread.start()
        self._threads.append(thread)

    def _supervised(self, target: Callable[[], None]) -> None:
        """Run a thread's loop; if it ever escapes, log, back off and run it again."""
        name = threading.current_thread().name
        try:
            while not self._stopping.is_set():
                try:
                    target()
                    return  # the loop ends only when the worker stops
                except Exception as error:
                    wait = self.health.restarted(name, error)
                    log.exception("thread %s failed; starting it again in %.1fs", name, wait)
                    self._stopping.wait(wait)
        finally:
            self.health.ended(name)

    def stop(self, timeout: float | None = None) -> None:
        """Stop taking work; wait for running activities up to the grace period."""
        self._stopping.set()
        deadline = time.monotonic() + (
            timeout if timeout is not None else self.options.grace_period
        )
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        unfinished = [thread.name for thread in self._threads if thread.is_alive()]
        if unfinished:
            log.warning("stopped with work still running (%s); it will be reclaimed", unfinished)
        self._threads.clear()
        try:
            self.maintenance.sign_off()
        except redis.RedisError as error:
            log.debug("could not remove the heartbeat: %s", error)

    def abandon(self) -> None:
        """Stop because the worker is unhealthy: calls that keep failing give up at once
        (their messages are reclaimed by other workers) instead of retrying until the
        grace period runs out."""
        self._abandoning.set()
        self._stopping.set()

    def problems(self) -> list[str]:
        """Why this worker is unhealthy (empty: healthy). Only meaningful while running."""
        if self._stopping.is_set():
            return []
        return self.health.problems()

    def healthy(self) -> bool:
        return not self.problems()

    def run_until_signalled(self, check_interval: float = 1.0) -> None:
        """Run until SIGTERM or SIGINT, then shut down gracefully.

        Raises WorkerUnhealthyError (after stopping) when a thread kept failing past the
        limit: the caller exits non-zero so that a supervisor starts a fresh process.
        """
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        self.start()
        problems: list[str] = []
        while not stop.wait(check_interval):
            problems = self.problems()
            if problems:
                break
        if problems:
            log.error("worker %s is unhealthy: %s; stopping", self.options.name, problems)
            self.abandon()
            self.stop()
            raise WorkerUnhealthyError("; ".join(problems))
        log.info(
            "shutting down: finishing running activities (up to %ss)", self.options.grace_period
        )
        self.stop()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def stop_event(self) -> threading.Event:
        """Set when the worker stops; threads wait on it instead of sleeping."""
        return self._stopping

    # --- consuming --------------------------------------------------------------------------

    def _consume(self, index: int) -> None:
        consumer = f"{self.options.name}-{index}"
        shards = [
            s
            for s in range(self.keys.shards)
            if s % self.options.concurrency == index % self.options.concurrency
        ] or [index % self.keys.shards]
        turn = 0
        while not self._stopping.is_set():
            self.health.begin_round()
            try:
                turn = self._round(consumer, shards, turn)
            except Exception as error:
                wait = self.round_failed(error)
                if len(shards) == 1 and isinstance(error, TRANSIENT_ERRORS):
                    self.lanes.round_failed(consumer, shards[0])
            else:
                wait = self.health.end_round()
            if wait:
                self._stopping.wait(wait)
        if len(shards) == 1:
            self._finish_read_ahead(consumer, shards[0])

    def _round(self, consumer: str, shards: list[int], turn: int) -> int:
        """One executor round: a message taken over from a dead worker, if one waits (one a
        round: under steady load the hand is never empty, and such work must not wait for
        a lull), then the shards' work, unless that message was all there was to do."""
        if self._take_reclaimed() and not self.lanes.busy(consumer):
            return turn
        if len(shards) == 1:
            self._consume_round(consumer, shards[0])
            return turn
        self._consume_shards(consumer, shards, shards[turn % len(shards)])
        return turn + 1

    def _take_reclaimed(self) -> bool:
        try:
            reclaimed = self.reclaimed.get_nowait()
        except queue.Empty:
            return False
        self._handle(reclaimed.ack, reclaimed.fields)
        return True

    def _consume_round(self, consumer: str, shard: int) -> None:
        ahead = self.lanes.take(consumer)
        if ahead is None:  # no read rode with the last commits: read now
            count = self.batch_size()
            # strict priority first; block on all three only when all are empty
            found: Any = self._read_by_priority(
                keys=self.keys.streams(shard), args=[CONSUMER_GROUP, consumer, count]
            )
            ahead = batch_of(found) if found else []
        if not ahead:
            ahead = blocking_read(self.client, self.keys, shard, consumer, self.options.block_ms)
        count = self.batch_size()
        if len(ahead) > count:  # a read for two batches (``Lanes.send``)
            self.lanes.keep(consumer, ahead[count:])
            ahead = ahead[:count]
        self._process(shard, ahead, consumer)

    def _finish_read_ahead(self, consumer: str, shard: int) -> None:
        """Messages a last commit's read claimed when the worker was told to stop: run
        them rather than leave them to a reclaim after the visibility timeout."""
        try:
            self.lanes.finish(consumer)
        except Exception:
            log.exception("%s: the last commits before stopping failed", consumer)
        ahead = self.lanes.read_ahead.pop(consumer, None)
        if ahead:
            try:
                self._process(shard, ahead)
            except Exception:
                log.exception("%s: messages read ahead before stopping failed", consumer)

    def _consume_shards(self, consumer: str, shards: list[int], block_on: int) -> None:
        """One round over several shards (see ``reading.read_shards``)."""
        found = read_shards(
            self.client,
            self._read_by_priority,
            self.keys,
            shards,
            consumer=consumer,
            count=self.batch_size(),
        )
        for shard, batch in found:
            self._process(shard, batch)
        if not found:
            block_ms = min(self.options.block_ms, MULTI_SHARD_BLOCK_MS)
            self._process(
                block_on, blocking_read(self.client, self.keys, block_on, consumer, block_ms)
            )

    def round_failed(self, error: Exception) -> float:
        """Report a failed round of the current thread: log it; the back-off to wait."""
        wait = self.health.failed(error)
        if isinstance(error, TRANSIENT_ERRORS):
            self.stats.redis_errors += 1
            log.warning("Redis unavailable (%s); retrying in %.1fs", error, wait)
        elif isinstance(error, redis.ResponseError) and str(error).startswith("UNBLOCKED"):
            # a primary turned replica (a cluster failover) ends the blocked read: read again
            log.warning("a blocking read was ended by a failover (%s); reading again", error)
        elif isinstance(error, redis.ResponseError) and "NOGROUP" in str(error):
            log.warning("a work stream or its consumer group is gone; creating it again")
            try:
                self.store.ensure_groups()
            except redis.RedisError as again:
                log.warning("could not create the consumer groups again: %s", again)
        else:
            log.error(
                "%s: round failed (%s: %s); retrying in %.1fs",
                threading.current_thread().name,
                type(error).__name__,
                error,
                wait,
                exc_info=not isinstance(error, redis.RedisError),
            )
        return wait

    def batch_size(self) -> int:
        """Take several messages per read while activities are quick, one when they are slow.

        Batching saves round trips (results are committed in one pipeline); with slow
        activities it would only make messages wait behind each other.
        """
        if self._average_seconds > self.options.batch_below_seconds:
            return 1
        return self.options.batch_size

    def _process(
        self, shard: int, batch: list[tuple[int, str, dict[Any, Any]]], consumer: str = ""
    ) -> None:
        """Run a batch of messages; the activities' results are applied together at the end.

        With ``consumer`` (a thread reading one shard), the next read rides in the round
        trip of the results' commits and its messages are the thread's next batch: a step
        then costs one round trip, not two (a read, then a commit). While activities are
        quick, the commits are only sent, and their replies read once the next batch is
        ready to commit (``lanes``).
        """
        results: list[PendingEvent] = []
        streams = self.keys.streams(shard)
        self.hold([(streams[priority], message_id) for priority, message_id, _ in batch])
        holders = [message_id for _, message_id, _ in batch]
        sent = False
        try:
            for priority, message_id, fields in batch:
                self._handle(WorkAck(priority, message_id, shard), fields, results)
            if results and consumer and self.lanes.send_ahead and self.batch_size() > 1:
                sent = self.lanes.send(consumer, shard, results, holders)
            elif results:
                rider = self.lanes.rider(consumer, shard, self.batch_size())
                self.lanes.apply_now(consumer, results, rider)
        finally:
            if not sent:
                self.release(holders)

    def hold(self, messages: list[tuple[str, str]]) -> None:
        """Messages (stream, id) claimed for a later round count as in flight: the heartbeat
        keeps them claimed and the reclaimer leaves them, however long they wait in hand."""
        with self.in_flight_lock:
            for stream, message_id in messages:
                self.in_flight[message_id] = InFlight(stream, message_id, None)

    def release(self, holders: list[str]) -> None:
        """The messages of a finished batch are no longer in flight."""
        with self.in_flight_lock:
            for holder in holders:
                self.in_flight.pop(holder, None)

    def apply_results(self, results: list[PendingEvent], rider: Rider | None = None) -> None:
        try:
            self._call_with_retry(lambda: self.conductor.apply_many(results, rider))
        except Exception:  # e.g. one instance fenced: settle each on its own
            for result in results:
                try:
                    self.apply(
                        result.instance_id,
                        result.event,
                        ack=result.ack,
                        placement=result.placement,
                        seen_seq=result.seen_seq,
                    )
                except (FencedError, UnknownInstanceError) as error:
                    log.warning("%s", error)
                    if result.ack is not None:
                        self._call_with_retry(functools.partial(self.store.ack, result.ack))

    def _handle(
        self, ack: WorkAck, fields: dict[Any, Any], results: list[PendingEvent] | None = None
    ) -> None:
        """Process one message; no error of it escapes (the next message must not suffer)."""
        raw = fields.get(b"m") or fields.get("m")
        try:
            message = WorkMessage.decode(raw)
        except ValueError as error:
            self._dead_letter(ack, raw, f"malformed work message: {error}")
            return
        try:
            if message.kind == "activity":
                self._run_activity(message, ack, results)
            elif message.kind == "start_child":
                self._start_child(message, ack)
            elif message.kind == "notify_parent":
                self._notify_parent(message, ack)
            else:
                self._cancel_child(message, ack)
        except FencedError as error:
            log.warning("%s", error)
        except UnknownInstanceError as error:
            log.warning("dropping work for a missing instance: %s", error)
            self._call_with_retry(lambda: self.store.ack(ack))
        except UNVERIFIABLE as error:
            self.health.failed(error)
            log.error(
                "cannot verify the snapshot of %s with this worker's keys (%s); the work is "
                "left for a worker that can (reclaimed after %gs)",
                message.instance_id,
                error,
                self.options.visibility_timeout,
            )
        except RustyFlowerError as error:
            # e.g. a snapshot in the store that cannot be decoded: keep the evidence
            self._dead_letter(ack, raw, f"cannot process work for {message.instance_id}: {error}")
        except Exception as error:
            # the message stays unacknowledged and is reclaimed after the visibility timeout
            self.health.failed(error)
            log.exception(
                "unexpected error while processing %s; it will be retried", ack.message_id
            )

    def _run_activity(
        self, message: WorkMessage, ack: WorkAck, results: list[PendingEvent] | None = None
    ) -> None:
        """Run the activity; its result goes to ``results`` (applied with the batch) or now."""
        command = message.command
        assert isinstance(command, RunActivity)
        if command.activity not in self.registry and self.options.unknown_activity == "route":
            self._route_away(message, ack, command.activity)
            return
        holder = f"{message.instance_id}|{command.call_id}"
        wait_ms = self._call_with_retry(
            lambda: self.limits.admit(
                holder, message.flow, message.concurrency_key, command.activity
            )
        )
        if wait_ms:
            self._park(message, ack, wait_ms)
            return
        with self.in_flight_lock:
            self.in_flight[holder] = InFlight(self.stream_of(ack), ack.message_id, message)
        began = time.monotonic()
        try:
            event = self._execute(message.instance_id, command)
        finally:
            self._average_seconds += 0.2 * (time.monotonic() - began - self._average_seconds)
            with self.in_flight_lock:
                self.in_flight.pop(holder, None)
            self._call_with_retry(
                lambda: self.limits.release(holder, message.flow, message.concurrency_key)
            )
        placement = Placement(PRIORITIES[message.priority], message.concurrency_key)
        if results is not None:
            results.append(
                PendingEvent(message.instance_id, event, ack, None, placement, message.seq)
            )
        else:
            self.apply(
                message.instance_id, event, ack=ack, placement=placement, seen_seq=message.seq
            )

    def _execute(self, instance_id: str, command: RunActivity) -> Event:
        event = perform(self.registry, instance_id, command)
        if isinstance(event, ActivityFailed):
            self.stats.failures += 1
            if event.error in (UNKNOWN_ACTIVITY, INVALID_OUTPUT):
                log.error("instance %s: %s", instance_id, event.cause)
        else:
            self.stats.activities += 1
        return event

    def _route_away(self, message: WorkMessage, ack: WorkAck, activity: str) -> None:
        """Move work for an activity this worker lacks to that activity's stream."""
        target = self.keys.activity_stream(ack.shard, activity)

        def move() -> None:
            self._route(
                keys=[target, self.stream_of(ack)],
                args=[CONSUMER_GROUP, message.encode(), ack.message_id],
            )
            self.client.sadd(self.keys.routed_activities(), activity)

        self._call_with_retry(move)
        self.stats.routed += 1
        self.routed_away[activity] = self.routed_away.get(activity, 0) + 1
        now = time.monotonic()
        if now - self._route_warned.get(activity, -3600.0) >= 60.0:
            self._route_warned[activity] = now
            log.warning(
                "no activity %r in this worker: its work waits for a worker that has it "
                "(%d routed so far; `rustyflower workers` shows who runs what)",
                activity,
                self.routed_away[activity],
            )

    def _start_child(self, message: WorkMessage, ack: WorkAck) -> None:
        command = message.command
        assert isinstance(command, StartChildFlow)
        link = ParentLink(message.instance_id, command.call_id)
        try:
            self._call_with_retry(
                lambda: self.conductor.start(
                    command.flow,
                    command.input,
                    version=command.version,
                    instance_id=command.child_instance_id,
                    placement=self.conductor.placement(message.instance_id),
                    parent=link,
                )
            )
        except UnknownFlowError as error:
            self.apply(
                message.instance_id,
                ChildFinished(
                    command.call_id, "failed", error=RunnerError.UNKNOWN_FLOW, cause=str(error)
                ),
                ack=ack,
            )
            return
        self._call_with_retry(lambda: self.store.ack(ack))

    def _notify_parent(self, message: WorkMessage, ack: WorkAck) -> None:
        result = message.result or {}
        event = ChildFinished(
            message.call_id or "",
            result.get("status", "failed"),
            result.get("output"),
            result.get("error"),
            result.get("cause"),
        )
        self.apply(message.instance_id, event, ack=ack)

    def _cancel_child(self, message: WorkMessage, ack: WorkAck) -> None:
        child = message.child_instance_id or ""
        if self.store.exists(child):
            self.apply(child, CancelRequested("the parent no longer waits for it"), ack=None)
        self._call_with_retry(lambda: self.store.ack(ack))

    def apply(
        self,
        instance_id: str,
        event: Event,
        ack: WorkAck | None = None,
        fired_timer: str | None = None,
        placement: Placement | None = None,
        *,
        seen_seq: int | None = None,
    ) -> None:
        outcome = self._call_with_retry(
            lambda: self.conductor.apply(
                instance_id,
                event,
                ack=ack,
                fired_timer=fired_timer,
                placement=placement,
                seen_seq=seen_seq,
            )
        )
        if isinstance(outcome, Rejected):
            log.debug("instance %s: %s rejected: %s", instance_id, event.kind, outcome.error)

    def stream_of(self, ack: WorkAck) -> str:
        return ack.stream or self.keys.stream(ack.shard, PRIORITIES[ack.priority_index])

    def _park(self, message: WorkMessage, ack: WorkAck, wait_ms: int) -> None:
        """Held back by a limit: park the message and retry it after ``wait_ms``."""
        self.stats.deferred += 1
        member = f"{message.priority}|{message.encode()}"
        due = int(time.time() * 1000) + wait_ms
        self._call_with_retry(
            lambda: self._defer(
                keys=[self.keys.deferred(ack.shard), self.stream_of(ack)],
                args=[due, member, ack.message_id],
            )
        )

    def _dead_letter(self, ack: WorkAck, raw: Any, reason: str) -> None:
        log.error("%s; moved to the dead-letter stream", reason)
        dead = f"{self.keys.tag(ack.shard)}:dead"
        payload = raw if isinstance(raw, bytes | str) else "(no 'm' field)"

        def move() -> None:
            pipe = self.client.pipeline(transaction=True)
            pipe.xadd(dead, {"m": payload, "reason": reason})
            pipe.xack(self.stream_of(ack), CONSUMER_GROUP, ack.message_id)
            pipe.execute()

        self._call_with_retry(move)

    # --- Redis outages ----------------------------------------------------------------------

    def _call_with_retry(self, action: Callable[[], Any]) -> Any:
        """Keep a finished activity's result through a passing Redis error: retry until it
        goes (the thread counts as failing meanwhile; past the limit the worker is unhealthy).
        """
        failed = False
        while True:
            try:
                result = action()
            except TRANSIENT_ERRORS as error:
                if self._abandoning.is_set():
                    raise
                failed = True
                self.stats.redis_errors += 1
                delay = self.health.failed(error)
                log.warning("Redis unavailable (%s); retrying in %.1fs", error, delay)
                time.sleep(delay)
                continue
            if failed:
                self.health.recovered()
            return result


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


__all__ = [
    "WEEK",
    "RustyFlowerError",
    "UnknownActivityPolicy",
    "Worker",
    "WorkerOptions",
    "WorkerStats",
    "WorkerUnhealthyError",
]
