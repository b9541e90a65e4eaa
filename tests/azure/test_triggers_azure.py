"""The flows' triggers in Azure (functions_azure/triggers.py): the real orchestrator on
the replay host, the signalled messages' markers in Azurite.

A queue message starts exactly one orchestration, named after the instance id the
message makes; delivered again, it starts none. An Event Grid event from a bus's topic
signals the instance it names once; delivered again, nothing is raised. The app
registers one queue function per trigger queue, and one Event Grid function.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import pytest
from azure.core.messaging import CloudEvent
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.queue import QueueMessageInConverter

from functions_azure import function_app, triggers
from functions_azure.flows import FlowBundle
from functions_azure.function_app import app, register_triggers
from functions_azure.payloads import OrchestrationInput, snapshot_from_text
from functions_azure.settings import AppSettings
from rustyflower.adapters.azure.ids import durable_instance_id
from rustyflower.adapters.localcloud.durable_client import LocalDurableClient
from rustyflower.adapters.localcloud.durable_history import functions_of
from rustyflower.adapters.localcloud.durable_host import DurableHost
from rustyflower.core.model import parse_definition
from tests.azure.azurite import (  # noqa: F401 - pytest fixtures used by name
    azurite_connection_string_fixture,
    azurite_fixture,
)

pytestmark = [pytest.mark.emulator, pytest.mark.usefixtures("azure_env")]

FLOW = parse_definition(
    {
        "name": "orders",
        "start_at": "Approve",
        "states": {
            "Approve": {
                "type": "wait_for_event",
                "event": "approved",
                "result_path": "$.approval",
                "end": True,
            }
        },
        "triggers": [
            {"name": "new-orders", "source": "queue", "queue": "incoming"},
            {
                "name": "approvals",
                "source": "events",
                "bus": "decisions",
                "type": "order.approved",
                "action": "signal",
                "event": "approved",
                "instance_path": "$.detail.instance",
                "input_path": "$.detail.by",
            },
        ],
    }
)
TOPIC_ID = "/subscriptions/s/resourceGroups/g/providers/Microsoft.EventGrid/topics/decisions"


def test_a_message_starts_one_orchestration_and_an_event_signals_it_once(
    azurite_connection_string: str,
) -> None:
    from azure.storage.blob import ContainerClient  # noqa: PLC0415

    container = ContainerClient.from_connection_string(
        azurite_connection_string, f"triggers-{uuid.uuid4().hex[:8]}"
    )
    container.create_container()
    host = DurableHost(app)
    client = LocalDurableClient(host)
    hearing = triggers.Hearing(
        FlowBundle([FLOW]), client, triggers.blob_first_time(container), AppSettings()
    )

    def hear(message_id: str) -> None:
        asyncio.run(triggers.on_queue_message(hearing, "incoming", message_id, b'{"o": 1}'))

    hear("m-1")
    hear("m-1")  # delivered again
    durable_id = durable_instance_id("orders:new-orders@m-1")
    assert client.started == [durable_id]
    host.run()
    assert host.instances[durable_id].custom_status["positions"] == ["Approve"]

    def event(event_id: str, type_: str) -> dict[str, object]:
        return {
            "id": event_id,
            "type": type_,
            "source": "shop",
            "data": {"instance": "orders:new-orders@m-1", "by": "ann"},
        }

    asyncio.run(triggers.on_event(hearing, "decisions", event("e-0", "order.held")))
    asyncio.run(triggers.on_event(hearing, "decisions", event("e-1", "order.approved")))
    asyncio.run(triggers.on_event(hearing, "decisions", event("e-1", "order.approved")))
    assert client.raised == [(durable_id, "approved", "ann")]
    host.run()
    finished = host.instances[durable_id]
    assert finished.status == "Completed"
    assert finished.output["output"] == {"o": 1, "approval": "ann"}
    # an event of another bus is no message of the trigger
    assert asyncio.run(triggers.on_event(hearing, "other", event("e-2", "order.approved"))) == []


def test_the_app_registers_a_function_per_trigger_queue_and_per_bus() -> None:
    fresh = df.DFApp()
    names = register_triggers(fresh, FlowBundle([FLOW]), "svc-")
    assert names == ["rustyflower_trigger_queue_incoming", "rustyflower_trigger_events_decisions"]
    functions = {f.get_function_name(): f for f in fresh.get_functions()}
    queue = functions["rustyflower_trigger_queue_incoming"]
    binding = queue.get_trigger().get_dict_repr()
    assert (binding["type"], binding["queueName"], binding["connection"]) == (
        "queueTrigger",
        "svc-incoming",
        "AzureWebJobsStorage",
    )
    events = functions[triggers.event_function("decisions")].get_trigger().get_dict_repr()
    assert events["type"] == "eventGridTrigger"
    assert register_triggers(df.DFApp(), FlowBundle([]), "svc-") == []


# --- an event starts a flow: the real Event Grid function, events as the worker decodes them

SHIPPING = {
    "name": "shipping",
    "start_at": "Ship",
    "states": {
        "Ship": {
            "type": "wait_for_event",
            "event": "shipped",
            "result_path": "$.shipped",
            "end": True,
        }
    },
    "triggers": [
        {"name": "on-approval", "source": "events", "bus": "decisions", "type": "order.approved"},
        {"name": "from-queue", "source": "queue", "queue": "shipments"},
    ],
}
EVENT_FUNCTION = triggers.event_function("decisions")


@dataclass
class EventApp:
    """A Function App shipping SHIPPING, its functions, the replay host and a client."""

    functions: dict[str, Any]
    host: DurableHost
    client: LocalDurableClient

    def deliver(self, body: dict[str, Any]) -> None:
        """What the Functions host does with one event of a subscription's delivery: the
        worker decodes its JSON (the SDK's converter: an EventGridEvent, or a CloudEvent
        for the CloudEvents schema) and calls the function with it and a Durable client."""
        datum = meta.Datum(json.dumps(body), "json")
        event = EventGridEventInConverter.decode(datum, trigger_metadata={})
        user = self.functions[EVENT_FUNCTION].get_user_function()
        asyncio.run(user.client_function(event=event, client=self.client))

    def deliver_message(self, message_id: str, body: bytes) -> None:
        """What the host does with a Storage Queue message: the worker decodes it (the
        SDK's converter, with the trigger metadata the host sends) for the queue function."""
        metadata = {"Id": meta.Datum(message_id, "string"), "DequeueCount": meta.Datum(1, "int")}
        message = QueueMessageInConverter.decode(
            meta.Datum(body, "bytes"), trigger_metadata=metadata
        )
        user = self.functions["rustyflower_trigger_queue_shipments"].get_user_function()
        asyncio.run(user.client_function(msg=message, client=self.client))

    def started_input(self, durable_id: str) -> Any:
        """The flow input of the orchestration's starting snapshot."""
        payload = OrchestrationInput.from_json(json.loads(self.host.instances[durable_id].input))
        return snapshot_from_text(payload.snapshot).state.input


@pytest.fixture
def event_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, azurite_connection_string: str
) -> Iterator[EventApp]:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "shipping.json").write_text(json.dumps(SHIPPING))
    monkeypatch.setenv("RUSTYFLOWER_FLOWS_PATH", str(flows))
    monkeypatch.setenv("RUSTYFLOWER_SERVICES_CONNECTION", azurite_connection_string)
    monkeypatch.setenv("RUSTYFLOWER_SERVICES_PREFIX", f"t{uuid.uuid4().hex[:8]}-")
    function_app.trigger_markers.cache_clear()
    fresh = df.DFApp()
    register_triggers(fresh, function_app.shipped_flows(str(flows)), "svc-")
    host = DurableHost(app)
    yield EventApp(functions_of(fresh), host, LocalDurableClient(host))
    function_app.trigger_markers.cache_clear()


