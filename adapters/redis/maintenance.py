"""The worker's maintenance thread: timers, deferred work, heartbeats, reclaiming, routed
work, trimming of acknowledged stream entries, retention of finished instances and the
flows' triggers (adapters/redis/triggers.py).

It runs in rounds of steps, each step on its own interval. A step that fails is logged
and counted (``health``) and the other steps of the round still run, so a broken trim
cannot starve the timers; the next round retries it after a back-off.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import redis

from rustyflower.adapters.redis import scripts
from rustyflower.adapters.redis.conductor import FencedError
from rustyflower.adapters.redis.keys import CONSUMER_GROUP
from rustyflower.adapters.redis.messages import split_timer_member
from rustyflower.adapters.redis.reading import OWN_PENDING_MAX
from rustyflower.adapters.redis.scripting import ScriptCall, run_scripts
from rustyflower.adapters.redis.store import UnknownInstanceError, WorkAck
from rustyflower.adapters.redis.triggers import TriggerListener
from rustyflower.core.engine import TimerFired

if TYPE_CHECKING:
    from rustyflower.adapters.redis.worker import Worker

log = logging.getLogger("rustyflower.worker")

PURGE_BATCH = 500
PURGE_BUDGET_SECONDS = 1.0
"""Retention deletes at most this long per round; a backlog goes on in the next rounds."""
ROUTED_NAMES_TTL = 5.0


@dataclass(frozen=True)
class Reclaimed:
    """A message for the executors that did not come from their own read."""

    ack: WorkAck
    fields: dict[Any, Any]


class Maintenance:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.options = worker.options
        self.store = worker.store
        self.keys = worker.keys
        self.client = worker.client
        self.health = worker.health
        self._take_due = self.client.register_script(scripts.TAKE_DUE)
        self._release_deferred = self.client.register_script(scripts.RELEASE_DEFERRED)
        self._routed_names: set[str] = set()
        self._triggers = TriggerListener(
            worker.store,
            worker.conductor,
            worker.options.name,
            visibility_timeout=worker.options.visibility_timeout,
        )
        self._routed_checked = 0.0
        self._routed_groups: set[str] = set()
        self._purge_backlog = False

    # --- the loop -----------------------------------------------------------------------------

    def run(self) -> None:
        thread = threading.current_thread().name
        last: dict[str, float] = {}
        backoff: dict[str, float] = {}
        stopping = self.worker.stop_event
        while not stopping.is_set():
            began = time.monotonic()
            for name, interval, step in self._steps():
                if began - last.get(name, float("-inf")) < max(interval, backoff.get(name, 0)):
                    continue
                last[name] = began
                with self.health.acting_as(f"{thread}:{name}"):
                    self.health.begin_round()
                    try:
                        step()
                    except Exception as error:
                        backoff[name] = self.worker.round_failed(error)
                    else:
                        backoff[name] = self.health.end_round()
            self.health.end_round()  # the loop itself goes round
            elapsed = time.monotonic() - began
            stopping.wait(max(self.options.timer_interval - elapsed, 0.0))

    def _steps(self) -> list[tuple[str, float, Callable[[], None]]]:
        options = self.options
        steps: list[tuple[str, float, Callable[[], None]]] = []
        if options.run_timers:
            steps.append(("timers", 0.0, self._timers_and_deferred))
        steps += [
            ("heartbeat", options.heartbeat_interval, self._heartbeat),
            ("reclaim", options.visibility_timeout / 3, self._reclaim),
            ("routed", options.route_interval, self._read_routed),
        ]
        if options.trim_interval is not None:
            steps.append(("trim", options.trim_interval, self._trim))
        if options.retention_seconds is not None:
            interval = 0.0 if self._purge_backlog else options.retention_interval
            steps.append(("retention", interval, self._retention))
        if options.trigger_interval is not None:
            steps.append(("triggers", options.trigger_interval, self._hear_triggers))
        return steps

    def _hear_triggers(self) -> None:
        self._triggers.round()

    # --- timers and deferred work -------------------------------------------------------------

    def _timers_and_deferred(self) -> None:
        """Take due timers and put due deferred work back: one round trip for all shards.

        Each timer is leased, not removed, until its event is applied: a timer whose
        event fails here fires again when the lease ends (nothing is dropped).
        """
        now_ms = int(time.time() * 1000)
        lease_ms = int(self.options.visibility_timeout * 1000)
        calls: list[ScriptCall] = []
        for shard in range(self.keys.shards):
            calls.append(
                (self._take_due, [self.keys.timers(shard)], [now_ms, 200, now_ms + lease_ms])
            )
            deferred = [self.keys.deferred(shard), *self.keys.streams(shard)]
            calls.append((self._release_deferred, deferred, [now_ms, 100]))
        replies = run_scripts(self.client, calls)  # every shard (every node) at once
        for due in replies[::2]:
            self._fire(due)

    def _fire(self, due: list[Any]) -> None:
        for member in due:
            instance_id, timer_id = split_timer_member(_text(member))
            self.worker.stats.timers += 1
            try:
                self.worker.apply(instance_id, TimerFired(timer_id), fired_timer=timer_id)
            except (UnknownInstanceError, FencedError) as error:
                if self.store.drop_orphan_timer(instance_id, timer_id):
                    log.info("dropping timer %s: %s", timer_id, error)
            except Exception as error:  # this timer's problem: the others still fire
                self.health.failed(error)
                log.error(
                    "timer %s of %s could not fire (%s: %s); it fires again in %gs",
                    timer_id,
                    instance_id,
                    type(error).__name__,
                    error,
                    self.options.visibility_timeout,
                )

    # --- heartbeat ----------------------------------------------------------------------------

    def _heartbeat(self) -> None:
        """Long activities keep their messages (re-claiming resets the idle time); the
        worker's health goes to its heartbeat key, which expires unless renewed."""
        worker = self.worker
        with worker.in_flight_lock:
            running = list(worker.in_flight.items())
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
                worker.limits.renew(holder, message.flow, message.concurrency_key)
        self._keep_unanswered_reads()
        ttl_ms = int(max(3 * self.options.heartbeat_interval, 10.0) * 1000)
        self.client.set(
            self.keys.worker_health(self.options.name), json.dumps(self.report()), px=ttl_ms
        )

    def report(self) -> dict[str, Any]:
        """What ``rustyflower workers`` shows of this worker."""
        worker = self.worker
        return {
            "name": self.options.name,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": worker.started_at,
            "at": time.time(),
            "concurrency": self.options.concurrency,
            "activities": worker.registry.names(),
            "unknown_activity": self.options.unknown_activity,
            "routed_away": dict(worker.routed_away),
            "stats": asdict(worker.stats),
            **self.health.report(),
        }

    def sign_off(self) -> None:
        self.client.delete(self.keys.worker_health(self.options.name))

    def _keep_unanswered_reads(self) -> None:
        """A lane's commits still unanswered after a heartbeat interval (a long activity
        runs before their reply is read) carry a read the server has run: what it claimed
        is in the consumer's pending list, unknown to the thread yet. Each such message is
        claimed again by the same consumer, which resets its idle time, so that it is not
        reclaimed as a dead worker's and run twice."""
        for consumer, shard in self.worker.lanes.unanswered_reads(self.options.heartbeat_interval):
            for stream in self.keys.streams(shard):
                pending: Any = self.client.xpending_range(
                    stream, CONSUMER_GROUP, "-", "+", OWN_PENDING_MAX, consumername=consumer
                )
                ids: list[Any] = [entry["message_id"] for entry in pending]
                if ids:
                    self.client.xclaim(
                        stream, CONSUMER_GROUP, consumer, 0, message_ids=ids, justid=True
                    )

    # --- reclaiming ---------------------------------------------------------------------------

    def _reclaim(self) -> None:
        """Take over messages that another (dead) worker left unacknowledged too long."""
        for shard in range(self.keys.shards):
            for priority, stream in enumerate(self.keys.streams(shard)):
                self._reclaim_stream(shard, priority, stream, routed=False)
            for stream in self._my_routed_streams(shard):
                self._reclaim_stream(shard, 1, stream, routed=True)

    def _reclaim_stream(self, shard: int, priority: int, stream: str, routed: bool) -> None:
        idle_ms = int(self.options.visibility_timeout * 1000)
        response = self.client.xautoclaim(
            stream,
            CONSUMER_GROUP,
            f"{self.options.name}-reclaimer",
            min_idle_time=idle_ms,
            start_id="0-0",
            count=50,
        )
        worker = self.worker
        for message_id, fields in response[1]:
            if fields is None:
                continue
            with worker.in_flight_lock:
                mine = any(f.message_id == _text(message_id) for f in worker.in_flight.values())
            if mine:
                continue
            worker.stats.reclaimed += 1
            log.warning(
                "reclaiming message %s left unacknowledged by a stopped worker", _text(message_id)
            )
            ack = WorkAck(priority, _text(message_id), shard, stream if routed else None)
            worker.reclaimed.put(Reclaimed(ack, fields))

    # --- routed work (for activities other workers lack) ------------------------------------

    def _routed_here(self) -> list[str]:
        """Activities of this worker that some other worker has routed work to."""
        now = time.monotonic()
        if now - self._routed_checked >= ROUTED_NAMES_TTL:
            members = self.client.smembers(self.keys.routed_activities())
            self._routed_names = {_text(m) for m in members}
            self._routed_checked = now
        mine = set(self.worker.registry.names())
        return sorted(self._routed_names & mine)

    def _my_routed_streams(self, shard: int) -> list[str]:
        streams = [self.keys.activity_stream(shard, name) for name in self._routed_here()]
        for stream in streams:
            if stream not in self._routed_groups:
                try:
                    self.client.xgroup_create(stream, CONSUMER_GROUP, id="0", mkstream=True)
                except redis.ResponseError as error:
                    if "BUSYGROUP" not in str(error):
                        raise
                self._routed_groups.add(stream)
        return streams

    def _read_routed(self) -> None:
        """Hand routed work for this worker's activities to its executors."""
        worker = self.worker
        room = self.options.concurrency - worker.reclaimed.qsize()
        if room <= 0:
            return
        for shard in range(self.keys.shards):
            streams = self._my_routed_streams(shard)
            if not streams:
                continue
            response: Any = self.client.xreadgroup(
                CONSUMER_GROUP,
                f"{self.options.name}-routed",
                dict.fromkeys(streams, ">"),
                count=room,
            )
            for stream, entries in response or []:
                for message_id, fields in entries:
                    ack = WorkAck(1, _text(message_id), shard, _text(stream))
                    worker.reclaimed.put(Reclaimed(ack, fields))

    # --- retention ----------------------------------------------------------------------------

    def _trim(self) -> None:
        """Drop stream entries every consumer group has acknowledged."""
        streams: list[str] = []
        for shard in range(self.keys.shards):
            streams += self.keys.streams(shard)
            streams += [self.keys.activity_stream(shard, n) for n in self._routed_names]
        self.worker.stats.trimmed += self.store.trim_acknowledged(streams)

    def _retention(self) -> None:
        """Delete instances that finished more than ``retention_seconds`` ago."""
        retention = self.options.retention_seconds
        assert retention is not None
        cutoff = datetime.now(UTC) - timedelta(seconds=retention)
        deadline = time.monotonic() + PURGE_BUDGET_SECONDS
        self._purge_backlog = False
        while time.monotonic() < deadline:
            deleted = self.store.purge_finished(cutoff, limit=PURGE_BATCH)
            self.worker.stats.purged += deleted
            if deleted < PURGE_BATCH:
                return
        self._purge_backlog = True


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
