"""DurableClient against a fake of the Functions host (``func`` cannot be installed here).

``FakeFunctionsHost`` is an ``http.server`` on 127.0.0.1 playing the Functions host that
runs ``functions_azure``:

- ``/api/instances...`` requests are checked for the function key (``x-functions-key``
  or ``code``, as the host does for ``AuthLevel.FUNCTION``), turned into
  ``azure.functions.HttpRequest`` objects and handed to the app's real endpoint code
  (``functions_azure.http_api``), with an in-memory task hub as its Durable client;
- ``/runtime/webhooks/durabletask/instances...`` (the Durable HTTP management API) is
  answered by the fake itself from the same task hub, with the system key, the status
  codes and the camelCase JSON the extension uses (200/202/400 status answers, 404
  unknown, 410 finished).

No orchestrator runs: instances move only when the tests (or the ``approve`` event, or
``polls_left``) move them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import Enum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import azure.functions as func
import pytest

from functions_azure import http_api
from functions_azure.flows import FlowBundle
from rustyflower.adapters.azure import ids as app_ids
from rustyflower.adapters.azure.durable_client import (
    DurableClient,
    FunctionAppAuthError,
    FunctionAppError,
    FunctionAppUnavailableError,
    InstanceConflictError,
    InstanceGoneError,
    InstanceNotFoundError,
    SnapshotRejectedError,
    WaitTimeoutError,
    durable_instance_id,
)
from rustyflower.adapters.localcloud.azure import match
from rustyflower.core.engine import start
from rustyflower.core.model import parse_definition
from rustyflower.core.snapshot import SigningKey, SnapshotKeys
from rustyflower.core.snapshot.document import decode_snapshot, encode_snapshot
from rustyflower.core.snapshot.handover import encode_handover
from tests.azure.azurite import free_port

FUNCTION_KEY = "fn-key-0123456789abcdef"
SYSTEM_KEY = "sys-key-fedcba9876543210"
SIGNING_KEY = SigningKey("k1", b"s" * 32)
SIGNING = SnapshotKeys.signing_only(SIGNING_KEY)
OTHER = SnapshotKeys.signing_only(SigningKey("k1", b"t" * 32))
APP_ENVIRONMENT = {
    "RUSTYFLOWER_SIGNING_KEYS": f"k1:{SIGNING_KEY.to_base64()}",
    "RUSTYFLOWER_REQUIRE_SIGNATURE": "true",
}
NOW = datetime(2024, 1, 1, tzinfo=UTC)
FLOW = parse_definition(
    {
        "name": "approval",
        "start_at": "Wait",
        "states": {
            "Wait": {"type": "wait_for_event", "event": "approve", "next": "Done"},
            "Done": {"type": "succeed"},
        },
    }
)
MANAGEMENT = ["runtime", "webhooks", "durabletask", "instances"]


def snapshot_bytes(instance_id: str, keys: SnapshotKeys = SIGNING, seq: int = 4) -> bytes:
    snapshot = start(FLOW, {"amount": 3}, instance_id, NOW).snapshot
    return encode_snapshot(replace(snapshot, seq=seq), keys)


# --- the in-memory task hub ---------------------------------------------------------------


class RuntimeStatus(Enum):
    Running = "Running"
    Completed = "Completed"
    Failed = "Failed"
    Terminated = "Terminated"


@dataclass
class HubInstance:
    durable_id: str
    input: dict[str, Any]
    runtime_status: str = "Running"
    custom_status: Any = None
    output: Any = None
    events: list[tuple[str, Any]] = field(default_factory=list)
    terminate_reason: str | None = None
    polls_left: int | None = None  # completes after this many status reads

    @property
    def finished(self) -> bool:
        return self.runtime_status in ("Completed", "Failed", "Terminated")

    def poll(self) -> None:
        if self.polls_left is not None and not self.finished:
            if self.polls_left <= 0:
                self.runtime_status = "Completed"
                self.output = {"status": "succeeded"}
            self.polls_left -= 1

    def management_json(self) -> dict[str, Any]:
        return {
            "name": "rustyflower_orchestrator",
            "instanceId": self.durable_id,
            "runtimeStatus": self.runtime_status,
            "input": None,
            "customStatus": self.custom_status,
            "output": self.output,
            "createdTime": "2024-01-01T00:00:00Z",
            "lastUpdatedTime": "2024-01-01T00:00:01Z",
        }


class InMemoryDurableClient:
    """What ``durable_client_input`` gives the app's endpoints, over a dict."""

    def __init__(self, host: FakeFunctionsHost) -> None:
        self.host = host
        self.instances: dict[str, HubInstance] = {}

    async def start_new(
        self, orchestration_function_name: str, instance_id: str | None = None, client_input=None
    ) -> str:
        assert orchestration_function_name == "rustyflower_orchestrator"
        assert instance_id is not None
        snapshot = decode_snapshot(client_input["snapshot"])
        self.instances[instance_id] = HubInstance(
            instance_id,
            client_input,
            custom_status={
                "instance_id": snapshot.instance_id,
                "status": snapshot.status,
                "seq": snapshot.seq,
                "epoch": snapshot.epoch,
                "positions": snapshot.positions,
            },
        )
        return instance_id

    async def get_status(self, instance_id: str) -> Any:
        instance = self.instances.get(instance_id)
        if instance is None:
            return SimpleNamespace(runtime_status=None)
        instance.poll()
        return SimpleNamespace(
            runtime_status=RuntimeStatus(instance.runtime_status),
            custom_status=instance.custom_status,
            output=instance.output,
            created_time=datetime(2024, 1, 1, tzinfo=UTC),
            last_updated_time=datetime(2024, 1, 1, 0, 0, 1, tzinfo=UTC),
        )

    async def raise_event(self, instance_id: str, event_name: str, event_data: Any = None) -> None:
        instance = self.instances.get(instance_id)
        if instance is None:
            raise Exception(f"No instance with ID '{instance_id}' found.")
        if instance.finished:
            raise Exception(f"Instance with ID '{instance_id}' is gone: either completed or failed")
        deliver(instance, event_name, event_data)

    async def terminate(self, instance_id: str, reason: str) -> None:
        instance = self.instances[instance_id]
        instance.runtime_status = "Terminated"
        instance.terminate_reason = reason

    def create_check_status_response(
        self, request: func.HttpRequest, instance_id: str
    ) -> func.HttpResponse:
        base = f"{self.host.url}/runtime/webhooks/durabletask/instances/{quote(instance_id)}"
        query = f"taskHub=RustyFlowerHub&connection=Storage&code={SYSTEM_KEY}"
        payload = {
            "id": instance_id,
            "statusQueryGetUri": f"{base}?{query}",
            "sendEventPostUri": f"{base}/raiseEvent/{{eventName}}?{query}",
            "terminatePostUri": f"{base}/terminate?reason={{text}}&{query}",
            "purgeHistoryDeleteUri": f"{base}?{query}",
        }
        return func.HttpResponse(
            json.dumps(payload),
            status_code=202,
            headers={"Location": payload["statusQueryGetUri"]},
            mimetype="application/json",
        )