def grid_event(event_id: str, type_: str, data: Any) -> dict[str, Any]:
    """An event of the Event Grid schema, as a subscription delivers it."""
    return {
        "id": event_id,
        "topic": TOPIC_ID,
        "subject": "shop",
        "eventType": type_,
        "eventTime": "2026-12-05T07:00:00.0000000Z",
        "data": data,
        "dataVersion": "1.0",
        "metadataVersion": "1",
    }


def cloud_event(source: str, type_: str, data: Any, key: str) -> dict[str, Any]:
    """The CloudEvent the service task event.publish sends (adapters/azure/services.py: an
    azure.core CloudEvent, its id made from the call's key), as a subscription of a
    CloudEvents topic delivers it: the event's attributes as JSON, nothing added."""
    made = CloudEvent(source=source, type=type_, data=data)
    made.id = str(uuid.uuid5(uuid.NAMESPACE_URL, key))
    assert made.time is not None
    return {
        "specversion": made.specversion,
        "id": made.id,
        "source": made.source,
        "type": made.type,
        "time": made.time.isoformat(),
        "data": made.data,
    }


def test_an_event_grid_event_starts_one_orchestration_and_redelivery_none(
    event_app: EventApp,
) -> None:
    detail = {"order": "A-1", "by": "ann"}
    event_app.deliver(grid_event("e-0", "order.rejected", detail))
    assert event_app.client.started == []  # another type: no event of the trigger
    first = grid_event("e-1", "order.approved", detail)
    event_app.deliver(first)
    durable_id = durable_instance_id("shipping:on-approval@e-1")
    assert event_app.client.started == [durable_id]
    expected = {"type": "order.approved", "source": "shop", "detail": detail}
    assert event_app.started_input(durable_id) == expected

    event_app.deliver(first)  # delivered again (Event Grid retries: the same event id)
    event_app.host.run()
    assert event_app.host.instances[durable_id].custom_status["positions"] == ["Ship"]
    event_app.deliver(first)
    asyncio.run(event_app.client.raise_event(durable_id, "shipped", True))
    event_app.host.run()
    finished = event_app.host.instances[durable_id]
    assert finished.status == "Completed"
    assert finished.output["output"] == {**expected, "shipped": True}
    event_app.deliver(first)  # after it completed
    assert event_app.client.started == [durable_id]


