"""The flows' triggers in Azure (functions_azure/triggers.py): the real orchestrator on
the replay host, the signalled messages' markers in Azurite.

A queue message starts exactly one orchestration, named after the instance id the
message makes; delivered again, it starts none. An Event Grid event from a bus's topic
signals the instance it names once; delivered again, nothing is raised. The app
registers one queue function per trigger queue, and one Event Grid function.
"""

from __future__ import annotations

import asyncio
import uuid

import azure.durable_functions as df
import pytest

from functions_azure import triggers
from functions_azure.flows import FlowBundle
from functions_azure.function_app import app, register_triggers
from functions_azure.settings import AppSettings
from rustyflower.adapters.azure.ids import durable_instance_id
from rustyflower.adapters.localcloud.durable_client import LocalDurableClient
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
TOPICS = {"decisions": "https://decisions.westeurope-1.eventgrid.azure.net/api/events"}
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
            "topic": TOPIC_ID,
            "type": type_,
            "subject": "shop",
            "data": {"instance": "orders:new-orders@m-1", "by": "ann"},
        }

    asyncio.run(triggers.on_event(hearing, event("e-0", "order.held"), TOPICS))
    asyncio.run(triggers.on_event(hearing, event("e-1", "order.approved"), TOPICS))
    asyncio.run(triggers.on_event(hearing, event("e-1", "order.approved"), TOPICS))
    assert client.raised == [(durable_id, "approved", "ann")]
    host.run()
    finished = host.instances[durable_id]
    assert finished.status == "Completed"
    assert finished.output["output"] == {"o": 1, "approval": "ann"}
    # an event from another topic is no message of this bus
    other = {**event("e-2", "order.approved"), "topic": TOPIC_ID.replace("decisions", "x")}
    assert asyncio.run(triggers.on_event(hearing, other, TOPICS)) == []


def test_the_app_registers_a_function_per_trigger_queue_and_one_for_events() -> None:
    fresh = df.DFApp()
    names = register_triggers(fresh, FlowBundle([FLOW]), "svc-")
    assert names == ["rustyflower_trigger_queue_incoming", triggers.EVENT_FUNCTION]
    functions = {f.get_function_name(): f for f in fresh.get_functions()}
    queue = functions["rustyflower_trigger_queue_incoming"]
    binding = queue.get_trigger().get_dict_repr()
    assert (binding["type"], binding["queueName"], binding["connection"]) == (
        "queueTrigger",
        "svc-incoming",
        "AzureWebJobsStorage",
    )
    events = functions[triggers.EVENT_FUNCTION].get_trigger().get_dict_repr()
    assert events["type"] == "eventGridTrigger"
    assert register_triggers(df.DFApp(), FlowBundle([]), "svc-") == []
