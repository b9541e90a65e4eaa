"""The flows' triggers on the site: Redis streams heard by the workers.

A trigger on queue ``orders`` reads the stream ``queue.send`` writes (``<prefix>:{queue:
orders}``), one on bus ``orders`` the bus's pub-stream (adapters/services/onprem.py),
each through a consumer group of its own (``trigger:<flow>:<trigger>``), so every worker
can listen and each message is handled by one of them; a message is acknowledged once
handled, and one a dead worker had taken is claimed again after the visibility timeout.
What a message does is ``core.triggers.trigger_action``'s decision:

* start: ``Conductor.start`` with the instance id the message makes; a message delivered
  again finds that instance and starts nothing;
* signal: the event to the instance the message names, once per message id (remembered
  next to the stream for a day);
* ignore: logged, acknowledged.

A group is created at the end of its stream when a worker first sees the trigger (the
flow registered with it): messages sent before a trigger existed do not start flows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis

from rustyflower.adapters.redis.conductor import Conductor
from rustyflower.adapters.redis.store import RedisStore
from rustyflower.adapters.services.onprem import event_stream, queue_stream
from rustyflower.core.errors import EventRejectedError, RustyFlowerError
from rustyflower.core.model import FlowDefinition, Trigger
from rustyflower.core.triggers import (
    TriggerAction,
    event_message,
    queue_message,
    trigger_action,
)

log = logging.getLogger("rustyflower.triggers")

SIGNALLED_TTL_SECONDS = 86_400
REFRESH_SECONDS = 5.0
BATCH = 32


def trigger_group(flow: str, trigger: str) -> str:
    return f"trigger:{flow}:{trigger}"


def trigger_stream(prefix: str, trigger: Trigger) -> str:
    if trigger.source == "queue":
        return queue_stream(prefix, trigger.resource)
    return event_stream(prefix, trigger.resource)


@dataclass(frozen=True)
class Listening:
    definition: FlowDefinition
    trigger: Trigger
    stream: str
    group: str


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class TriggerListener:
    """Hears the triggers of the store's flows (their latest versions)."""

    def __init__(
        self,
        store: RedisStore,
        conductor: Conductor,
        consumer: str,
        *,
        visibility_timeout: float = 30.0,
    ) -> None:
        self.store = store
        self.client: redis.Redis = store.client
        self.prefix = store.keys.prefix
        self.conductor = conductor
        self.consumer = consumer
        self.visibility_ms = int(visibility_timeout * 1000)
        self.listening: list[Listening] = []
        self._refreshed = float("-inf")
        self.handled = 0

    def refresh(self) -> None:
        """Find the triggers of the registered flows; create their groups."""
        found: list[Listening] = []
        for flow in self.store.flows():
            if not flow["latest"]:
                continue
            definition = self.store.definition(flow["name"])
            for trigger in definition.triggers:
                stream = trigger_stream(self.prefix, trigger)
                group = trigger_group(definition.name, trigger.name)
                try:
                    self.client.xgroup_create(stream, group, id="$", mkstream=True)
                except redis.ResponseError as error:
                    if "BUSYGROUP" not in str(error):
                        raise
                found.append(Listening(definition, trigger, stream, group))
        self.listening = found
        self._refreshed = time.monotonic()

    def round(self) -> int:
        """Handle what has arrived (and what a dead worker left); the messages handled."""
        if time.monotonic() - self._refreshed >= REFRESH_SECONDS:
            self.refresh()
        handled = 0
        for listening in self.listening:
            for entry_id, fields in self._entries(listening):
                self.handle(listening, entry_id, fields)
                self.client.xack(listening.stream, listening.group, entry_id)
                handled += 1
        self.handled += handled
        return handled

    def _entries(self, listening: Listening) -> Iterator[tuple[str, dict[Any, Any]]]:
        claimed: Any = self.client.xautoclaim(
            listening.stream,
            listening.group,
            self.consumer,
            min_idle_time=self.visibility_ms,
            start_id="0-0",
            count=BATCH,
        )
        for entry_id, fields in claimed[1]:
            if fields:  # a deleted entry comes back empty: nothing to hear
                yield _text(entry_id), fields
        read: Any = self.client.xreadgroup(
            listening.group, self.consumer, {listening.stream: ">"}, count=BATCH
        )
        for _, entries in read or []:
            for entry_id, fields in entries:
                yield _text(entry_id), fields

    def handle(self, listening: Listening, entry_id: str, fields: dict[Any, Any]) -> None:
        trigger = listening.trigger
        values = {_text(key): _text(value) for key, value in fields.items()}
        if trigger.source == "queue":
            message = queue_message(values.get("body", ""))
        else:
            message = event_message(
                values.get("type", ""),
                values.get("source", ""),
                queue_message(values.get("detail", "null")),
            )
        action = trigger_action(listening.definition.name, trigger, entry_id, message)
        try:
            self.carry_out(listening, entry_id, action)
        except (EventRejectedError, RustyFlowerError) as error:
            # nothing waits, unknown instance, ...: a retry would not do better
            log.warning("trigger %s: message %s: %s", listening.group, entry_id, error)

    def carry_out(self, listening: Listening, entry_id: str, action: TriggerAction) -> None:
        if action.kind == "ignore":
            log.info("trigger %s ignores message %s: %s", listening.group, entry_id, action.reason)
        elif action.kind == "start":
            self.conductor.start(
                listening.definition.name, action.data, instance_id=action.instance_id
            )
        else:
            assert action.event is not None
            seen = f"{listening.stream}:signalled:{listening.group}:{entry_id}"
            if not self.client.set(seen, "1", nx=True, ex=SIGNALLED_TTL_SECONDS):
                return  # delivered again: signalled already
            try:
                self.conductor.signal(action.instance_id, action.event, action.data)
            except Exception:
                self.client.delete(seen)  # not delivered: a later try may
                raise