def test_an_event_whose_orchestration_ended_badly_starts_nothing_again(
    event_app: EventApp,
) -> None:
    """The extension would start an instance id again over one that ended (the replay
    host does, as its start API): a redelivered event must not, also over a terminated
    one (the trigger used to count only running and completed ones as started)."""
    event = grid_event("e-7", "order.approved", {"order": "A-7"})
    event_app.deliver(event)
    durable_id = durable_instance_id("shipping:on-approval@e-7")
    event_app.host.run()
    assert event_app.host.terminate(durable_id, "by hand") == 202
    event_app.deliver(event)
    assert event_app.client.started == [durable_id]
    assert event_app.host.instances[durable_id].status == "Terminated"


def test_the_cloud_event_event_publish_sends_starts_one_orchestration(
    event_app: EventApp,
) -> None:
    detail = {"order": "B-1"}
    sent = cloud_event("rustyflower", "order.approved", detail, "call-1")
    event_app.deliver(sent)
    durable_id = durable_instance_id(f"shipping:on-approval@{sent['id']}")
    assert event_app.client.started == [durable_id]
    assert event_app.started_input(durable_id) == {
        "type": "order.approved",
        "source": "rustyflower",
        "detail": detail,
    }
    event_app.deliver(sent)  # delivered again
    event_app.deliver(cloud_event("rustyflower", "order.rejected", detail, "call-2"))
    assert event_app.client.started == [durable_id]


def test_a_queue_message_through_the_queue_function_starts_one_orchestration(
    event_app: EventApp,
) -> None:
    event_app.deliver_message("m-1", b'{"order": "Q-1"}')
    event_app.deliver_message("m-1", b'{"order": "Q-1"}')  # visible again: delivered again
    durable_id = durable_instance_id("shipping:from-queue@m-1")
    assert event_app.client.started == [durable_id]
    assert event_app.started_input(durable_id) == {"order": "Q-1"}


def test_the_signalled_markers_container_is_made_on_first_use(
    azurite_connection_string: str,
) -> None:
    """Nothing deploys ``<prefix>triggers`` (Bicep makes the flows' stores only): the
    first marker makes it, or no signal trigger could ever deliver."""
    from azure.storage.blob import ContainerClient  # noqa: PLC0415

    container = ContainerClient.from_connection_string(
        azurite_connection_string, f"t{uuid.uuid4().hex[:8]}-triggers"
    )
    assert not container.exists()
    first_time = triggers.blob_first_time(container)
    assert first_time("orders/approvals/e-1") is True
    assert first_time("orders/approvals/e-1") is False
    assert first_time("orders/approvals/e-2") is True
