"""The service corpus in Azure: the real Durable SDK replaying the orchestrator, the real
activity function running the service tasks with the Azure SDKs against Azurite.

Queues are Azurite's Storage Queues and stores its Blob containers (under a prefix of
each run's own, ``RUSTYFLOWER_SERVICES_PREFIX``); a bus's Event Grid topic is a local
HTTP receiver (no emulator of Event Grid exists: the publisher client is the real SDK,
the topic a stand-in that keeps what it is sent, named as such); ``http.call`` reaches
the corpus's endpoint. Per case, for every transition k: the flow runs on the virtual
runtime to k (its service calls through the same ``AzureBackends`` on the same
resources), its snapshot is posted to the app's HTTP starter and the orchestration runs
to its end. It ends as the case expects; the queues, topic and containers hold what the
case says (a message or event twice allowed after a cut: a call in flight at the cut
runs again in Azure; puts are idempotent).
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from functions_azure import activity as activity_function
from rustyflower.adapters.azure.services import (
    ENV_CONNECTION,
    ENV_NAME_PREFIX,
    ENV_TOPIC_KEYS,
    ENV_TOPICS,
    AzureBackends,
    AzureServiceSettings,
)
from rustyflower.adapters.services.http import UrllibHttp
from rustyflower.core.services.calls import with_services
from tests.azure.azurite import ACCOUNT, ACCOUNT_KEY, Azurite, AzuriteNotInstalled
from tests.azure.support import continue_in_azure, cut_virtual
from tests.conformance.activities import registry
from tests.conformance.corpus import SERVICES_DIR, Case, load_cases
from tests.conformance.services_kit import Endpoint, Seen, decode_object, effect_problems, localise
from tests.conformance.test_conformance import json_equal
from tests.tooling import missing_tool

pytestmark = [pytest.mark.emulator, pytest.mark.usefixtures("azure_env")]

CASES = load_cases(SERVICES_DIR)


class _Topic(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        events = json.loads(self.rfile.read(length))
        self.server.received.extend(events)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


class TopicStandIn:
    """A stand-in for an Event Grid topic: an HTTP endpoint keeping the events it is sent."""

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Topic)
        self.server.received = []  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def received(self) -> list[dict[str, Any]]:
        return self.server.received  # type: ignore[attr-defined, no-any-return]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def storage() -> Iterator[str]:
    """Azurite's blob and queue services; their connection string."""
    try:
        blob, queue = Azurite(service="blob"), Azurite(service="queue")
    except AzuriteNotInstalled as missing:
        missing_tool(str(missing))
    with blob, queue:
        yield (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={blob.endpoint};QueueEndpoint={queue.endpoint};"
        )


@pytest.fixture(scope="module")
def endpoint() -> Iterator[Endpoint]:
    with Endpoint() as served:
        yield served


class AzureSite:
    """One run's queues, containers and topic, and the app settings naming them."""

    def __init__(self, case: Case, connection: str, monkeypatch: pytest.MonkeyPatch) -> None:
        from azure.storage.blob import BlobServiceClient  # noqa: PLC0415
        from azure.storage.queue import QueueServiceClient  # noqa: PLC0415

        self.case = case
        self.prefix = f"r{uuid.uuid4().hex[:8]}-"
        self.topic = TopicStandIn()
        self.queues = QueueServiceClient.from_connection_string(connection)
        self.blobs = BlobServiceClient.from_connection_string(connection)
        effects = case.expect.effects
        names = _resources(case)
        for queue in names["queues"]:
            self.queues.create_queue(self.prefix + queue)
        for store in names["stores"]:
            self.blobs.create_container(self.prefix + store)
        topics = {bus: self.topic.url for bus in names["buses"]}
        settings = {
            ENV_CONNECTION: connection,
            ENV_NAME_PREFIX: self.prefix,
            ENV_TOPICS: json.dumps(topics),
            ENV_TOPIC_KEYS: json.dumps({bus: "stand-in-key" for bus in topics}),
        }
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        activity_function.registry_for.cache_clear()  # the app reads its settings anew
        self.backends = AzureBackends(AzureServiceSettings.from_env(settings), UrllibHttp())
        self.expected = effects

    def close(self) -> None:
        self.topic.close()
        activity_function.registry_for.cache_clear()

    def seen(self) -> Seen:
        seen = Seen()
        if self.expected is None:
            return seen
        for queue in self.expected.messages:
            client = self.queues.get_queue_client(self.prefix + queue)
            bodies = [
                json.loads(base64.b64decode(message.content))
                for message in client.receive_messages(messages_per_page=32)
            ]
            seen.messages[queue] = bodies
        for bus in self.expected.events:
            seen.events[bus] = [
                {"type": e["type"], "source": e["source"], "detail": e["data"]}
                for e in self.topic.received
            ]
        for store in self.expected.objects:
            container = self.blobs.get_container_client(self.prefix + store)
            seen.objects[store] = {
                blob.name: decode_object(blob.name, container.download_blob(blob.name).readall())
                for blob in container.list_blobs()
            }
        return seen


