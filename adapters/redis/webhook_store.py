"""Webhooks in Redis: the subscriptions, the deliveries due, and what each delivery did.

The commit that finishes an instance appends a ``finished`` event to its shard's flow
event stream (``observing``). A dispatcher (the HTTP API's, ``adapters.web.webhooks``)
reads those streams through the consumer group ``webhooks``, turns each event into one
delivery task per matching subscription, and only then acknowledges the event, so the
event of a dispatcher that dies in between is taken over by another (or by it, started
again) once it has been pending for ``STALE_SECONDS``; the tasks written twice are
identical and not doubled (a task's id is the event's id and the hook's).

Tasks wait in one sorted set scored by when they are due. Taking a task leases it (its
score moves to the lease's end) instead of removing it, so a task whose dispatcher died
is delivered by another after the lease: delivery is at least once, and every delivery
carries its id for the receiver to drop repeats.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from rustyflower.adapters.redis.keys import Keyspace
from rustyflower.core.errors import RustyFlowerError

GROUP = "webhooks"
STATUSES = ("succeeded", "failed", "cancelled")
STALE_SECONDS = 60.0
"""An event read and not acknowledged for this long is taken over by another dispatcher."""
DELIVERIES_KEPT = 100
"""Per subscription, the latest delivery attempts kept for ``deliveries``."""

# Take due tasks with a lease (as the timers are taken): re-scored, not removed.
_TAKE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], 'XX', ARGV[3], member) end
return due
"""


class UnknownWebhookError(RustyFlowerError):
    """No webhook subscription has that id."""


