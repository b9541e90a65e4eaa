"""examples/intake on the local Azure: the app's queue trigger function's work, the real
orchestrator on the replay host, the service tasks on Azurite's queues and blobs,
unchanged from the site and AWS."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from examples.intake.activities import registry as intake_activities
from functions_azure import activity as activity_function
from functions_azure import triggers
from functions_azure.flows import FlowBundle
from functions_azure.function_app import app
from functions_azure.settings import AppSettings
from rustyflower.adapters.azure.ids import durable_instance_id
from rustyflower.adapters.localcloud.durable_client import LocalDurableClient
from rustyflower.adapters.localcloud.durable_host import DurableHost
from rustyflower.core.model import load_definition
from tests.azure.azurite import ACCOUNT, ACCOUNT_KEY, Azurite, AzuriteNotInstalled
from tests.tooling import missing_tool

pytestmark = [pytest.mark.emulator, pytest.mark.usefixtures("azure_env")]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "intake"


@pytest.fixture(scope="module")
def storage() -> Iterator[str]:
    try:
        blob, queue = Azurite(service="blob"), Azurite(service="queue")
    except AzuriteNotInstalled as missing:
        missing_tool(str(missing))
    with blob, queue:
        yield (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={blob.endpoint};QueueEndpoint={queue.endpoint};"
        )


def test_intake_runs_unchanged_on_the_local_azure(
    storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.storage.blob import BlobServiceClient  # noqa: PLC0415
    from azure.storage.queue import QueueServiceClient  # noqa: PLC0415

    prefix = f"x{uuid.uuid4().hex[:6]}-"
    queues = QueueServiceClient.from_connection_string(storage)
    blobs = BlobServiceClient.from_connection_string(storage)
    for name in ("intake-requests", "intake-scored"):
        queues.create_queue(prefix + name)
    blobs.create_container(prefix + "intake-archive")
    markers = blobs.create_container(prefix + triggers.MARKER_CONTAINER)
    monkeypatch.setenv("RUSTYFLOWER_ACTIVITIES", "examples.intake.activities")
    monkeypatch.setenv("RUSTYFLOWER_SERVICES_CONNECTION", storage)
    monkeypatch.setenv("RUSTYFLOWER_SERVICES_PREFIX", prefix)
    activity_function.registry_for.cache_clear()
    try:
        definition = intake_activities.apply_defaults(
            load_definition((EXAMPLE / "flow.yaml").read_text())
        )
        request = json.loads((EXAMPLE / "input.json").read_text())
        host = DurableHost(app)
        client = LocalDurableClient(host)
        hearing = triggers.Hearing(
            FlowBundle([definition]), client, triggers.blob_first_time(markers), AppSettings()
        )
        body = json.dumps(request).encode()
        for _ in range(2):  # a Storage Queue delivers at least once
            asyncio.run(triggers.on_queue_message(hearing, "intake-requests", "q-1", body))
        durable_id = durable_instance_id("intake:new-requests@q-1")
        assert client.started == [durable_id]
        host.run()
        finished = host.instances[durable_id]
        assert finished.status == "Completed", finished.failure
        result = finished.output
        assert (result["status"], result["output"]) == (
            "succeeded",
            {**request, "score": 25, "archived": request},
        )
        archive = blobs.get_container_client(prefix + "intake-archive")
        assert json.loads(archive.download_blob("req-7").readall()) == request
        scored = queues.get_queue_client(prefix + "intake-scored").receive_messages()
        assert [json.loads(base64.b64decode(m.content)) for m in scored] == [
            {"id": "req-7", "score": 25}
        ]
    finally:
        activity_function.registry_for.cache_clear()