def _resources(case: Case) -> dict[str, set[str]]:
    from rustyflower.core.activities import iter_tasks  # noqa: PLC0415
    from rustyflower.core.services import resource_of  # noqa: PLC0415

    found: dict[str, set[str]] = {"queues": set(), "buses": set(), "stores": set()}
    assert case.flow is not None
    for task in iter_tasks(case.flow):
        name = resource_of(task.service, task.parameters) if task.service else None
        if name is not None:
            group = {"queue": "queues", "event": "buses", "object": "stores"}
            found[group[task.service.split(".")[0]]].add(name)  # type: ignore[union-attr]
    return found


def outcome_problems(case: Case, result: dict[str, Any]) -> list[str]:
    expect = case.expect
    if result["status"] != expect.status:
        return [f"status {result['status']!r} ({result['error']!r}: {result['cause']!r})"]
    found = []
    if expect.checks_output and not json_equal(result["output"], expect.output):
        found.append(f"output {result['output']!r}, expected {expect.output!r}")
    if expect.status != "succeeded" and result["error"] != expect.error:
        found.append(f"error {result['error']!r}, expected {expect.error!r}")
    return found


def transitions_of(case: Case, connection: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """How many transitions an uninterrupted run makes (on resources of its own)."""
    from rustyflower.testing import FlowLibrary, World, run_flow  # noqa: PLC0415

    site = AzureSite(case, connection, monkeypatch)
    try:
        assert case.flow is not None
        world = World(with_services(registry, site.backends), flows=FlowLibrary(case.subflows))
        return run_flow(case.flow, localise(case.input, ENDPOINT_BASE[0]), world).transitions
    finally:
        site.close()


ENDPOINT_BASE: list[str] = [""]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_service_corpus_continued_in_azure_at_every_transition(
    case: Case, storage: str, endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    ENDPOINT_BASE[0] = endpoint.base
    local = Case(
        case.file,
        case.name,
        localise(case.input, endpoint.base),
        case.events,
        case.expect,
        case.flow,
        case.subflows,
    )
    failures = []
    for k in range(1, transitions_of(case, storage, monkeypatch)):
        site = AzureSite(case, storage, monkeypatch)
        try:
            handover = cut_virtual(local, k, with_services(registry, site.backends))
            run = continue_in_azure(local, handover)
            assert run.instance.status == "Completed", run.instance.failure
            found = outcome_problems(case, run.result)
            found += effect_problems(case.expect.effects, site.seen(), repeats_allowed=k > 1)
        finally:
            site.close()
        if found:
            failures.append(f"continued after transition {k}: " + "; ".join(found))
    assert not failures, f"{case.id}:\n" + "\n".join(failures)


@pytest.mark.parametrize(
    ("status", "portable"),
    [
        (404, "ServiceNotFound"),
        (403, "ServiceAccessDenied"),
        (429, "ServiceThrottled"),
        (500, "ServiceUnavailable"),
        (400, "ServiceInvalidRequest"),
    ],
)
def test_sdk_errors_read_as_portable_names(status: int, portable: str) -> None:
    from azure.core.exceptions import (  # noqa: PLC0415
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
    )

    from rustyflower.adapters.azure.services import portable_failure  # noqa: PLC0415

    error = HttpResponseError(message="no")
    error.status_code = status
    assert type(portable_failure(error, "doing")).__name__ == portable
    assert type(portable_failure(ResourceNotFoundError("x"), "d")).__name__ == "ServiceNotFound"
    assert type(portable_failure(ClientAuthenticationError("x"), "d")).__name__ == (
        "ServiceAccessDenied"
    )
    assert type(portable_failure(ServiceRequestError("x"), "d")).__name__ == "ServiceUnavailable"
    assert type(portable_failure(ValueError("x"), "d")).__name__ == "ServiceFailed"