@dataclass(frozen=True)
class Webhook:
    """A subscription: POST to ``url`` when an instance of ``flows`` (all when empty)
    finishes with one of ``events`` (statuses), signed with ``secret``."""

    id: str
    url: str
    events: tuple[str, ...]
    flows: tuple[str, ...]
    secret: str
    created_at: float

    def wants(self, flow: str, status: str) -> bool:
        return status in self.events and (not self.flows or flow in self.flows)

    def public(self) -> dict[str, Any]:
        """What listings show: everything but the secret."""
        return {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "flows": list(self.flows),
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class DeliveryTask:
    """One delivery of one event to one subscription; ``attempt`` counts from 1."""

    id: str
    hook: str
    payload: Mapping[str, Any]
    attempt: int = 1

    def encode(self) -> str:
        return json.dumps(
            {"id": self.id, "hook": self.hook, "payload": self.payload, "attempt": self.attempt},
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> DeliveryTask:
        value = json.loads(raw)
        return cls(value["id"], value["hook"], value["payload"], int(value["attempt"]))


@dataclass(frozen=True)
class FinishedEvent:
    """A ``finished`` entry of a flow event stream (``observing``)."""

    shard: int
    entry_id: str
    fields: Mapping[str, Any] = field(default_factory=dict)


class WebhookStore:
    def __init__(self, client: redis.Redis, keys: Keyspace) -> None:
        self.client = client
        self.keys = keys
        self._take_due = client.register_script(_TAKE_DUE)

    # --- keys (global: none of them is written with a transition) --------------------------

    @property
    def _hooks(self) -> str:
        return f"{self.keys.prefix}:webhooks"

    @property
    def _due(self) -> str:
        return f"{self.keys.prefix}:webhooks:due"

    def _log(self, hook_id: str) -> str:
        return f"{self.keys.prefix}:webhooks:log:{hook_id}"

    # --- subscriptions --------------------------------------------------------------------

    def add(
        self,
        url: str,
        *,
        events: Iterable[str] = STATUSES,
        flows: Iterable[str] = (),
        secret: str | None = None,
    ) -> Webhook:
        chosen = tuple(dict.fromkeys(events))
        unknown = [event for event in chosen if event not in STATUSES]
        if unknown or not chosen:
            raise ValueError(f"events: use some of {', '.join(STATUSES)}")
        hook = Webhook(
            id=f"wh_{secrets.token_hex(8)}",
            url=url,
            events=chosen,
            flows=tuple(dict.fromkeys(flows)),
            secret=secret or secrets.token_urlsafe(32),
            created_at=time.time(),
        )
        record = hook.public() | {"secret": hook.secret}
        self.client.hset(self._hooks, hook.id, json.dumps(record))
        self.ensure_groups()
        return hook

    def get(self, hook_id: str) -> Webhook:
        raw = self.client.hget(self._hooks, hook_id)
        if raw is None:
            raise UnknownWebhookError(f"no webhook {hook_id!r}")
        return _hook(json.loads(raw))

    def all(self) -> list[Webhook]:
        hooks = [_hook(json.loads(raw)) for raw in self.client.hvals(self._hooks)]
        return sorted(hooks, key=lambda hook: (hook.created_at, hook.id))

    def remove(self, hook_id: str) -> None:
        if not self.client.hdel(self._hooks, hook_id):
            raise UnknownWebhookError(f"no webhook {hook_id!r}")
        self.client.delete(self._log(hook_id))

    # --- the feed of finished instances ---------------------------------------------------

    def ensure_groups(self) -> None:
        """The ``webhooks`` group on every flow event stream, reading what comes from now on."""
        for shard in range(self.keys.shards):
            try:
                self.client.xgroup_create(
                    self.keys.flow_events(shard), GROUP, id="$", mkstream=True
                )
            except redis.ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise

    def read_finished(
        self, consumer: str, count: int = 100, *, stale_after: float | None = None
    ) -> list[FinishedEvent]:
        """Events of the flow streams not yet handled: new ones, or (``stale_after``
        seconds) those some dispatcher read that long ago and never acknowledged (it died
        mid-way), taken over by ``consumer``."""
        found: list[FinishedEvent] = []
        for shard in range(self.keys.shards):
            stream = self.keys.flow_events(shard)
            if stale_after is None:
                reply: Any = self.client.xreadgroup(GROUP, consumer, {stream: ">"}, count=count)
                entries = [entry for _name, batch in reply or [] for entry in batch]
            else:
                claimed: Any = self.client.xautoclaim(
                    stream, GROUP, consumer, int(stale_after * 1000), "0-0", count=count
                )
                entries = claimed[1]
            for entry_id, fields in entries:
                if fields is None:  # trimmed away while pending
                    self.client.xack(stream, GROUP, entry_id)
                    continue
                raw = fields.get(b"e") or fields.get("e") or b"{}"
                try:
                    event = json.loads(raw)
                except ValueError:
                    event = {}
                found.append(FinishedEvent(shard, _text(entry_id), event))
        return found

    def enqueue(self, event: FinishedEvent, tasks: Iterable[DeliveryTask]) -> None:
        """Make the event's deliveries due now, then acknowledge the event (in that order)."""
        now = _millis()
        pipe = self.client.pipeline(transaction=False)
        for task in tasks:
            pipe.zadd(self._due, {task.encode(): now}, nx=True)
        pipe.xack(self.keys.flow_events(event.shard), GROUP, event.entry_id)
        pipe.execute()

    # --- deliveries -----------------------------------------------------------------------

    def take_due(self, limit: int, lease_seconds: float) -> list[DeliveryTask]:
        now = _millis()
        due = self._take_due(keys=[self._due], args=[now, limit, now + int(lease_seconds * 1000)])
        return [DeliveryTask.decode(member) for member in due]

    def settle(self, task: DeliveryTask, record: Mapping[str, Any], retry_at: float | None) -> None:
        """Record an attempt; then drop the task, or put its next attempt due at
        ``retry_at`` (epoch seconds), in one step."""
        pipe = self.client.pipeline(transaction=True)
        pipe.zrem(self._due, task.encode())
        if retry_at is not None:
            again = DeliveryTask(task.id, task.hook, task.payload, task.attempt + 1)
            pipe.zadd(self._due, {again.encode(): int(retry_at * 1000)})
        pipe.lpush(self._log(task.hook), json.dumps(dict(record)))
        pipe.ltrim(self._log(task.hook), 0, DELIVERIES_KEPT - 1)
        pipe.execute()

    def drop(self, task: DeliveryTask) -> None:
        """A task whose subscription is gone."""
        self.client.zrem(self._due, task.encode())

    def deliveries(self, hook_id: str, limit: int = DELIVERIES_KEPT) -> list[dict[str, Any]]:
        """The latest delivery attempts of a subscription, newest first."""
        self.get(hook_id)
        return [json.loads(raw) for raw in self.client.lrange(self._log(hook_id), 0, limit - 1)]

    def backlog(self) -> int:
        """Deliveries waiting (due now or later: retries)."""
        return int(self.client.zcard(self._due))


def _hook(value: Mapping[str, Any]) -> Webhook:
    return Webhook(
        id=str(value["id"]),
        url=str(value["url"]),
        events=tuple(value.get("events") or STATUSES),
        flows=tuple(value.get("flows") or ()),
        secret=str(value["secret"]),
        created_at=float(value.get("created_at") or 0.0),
    )


def _millis() -> int:
    return int(time.time() * 1000)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
