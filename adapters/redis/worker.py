"""The worker: runs activities from the streams, fires timers, reclaims work of dead workers.

Everything it does is safe to repeat: a message is acknowledged in the same atomic step
that applies its result, a timer is removed in the step that fires it, and a worker that
dies (even with kill -9) leaves its messages to be claimed by another after the
visibility timeout. An activity may therefore run twice; its idempotency key says so.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from rustyflower.adapters.redis import scripts
from rustyflower.adapters.redis.conductor import Conductor, FencedError, PendingEvent, Rejected
from rustyflower.adapters.redis.keys import CONSUMER_GROUP, PRIORITIES, Keyspace
from rustyflower.adapters.redis.limits import Limits
from rustyflower.adapters.redis.messages import WorkMessage, split_timer_member
from rustyflower.adapters.redis.store import (
    Placement,
    RedisStore,
    UnknownFlowError,
    UnknownInstanceError,
    WorkAck,
)
from rustyflower.core.activities import INVALID_OUTPUT, UNKNOWN_ACTIVITY, ActivityRegistry, perform
from rustyflower.core.engine import (
    ActivityFailed,
    CancelRequested,
    ChildFinished,
    Event,
    ParentLink,
    RunActivity,
    StartChildFlow,
    TimerFired,
)
from rustyflower.core.errors import RustyFlowerError

log = logging.getLogger("rustyflower.worker")

_REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError)


@dataclass
class WorkerOptions:
    concurrency: int = 4
    visibility_timeout: float = 30.0
    """Seconds a message may stay unacknowledged (without heartbeat) before it is reclaimed."""
    heartbeat_interval: float = 5.0
    block_ms: int = 500
    timer_interval: float = 0.02
    grace_period: float = 30.0
    name: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    batch_size: int = 16
    """Messages taken per read while activities are quick (see batch_below_seconds)."""
    batch_below_seconds: float = 0.02
    """Activities slower than this on average are taken one message at a time."""
    run_timers: bool = True


@dataclass
class WorkerStats:
    activities: int = 0
    failures: int = 0
    timers: int = 0
    reclaimed: int = 0
    deferred: int = 0
    redis_errors: int = 0


@dataclass
class _InFlight:
    stream: str
    message_id: str
    message: WorkMessage | None  # None: read, waiting its turn in a batch


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
        self.registry = registry
        self.options = options or WorkerOptions()
        self.conductor = conductor or Conductor(store)
        self.limits = Limits(
            self.client, self.keys, lease_ms=int(self.options.visibility_timeout * 1000)
        )
        self.stats = WorkerStats()
        self._take_due = self.client.register_script(scripts.TAKE_DUE)
        self._read_by_priority = self.client.register_script(scripts.READ_BY_PRIORITY)
        self._release_deferred = self.client.register_script(scripts.RELEASE_DEFERRED)
        self._defer = self.client.register_script(scripts.DEFER)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._in_flight: dict[str, _InFlight] = {}
        self._in_flight_lock = threading.Lock()
        self._average_seconds = 0.0
        self._reclaimed: queue.Queue[tuple[int, int, str, dict[bytes, bytes]]] = queue.Queue()

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self.store.ensure_groups()
        for index in range(self.options.concurrency):
            self._spawn(f"executor-{index}", functools.partial(self._consume, index))
        self._spawn("maintenance", self._maintain)
        log.info(
            "worker %s started: %d executors, activities: %s",
            self.options.name,
            self.options.concurrency,
            ", ".join(self.registry.names()) or "(none)",
        )

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"rustyflower-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

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

    def run_until_signalled(self) -> None:
        """Run until SIGTERM or SIGINT, then shut down gracefully."""
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        self.start()
        stop.wait()
        log.info(
            "shutting down: finishing running activities (up to %ss)", self.options.grace_period
        )
        self.stop()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

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
            try:
                reclaimed = self._reclaimed.get_nowait()
            except queue.Empty:
                reclaimed = None
            if reclaimed is not None:
                self._handle(*reclaimed)
                continue
            shard = shards[turn % len(shards)]
            turn += 1
            count = self._batch_size()
            try:
                # strict priority first; block on all three only when all are empty
                found: Any = self._read_by_priority(
                    keys=self.keys.streams(shard), args=[CONSUMER_GROUP, consumer, count]
                )
                if found:
                    priority, entries = int(found[0]), found[1]
                    batch = [
                        (priority, _text(message_id), dict(zip(flat[::2], flat[1::2], strict=True)))
                        for message_id, flat in entries
                    ]
                    self._process(shard, batch)
                    continue
                streams: dict[Any, Any] = {stream: ">" for stream in self.keys.streams(shard)}
                response: Any = self.client.xreadgroup(
                    CONSUMER_GROUP, consumer, streams, count=1, block=self.options.block_ms
                )
            except _REDIS_ERRORS as error:
                self._redis_trouble(error)
                continue
            except redis.ResponseError as error:
                if "NOGROUP" in str(error):
                    self._call_with_retry(self.store.ensure_groups)
                    continue
                raise
            batch = [
                (self._priority_of(stream), _text(message_id), fields)
                for stream, entries in response or []
                for message_id, fields in entries
            ]
            self._process(shard, sorted(batch, key=lambda item: item[0]))

    def _batch_size(self) -> int:
        """Take several messages per read while activities are quick, one when they are slow.

        Batching saves round trips (results are committed in one pipeline); with slow
        activities it would only make messages wait behind each other.
        """
        if self._average_seconds > self.options.batch_below_seconds:
            return 1
        return self.options.batch_size

    def _process(self, shard: int, batch: list[tuple[int, str, dict[Any, Any]]]) -> None:
        """Run a batch of messages; the activities' results are applied together at the end."""
        results: list[PendingEvent] = []
        holders: list[str] = []
        with self._in_flight_lock:
            for priority, message_id, _ in batch:
                stream = self.keys.stream(shard, PRIORITIES[priority])
                self._in_flight[message_id] = _InFlight(stream, message_id, None)
                holders.append(message_id)
        try:
            for priority, message_id, fields in batch:
                self._handle(shard, priority, message_id, fields, results)
            if results:
                self._apply_results(results)
        finally:
            with self._in_flight_lock:
                for holder in holders:
                    self._in_flight.pop(holder, None)

    def _apply_results(self, results: list[PendingEvent]) -> None:
        try:
            self._call_with_retry(lambda: self.conductor.apply_many(results))
        except Exception:  # e.g. one instance fenced: settle each on its own
            for result in results:
                try:
                    self._apply(
                        result.instance_id, result.event, ack=result.ack, placement=result.placement
                    )
                except (FencedError, UnknownInstanceError) as error:
                    log.warning("%s", error)
                    if result.ack is not None:
                        self._call_with_retry(functools.partial(self.store.ack, result.ack))

    def _priority_of(self, stream: bytes | str) -> int:
        names: list[str] = list(PRIORITIES)
        return names.index(_text(stream).rsplit(":", 1)[1])

    def _handle(
        self,
        shard: int,
        priority: int,
        message_id: str,
        fields: dict[Any, Any],
        results: list[PendingEvent] | None = None,
    ) -> None:
        ack = WorkAck(priority, message_id, shard)
        raw = fields.get(b"m") or fields.get("m")
        try:
            message = WorkMessage.decode(raw)
        except ValueError as error:
            self._dead_letter(shard, ack, raw, f"malformed work message: {error}")
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
        except RustyFlowerError as error:
            # e.g. a snapshot in the store that no longer verifies: keep the evidence
            self._dead_letter(
                shard, ack, raw, f"cannot process work for {message.instance_id}: {error}"
            )
        except Exception:
            # an executor thread must survive anything; the message stays unacknowledged
            # and is reclaimed after the visibility timeout
            log.exception("unexpected error while processing %s; it will be retried", message_id)

    def _run_activity(
        self, message: WorkMessage, ack: WorkAck, results: list[PendingEvent] | None = None
    ) -> None:
        """Run the activity; its result goes to ``results`` (applied with the batch) or now."""
        command = message.command
        assert isinstance(command, RunActivity)
        holder = f"{message.instance_id}|{command.call_id}"
        wait_ms = self._call_with_retry(
            lambda: self.limits.admit(
                holder, message.flow, message.concurrency_key, command.activity
            )
        )
        if wait_ms:
            self._park(message, ack, wait_ms)
            return
        stream = self.keys.stream(ack.shard, PRIORITIES[ack.priority_index])
        with self._in_flight_lock:
            self._in_flight[holder] = _InFlight(stream, ack.message_id, message)
        began = time.monotonic()
        try:
            event = self._execute(message.instance_id, command)
        finally:
            self._average_seconds += 0.2 * (time.monotonic() - began - self._average_seconds)
            with self._in_flight_lock:
                self._in_flight.pop(holder, None)
            self._call_with_retry(
                lambda: self.limits.release(holder, message.flow, message.concurrency_key)
            )
        placement = Placement(PRIORITIES[message.priority], message.concurrency_key)
        if results is not None:
            results.append(PendingEvent(message.instance_id, event, ack, None, placement))
        else:
            self._apply(message.instance_id, event, ack=ack, placement=placement)

    def _execute(self, instance_id: str, command: RunActivity) -> Event:
        event = perform(self.registry, instance_id, command)
        if isinstance(event, ActivityFailed):
            self.stats.failures += 1
            if event.error in (UNKNOWN_ACTIVITY, INVALID_OUTPUT):
                log.error("instance %s: %s", instance_id, event.cause)
        else:
            self.stats.activities += 1
        return event

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
            self._apply(
                message.instance_id,
                ChildFinished(command.call_id, "failed", error="UnknownFlow", cause=str(error)),
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
        self._apply(message.instance_id, event, ack=ack)

    def _cancel_child(self, message: WorkMessage, ack: WorkAck) -> None:
        child = message.child_instance_id or ""
        if self.store.exists(child):
            self._apply(child, CancelRequested("the parent no longer waits for it"), ack=None)
        self._call_with_retry(lambda: self.store.ack(ack))

    def _apply(
        self,
        instance_id: str,
        event: Event,
        ack: WorkAck | None = None,
        fired_timer: str | None = None,
        placement: Placement | None = None,
    ) -> None:
        outcome = self._call_with_retry(
            lambda: self.conductor.apply(
                instance_id, event, ack=ack, fired_timer=fired_timer, placement=placement
            )
        )
        if isinstance(outcome, Rejected):
            log.debug("instance %s: %s rejected: %s", instance_id, event.kind, outcome.error)

    def _park(self, message: WorkMessage, ack: WorkAck, wait_ms: int) -> None:
        """Held back by a limit: park the message and retry it after ``wait_ms``."""
        self.stats.deferred += 1
        member = f"{ack.priority_index}|{message.encode()}"
        due = int(time.time() * 1000) + wait_ms
        stream = self.keys.stream(ack.shard, PRIORITIES[ack.priority_index])
        self._call_with_retry(
            lambda: self._defer(
                keys=[self.keys.deferred(ack.shard), stream], args=[due, member, ack.message_id]
            )
        )

    def _dead_letter(self, shard: int, ack: WorkAck, raw: Any, reason: str) -> None:
        log.error("%s; moved to the dead-letter stream", reason)
        dead = f"{self.keys.tag(shard)}:dead"
        payload = raw if isinstance(raw, bytes | str) else "(no 'm' field)"

        def move() -> None:
            pipe = self.client.pipeline(transaction=True)
            pipe.xadd(dead, {"m": payload, "reason": reason})
            pipe.xack(
                self.keys.stream(shard, PRIORITIES[ack.priority_index]),
                CONSUMER_GROUP,
                ack.message_id,
            )
            pipe.execute()

        self._call_with_retry(move)

    # --- maintenance: timers, deferred work, reclaiming, heartbeats -------------------------

    def _maintain(self) -> None:
        last_reclaim = last_heartbeat = 0.0
        while not self._stopping.is_set():
            began = time.monotonic()
            try:
                if self.options.run_timers:
                    for shard in range(self.keys.shards):
                        self._fire_due_timers(shard)
                        self._release_deferred(
                            keys=[self.keys.deferred(shard), *self.keys.streams(shard)],
                            args=[int(time.time() * 1000), 100],
                        )
                if began - last_heartbeat >= self.options.heartbeat_interval:
                    self._heartbeat()
                    last_heartbeat = began
                if began - last_reclaim >= self.options.visibility_timeout / 3:
                    for shard in range(self.keys.shards):
                        self._reclaim(shard)
                    last_reclaim = began
            except _REDIS_ERRORS as error:
                self._redis_trouble(error)
                continue
            self._stopping.wait(max(0.0, self.options.timer_interval - (time.monotonic() - began)))

    def _fire_due_timers(self, shard: int) -> None:
        now_ms = int(time.time() * 1000)
        lease_ms = int(self.options.visibility_timeout * 1000)
        due = self._take_due(keys=[self.keys.timers(shard)], args=[now_ms, 200, now_ms + lease_ms])
        for member in due:
            instance_id, timer_id = split_timer_member(_text(member))
            self.stats.timers += 1
            try:
                self._apply(instance_id, TimerFired(timer_id), fired_timer=timer_id)
            except (UnknownInstanceError, FencedError) as error:
                if self.store.drop_orphan_timer(instance_id, timer_id):
                    log.info("dropping timer %s: %s", timer_id, error)

    def _heartbeat(self) -> None:
        """Long activities keep their messages: re-claiming resets the idle time."""
        with self._in_flight_lock:
            running = list(self._in_flight.items())
        for holder, flight in running:
            self.client.xclaim(
                flight.stream,
                CONSUMER_GROUP,
                f"{self.options.name}-heartbeat",
                min_idle_time=0,
                message_ids=[flight.message_id],
                justid=True,
            )
            if flight.message is not None:
                message = flight.message
                self.limits.renew(holder, message.flow, message.concurrency_key)
        self.client.hset(self.keys.workers(), self.options.name, str(time.time()))

    def _reclaim(self, shard: int) -> None:
        """Take over messages that another (dead) worker left unacknowledged too long."""
        idle_ms = int(self.options.visibility_timeout * 1000)
        for priority, stream in enumerate(self.keys.streams(shard)):
            response = self.client.xautoclaim(
                stream,
                CONSUMER_GROUP,
                f"{self.options.name}-reclaimer",
                min_idle_time=idle_ms,
                start_id="0-0",
                count=50,
            )
            for message_id, fields in response[1]:
                if fields is None:
                    continue
                with self._in_flight_lock:
                    mine = any(f.message_id == _text(message_id) for f in self._in_flight.values())
                if mine:
                    continue
                self.stats.reclaimed += 1
                log.warning(
                    "reclaiming message %s left unacknowledged by a stopped worker",
                    _text(message_id),
                )
                self._reclaimed.put((shard, priority, _text(message_id), fields))

    # --- Redis outages ----------------------------------------------------------------------

    def _redis_trouble(self, error: Exception) -> None:
        self.stats.redis_errors += 1
        log.warning("Redis unavailable (%s); retrying", error)
        self._stopping.wait(0.5)

    def _call_with_retry(self, action: Callable[[], Any]) -> Any:
        """Keep a finished activity's result through a Redis outage: retry until it is back."""
        delay = 0.1
        while True:
            try:
                return action()
            except _REDIS_ERRORS as error:
                self.stats.redis_errors += 1
                log.warning("Redis unavailable (%s); retrying in %.1fs", error, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


__all__ = ["RustyFlowerError", "Worker", "WorkerOptions", "WorkerStats"]
