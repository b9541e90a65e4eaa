"""The flows' triggers in Azure: Storage Queue and Event Grid functions of the app.

The triggers are those of the flows the app ships (``RUSTYFLOWER_FLOWS_PATH``, their
latest versions). ``function_app.py`` registers one queue-triggered function per queue a
trigger listens to (queue ``RUSTYFLOWER_SERVICES_PREFIX`` + name, in the storage account
of the service tasks) and one Event Grid function per bus a trigger listens to
(``rustyflower_trigger_events_<bus>``: subscribe the bus's topic to it). The function is
the bus: an event of the CloudEvents schema, which ``event.publish`` sends, names no topic
(its ``source`` is the publisher's), so the subscription says where it came from. Both
schemas are heard (:func:`event_document`). What a message does is
``core.triggers.trigger_action``'s decision:

* start: the orchestration ``<flow>:<trigger>@<message id>`` (its Durable id), from the
  snapshot ``core.engine.start`` makes, unless an orchestration of that id is known in
  any state (the extension would start an id again over one that ended, failed or
  terminated included); a message delivered again finds it there and starts nothing;
* signal: the event raised to the instance the message names, once per message id (a
  marker blob ``<prefix>triggers/<flow>/<trigger>/<id>``, created only if absent, goes
  first);
* ignore: logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from functions_azure.flows import FlowBundle
from functions_azure.http_api import runtime_status
from functions_azure.payloads import Options, OrchestrationInput, snapshot_text
from functions_azure.settings import ORCHESTRATOR, AppSettings
from rustyflower.adapters.azure.ids import durable_instance_id
from rustyflower.core.engine import start
from rustyflower.core.model import FlowDefinition, Trigger
from rustyflower.core.triggers import TriggerAction, event_message, queue_message, trigger_action

log = logging.getLogger("rustyflower.triggers")

EVENT_FUNCTION_PREFIX = "rustyflower_trigger_events_"
"""The Event Grid functions' names, before the bus (subscribe each bus's topic to its own)."""
MARKER_CONTAINER = "triggers"
"""The container (after the services' prefix) of the signalled messages' markers."""


class DurableClient(Protocol):
    async def get_status(self, instance_id: str) -> Any: ...

    async def start_new(self, name: str, instance_id: str, client_input: Any) -> Any: ...

    async def raise_event(self, instance_id: str, event_name: str, event_data: Any) -> Any: ...


FirstTime = Callable[[str], bool]
"""Record a marker; True the first time."""


@dataclass(frozen=True)
class Hearing:
    """What carrying out a message needs: the shipped flows, the Durable client, the
    markers of signalled messages, the app settings."""

    flows: FlowBundle
    client: DurableClient
    first_time: FirstTime
    settings: AppSettings


@dataclass(frozen=True)
class AppTrigger:
    definition: FlowDefinition
    trigger: Trigger


def app_triggers(flows: FlowBundle) -> list[AppTrigger]:
    """The triggers of the latest version of each flow the app ships."""
    latest: dict[str, FlowDefinition] = {}
    for definition in flows.definitions():
        found = flows.find(definition.name, None)
        if found is not None:
            latest[found.name] = found
    return [AppTrigger(d, t) for d in latest.values() for t in d.triggers]


def trigger_queues(flows: FlowBundle) -> list[str]:
    """The queues the app's queue triggers listen to (names before the prefix)."""
    return sorted({t.trigger.resource for t in app_triggers(flows) if t.trigger.source == "queue"})


def trigger_buses(flows: FlowBundle) -> list[str]:
    """The buses the app's events triggers listen to."""
    return sorted({t.trigger.resource for t in app_triggers(flows) if t.trigger.source == "events"})


def event_function(bus: str) -> str:
    """The name of the Event Grid function of ``bus``."""
    return EVENT_FUNCTION_PREFIX + bus.replace("-", "_")


def event_document(event: Any) -> dict[str, Any]:
    """What :func:`on_event` reads of an event the worker decoded: an
    ``azure.functions.CloudEvent`` (CloudEvents schema: ``type``, ``source``) or an
    ``azure.functions.EventGridEvent`` (Event Grid schema: ``event_type``, ``subject``)."""
    if getattr(event, "specversion", None):
        type_, source = event.type, event.source
    else:
        type_, source = event.event_type, event.subject
    return {"id": event.id, "type": type_, "source": source, "data": event.get_json()}


async def on_queue_message(
    hearing: Hearing, queue: str, message_id: str, body: str | bytes
) -> list[TriggerAction]:
    """Carry out a queue message for every trigger on ``queue``; what each did."""
    message = queue_message(body)
    done = []
    for found in app_triggers(hearing.flows):
        if found.trigger.source == "queue" and found.trigger.resource == queue:
            action = trigger_action(found.definition.name, found.trigger, message_id, message)
            await carry_out(hearing, found, message_id, action)
            done.append(action)
    return done


async def on_event(hearing: Hearing, bus: str, event: Mapping[str, Any]) -> list[TriggerAction]:
    """Carry out an event of ``bus`` (:func:`event_document`: ``id``, ``type``, ``source``,
    ``data``) for every events trigger on the bus."""
    message = event_message(
        str(event.get("type") or ""), str(event.get("source") or ""), event.get("data")
    )
    message_id = str(event.get("id") or "")
    done = []
    for found in app_triggers(hearing.flows):
        if found.trigger.source == "events" and found.trigger.resource == bus:
            action = trigger_action(found.definition.name, found.trigger, message_id, message)
            await carry_out(hearing, found, message_id, action)
            done.append(action)
    return done


async def carry_out(
    hearing: Hearing, found: AppTrigger, message_id: str, action: TriggerAction
) -> None:
    client, settings = hearing.client, hearing.settings
    key = f"{found.definition.name}/{found.trigger.name}"
    if action.kind == "ignore":
        log.info("trigger %s ignores message %s: %s", key, message_id, action.reason)
        return
    durable_id = durable_instance_id(action.instance_id)
    if action.kind == "signal":
        assert action.event is not None
        if not hearing.first_time(f"{key}/{message_id}"):
            return  # delivered again: signalled already
        await client.raise_event(durable_id, action.event, action.data)
        return
    if runtime_status(await client.get_status(durable_id)) is not None:
        return  # delivered again: started already (also if it failed or was terminated)
    transition = start(found.definition, action.data, action.instance_id, datetime.now(UTC))
    bundle = hearing.flows.reachable_from(found.definition)
    payload = OrchestrationInput(
        snapshot=snapshot_text(transition.snapshot),
        flows=tuple(bundle.documents()),
        options=Options(
            continue_as_new_after=settings.continue_as_new_after,
            checkpoint_every=settings.checkpoint_every,
        ),
    )
    try:
        await client.start_new(ORCHESTRATOR, durable_id, payload.to_json())
    except Exception:
        # a concurrent delivery won the race: it started the same instance
        if runtime_status(await client.get_status(durable_id)) is None:
            raise


def blob_first_time(container: Any) -> FirstTime:
    """:data:`FirstTime` as a marker blob created only if absent (``container``: an
    azure-storage-blob ContainerClient). The container is made on first use: nothing
    deploys it (Bicep makes the flows' stores only)."""

    def record(name: str) -> bool:
        from azure.core.exceptions import (  # noqa: PLC0415
            ResourceExistsError,
            ResourceNotFoundError,
        )

        try:
            container.upload_blob(name, b"", overwrite=False)
        except ResourceExistsError:
            return False
        except ResourceNotFoundError:
            with suppress(ResourceExistsError):  # another delivery made it first
                container.create_container()
            try:
                container.upload_blob(name, b"", overwrite=False)
            except ResourceExistsError:
                return False
        return True

    return record