def deliver(instance: HubInstance, name: str, data: Any) -> None:
    instance.events.append((name, data))
    if name == "approve":
        instance.runtime_status = "Completed"
        instance.output = {"approved": data}


# --- the host ---------------------------------------------------------------------------


class FakeFunctionsHost(ThreadingHTTPServer):
    """The HTTP surface of the Functions host running ``functions_azure``."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hub = InMemoryDurableClient(self)
        self.unavailable = False
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def instance(self, flow_id: str) -> HubInstance:
        return self.hub.instances[app_ids.durable_instance_id(flow_id)]


APP_ROUTES = (
    ("POST", ("instances",), http_api.continue_snapshot),
    ("GET", ("instances", "{instance_id}"), http_api.get_instance),
    (
        "POST",
        ("instances", "{instance_id}", "events", "{event_name}"),
        http_api.raise_flow_event,
    ),
    ("POST", ("instances", "{instance_id}", "terminate"), http_api.terminate_instance),
)


class _Handler(BaseHTTPRequestHandler):
    server: FakeFunctionsHost

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, code: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = (
            body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
        )
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {name: values[0] for name, values in parse_qs(url.query).items()}
        parts = [unquote(part) for part in url.path.strip("/").split("/")]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.server.unavailable:
            return self._reply(503, {"error": "Function host is not running."})
        with self.server.lock:
            if parts[:1] == ["api"]:
                key = self.headers.get("x-functions-key") or query.get("code")
                if key != FUNCTION_KEY:
                    return self._reply(401)
                return self._app(method, parts[1:], query, body)
            if parts[:4] == MANAGEMENT:
                if query.get("code") != SYSTEM_KEY:
                    return self._reply(401)
                return self._management(method, parts[4:], query, body)
        return self._reply(404)

    def _app(self, method: str, parts: list[str], query: dict[str, str], body: bytes) -> None:
        for route_method, template, endpoint in APP_ROUTES:
            params = match(template, parts)
            if route_method != method or params is None:
                continue
            request = func.HttpRequest(
                method,
                f"{self.server.url}{self.path}",
                headers=dict(self.headers.items()),
                params=query,
                route_params=params,
                body=body,
            )
            if endpoint is http_api.continue_snapshot:
                call = endpoint(request, self.server.hub, APP_ENVIRONMENT, FlowBundle)
            else:
                call = endpoint(request, self.server.hub)
            response: func.HttpResponse = asyncio.run(call)
            return self._reply(
                response.status_code, response.get_body(), dict(response.headers.items())
            )
        return self._reply(404)

    def _management(self, method: str, rest: list[str], query: dict[str, str], body: bytes) -> None:
        instance = self.server.hub.instances.get(rest[0]) if rest else None
        if instance is None:
            return self._reply(404)
        if method == "GET" and len(rest) == 1:
            instance.poll()
            code = {"Completed": 200, "Failed": 400, "Terminated": 400}.get(
                instance.runtime_status, 202
            )
            return self._reply(code, instance.management_json())
        if instance.finished:
            return self._reply(410)
        if method == "POST" and len(rest) == 3 and rest[1] == "raiseEvent":
            deliver(instance, rest[2], json.loads(body or b"null"))
            return self._reply(202)
        if method == "POST" and len(rest) == 2 and rest[1] == "terminate":
            instance.runtime_status = "Terminated"
            instance.terminate_reason = query.get("reason", "")
            return self._reply(202)
        return self._reply(404)


@pytest.fixture
def host() -> Iterator[FakeFunctionsHost]:
    server = FakeFunctionsHost()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(params=["app", "management"])
def client(request: pytest.FixtureRequest, host: FakeFunctionsHost) -> Iterator[DurableClient]:
    with DurableClient(
        host.url + "/",
        function_key=FUNCTION_KEY,
        system_key=SYSTEM_KEY,
        route=request.param,
        timeout=5,
    ) as durable:
        yield durable


# --- tests --------------------------------------------------------------------------------


def test_continue_snapshot_starts_the_flow_instance(
    client: DurableClient, host: FakeFunctionsHost
) -> None:
    started = client.continue_snapshot(snapshot_bytes("order-1"))
    assert (started.instance_id, started.http_status, started.started) == ("order-1", 202, True)
    assert started.status_query_get_uri is not None
    assert "/runtime/webhooks/durabletask/instances/order-1" in started.status_query_get_uri
    assert SYSTEM_KEY not in repr(started)
    assert FUNCTION_KEY not in repr(client)

    status = client.status("order-1")
    assert (status.instance_id, status.runtime_status, status.finished) == (
        "order-1",
        "Running",
        False,
    )
    assert status.durable_instance_id == "order-1"
    assert status.custom_status["seq"] == 4
    assert status.custom_status["positions"] == ["Wait"]


def test_a_repeated_failover_is_idempotent(client: DurableClient, host: FakeFunctionsHost) -> None:
    first = client.continue_snapshot(snapshot_bytes("order-2"))
    second = client.continue_snapshot(snapshot_bytes("order-2"))
    assert first.instance_id == second.instance_id == "order-2"
    assert (first.started, second.started) == (True, False)
    assert list(host.hub.instances) == ["order-2"]


@pytest.mark.parametrize(
    ("data", "error_name"),
    [
        (b"{not json", "MalformedSnapshotError"),
        (snapshot_bytes("order-3", SnapshotKeys.none()), "SignatureMissingError"),
        (snapshot_bytes("order-3", OTHER), "SignatureInvalidError"),
        (
            snapshot_bytes("order-3").replace(b'"amount":3', b'"amount":300'),
            "SignatureInvalidError",
        ),
    ],
    ids=["malformed", "unsigned", "wrong-key", "tampered"],
)
def test_a_bad_snapshot_is_refused_with_the_apps_reason(
    host: FakeFunctionsHost, data: bytes, error_name: str
) -> None:
    client = DurableClient(host.url, function_key=FUNCTION_KEY)
    with pytest.raises(SnapshotRejectedError, match=error_name) as caught:
        client.continue_snapshot(data)
    assert (caught.value.status_code, caught.value.error_name) == (400, error_name)
    assert host.hub.instances == {}


def test_child_snapshots_travel_with_their_parent(host: FakeFunctionsHost) -> None:
    client = DurableClient(host.url, function_key=FUNCTION_KEY)
    child = snapshot_bytes("p-1/call-1", seq=2)
    started = client.continue_snapshot(
        encode_handover(snapshot_bytes("p-1"), SIGNING, children=[child])
    )
    assert started.instance_id == "p-1"
    assert list(host.instance("p-1").input["children"]) == ["p-1/call-1"]
    stranger = snapshot_bytes("q-9/call-1")
    with pytest.raises(SnapshotRejectedError, match="not a child flow"):
        client.continue_snapshot(
            encode_handover(snapshot_bytes("p-2"), SIGNING, children=[stranger])
        )


def test_raise_event_reaches_the_instance_and_finishes_it(
    client: DurableClient, host: FakeFunctionsHost
) -> None:
    client.continue_snapshot(snapshot_bytes("parent/child-1"))  # a child flow's id: has '/'
    client.raise_event("parent/child-1", "note", {"text": "hello"})
    client.raise_event("parent/child-1", "approve", {"by": "ann"})
    instance = host.instance("parent/child-1")
    assert instance.durable_id == durable_instance_id("parent/child-1") != "parent/child-1"
    assert instance.events == [("note", {"text": "hello"}), ("approve", {"by": "ann"})]
    status = client.status("parent/child-1")
    assert (status.runtime_status, status.output) == ("Completed", {"approved": {"by": "ann"}})
    with pytest.raises(InstanceGoneError):
        client.raise_event("parent/child-1", "approve", None)
    with pytest.raises(InstanceNotFoundError, match="nobody"):
        client.raise_event("nobody", "approve", None)


def test_terminate_with_a_reason(client: DurableClient, host: FakeFunctionsHost) -> None:
    client.continue_snapshot(snapshot_bytes("order-4"))
    client.terminate("order-4", "failback to on-premises & co")
    assert host.instance("order-4").terminate_reason == "failback to on-premises & co"
    status = client.status("order-4")  # the management API answers 400 with a body here
    assert (status.runtime_status, status.finished) == ("Terminated", True)
    # the app answers 409 (already Terminated), the management API 410
    with pytest.raises(InstanceConflictError if client.route == "app" else InstanceGoneError):
        client.terminate("order-4", "again")
    with pytest.raises(InstanceNotFoundError):
        client.status("nobody")


def test_terminate_at_a_safe_point(host: FakeFunctionsHost) -> None:
    client = DurableClient(host.url, function_key=FUNCTION_KEY)
    client.continue_snapshot(snapshot_bytes("order-5", seq=7))
    with pytest.raises(InstanceConflictError, match="seq 7, not 6") as caught:
        client.terminate("order-5", "failback", seq=6)
    assert caught.value.error_name == "Conflict"
    assert host.instance("order-5").runtime_status == "Running"
    client.terminate("order-5", "failback", seq=7)
    assert host.instance("order-5").runtime_status == "Terminated"
    management = DurableClient(host.url, system_key=SYSTEM_KEY, route="management")
    with pytest.raises(FunctionAppError, match="app route"):
        management.terminate("order-5", "failback", seq=7)


def test_wait_for_completion_polls_until_finished(
    client: DurableClient, host: FakeFunctionsHost
) -> None:
    client.continue_snapshot(snapshot_bytes("order-6"))
    host.instance("order-6").polls_left = 3
    naps: list[float] = []
    status = client.wait_for_completion("order-6", timeout=60, poll_interval=1, sleep=naps.append)
    assert status.runtime_status == "Completed"
    assert status.output == {"status": "succeeded"}
    assert naps == [1, 1.5, 2.25]


def test_wait_for_completion_gives_up_at_the_deadline(
    client: DurableClient, host: FakeFunctionsHost
) -> None:
    client.continue_snapshot(snapshot_bytes("order-7"))
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(WaitTimeoutError, match="still Running after 10s") as caught:
        client.wait_for_completion(
            "order-7", timeout=10, poll_interval=2, sleep=sleep, clock=lambda: now[0]
        )
    assert caught.value.last is not None
    assert caught.value.last.runtime_status == "Running"
    assert now[0] == pytest.approx(10)


def test_wrong_keys_are_auth_errors_that_do_not_echo_the_key(host: FakeFunctionsHost) -> None:
    DurableClient(host.url, function_key=FUNCTION_KEY).continue_snapshot(snapshot_bytes("order-8"))
    wrong = DurableClient(host.url, function_key="not-the-key-123")
    with pytest.raises(FunctionAppAuthError, match="function key") as caught:
        wrong.status("order-8")
    assert "not-the-key-123" not in str(caught.value)
    management = DurableClient(host.url, system_key="not-the-system-key", route="management")
    with pytest.raises(FunctionAppAuthError, match="system key") as caught:
        management.status("order-8")
    assert "not-the-system-key" not in str(caught.value)


def test_an_unreachable_app_is_a_clear_error_without_keys() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    client = DurableClient(url, system_key=SYSTEM_KEY, route="management", timeout=2)
    with pytest.raises(FunctionAppUnavailableError, match="cannot reach") as caught:
        client.status("order-9")
    assert SYSTEM_KEY not in str(caught.value)
    assert url in str(caught.value)


def test_a_host_that_is_down_answers_503(client: DurableClient, host: FakeFunctionsHost) -> None:
    host.unavailable = True
    with pytest.raises(FunctionAppUnavailableError, match="503"):
        client.status("order-10")


def test_configuration_errors() -> None:
    with pytest.raises(FunctionAppError, match="not a Function App URL"):
        DurableClient("rustyflower.azurewebsites.net")
    with pytest.raises(FunctionAppError, match="system key"):
        DurableClient("https://x.azurewebsites.net", route="management")


@pytest.mark.parametrize(
    "flow_id",
    ["order-42", "parent/call-1", "a" * 100, "a" * 101, "@x", "q?#\\", "tab\there", "ünï"],
)
def test_durable_ids_are_valid_stable_and_kept_when_accepted(flow_id: str) -> None:
    mapped = durable_instance_id(flow_id)
    assert app_ids.is_durable_id(mapped)
    assert mapped == durable_instance_id(flow_id)
    if app_ids.is_durable_id(flow_id):
        assert mapped == flow_id
    else:
        assert mapped.endswith(hashlib.sha256(flow_id.encode()).hexdigest()[:32])


def test_json_envelope_is_base64_of_the_signed_bytes(host: FakeFunctionsHost) -> None:
    data = snapshot_bytes("order-11")
    client = DurableClient(host.url, function_key=FUNCTION_KEY)
    client.continue_snapshot(encode_handover(data, SIGNING, flows=[FLOW]))
    sent = decode_snapshot(host.instance("order-11").input["snapshot"])
    assert sent.instance_id == "order-11"
    assert base64.b64decode(base64.b64encode(data)) == data
