"""Webhooks for real: a receiver on loopback, signed deliveries, retries, a visible log."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from rustyflower import SnapshotKeys
from rustyflower.adapters.web import ApiSettings, webhooks
from rustyflower.adapters.web.settings import WebhookPolicy
from rustyflower.client import Client
from tests.api.conftest import FLOWS, TOKEN, Api, serve
from tests.redis.servers import ServerProcess

pytestmark = pytest.mark.emulator


class Receiver(BaseHTTPRequestHandler):
    """Answers 500 to the first delivery of every id, 204 after: a flaky endpoint."""

    received: ClassVar[list[dict[str, Any]]] = []
    seen: ClassVar[set[str]] = set()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        delivery = self.headers["X-RustyFlower-Delivery"]
        first = delivery not in self.seen
        self.seen.add(delivery)
        self.received.append(
            {"body": body, "headers": dict(self.headers.items()), "answered": 500 if first else 204}
        )
        self.send_response(500 if first else 204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.received = []
    Receiver.seen = set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def wait_for(condition: Any, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """What a receiver does (docs/api.md "Webhooks")."""
    parts = dict(item.split("=", 1) for item in headers["X-RustyFlower-Signature"].split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(parts["v1"], expected.hexdigest())


def test_deliveries_are_signed_retried_and_visible(api: Api, receiver: str) -> None:
    with api.http() as http:
        created = http.post(
            "/v1/webhooks", json={"url": receiver, "events": ["succeeded", "failed"]}
        )
        assert created.status_code == 201, created.text
        hook = created.json()
        assert len(hook["secret"]) >= 32
        assert "secret" not in http.get("/v1/webhooks").json()[0]
        ok = http.post("/v1/instances", json={"flow": "doubling", "input": {"value": 4}}).json()
        bad = http.post("/v1/instances", json={"flow": "refusing"}).json()
        held = http.post("/v1/instances", json={"flow": "approval"}).json()
        http.post(f"/v1/instances/{held['instance_id']}/cancel")  # not subscribed: cancelled
        # each delivery fails once (500), then gets through on its second attempt
        wait_for(lambda: sum(1 for r in Receiver.received if r["answered"] == 204) == 2)
        time.sleep(0.5)  # nothing more arrives: no cancelled event, no third attempt
        assert len(Receiver.received) == 4
        delivered = {}
        for request in Receiver.received:
            assert verify(hook["secret"], request["headers"], request["body"])
            assert not verify("another-secret-0123456789", request["headers"], request["body"])
            payload = json.loads(request["body"])
            delivered[payload["instance"]["instance_id"]] = payload
            assert request["headers"]["X-RustyFlower-Event"] == payload["event"]
        assert delivered[ok["instance_id"]]["event"] == "instance.succeeded"
        assert delivered[ok["instance_id"]]["instance"]["output"] == {"value": 8}
        assert delivered[ok["instance_id"]]["attempt"] == 2
        assert delivered[bad["instance_id"]]["event"] == "instance.failed"
        assert delivered[bad["instance_id"]]["instance"]["error"] == "PermissionError"
        log = http.get(f"/v1/webhooks/{hook['id']}/deliveries").json()
        outcomes = sorted(
            (entry["attempt"], entry["outcome"], entry["status_code"]) for entry in log
        )
        assert outcomes == [(1, "retrying", 500)] * 2 + [(2, "delivered", 204)] * 2
        metrics = http.get("/metrics").text
        assert 'rustyflower_webhook_deliveries_total{outcome="delivered"} 2.0' in metrics
        assert 'rustyflower_webhook_deliveries_total{outcome="retrying"} 2.0' in metrics
        assert "rustyflower_webhook_backlog 0.0" in metrics
        assert http.delete(f"/v1/webhooks/{hook['id']}").status_code == 204
        assert http.get("/v1/webhooks").json() == []


def test_an_unreachable_endpoint_is_given_up_after_the_last_attempt(api: Api) -> None:
    """The fixture's policy: 3 attempts, 0.2 s then 0.4 s apart."""
    with api.http() as http:
        hook = http.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/closed"}).json()
        http.post("/v1/instances", json={"flow": "doubling", "input": {"value": 1}})

        def attempts() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = http.get(f"/v1/webhooks/{hook['id']}/deliveries").json()
            return found

        wait_for(lambda: any(entry["outcome"] == "failed" for entry in attempts()))
        log = sorted(attempts(), key=lambda entry: entry["attempt"])
        assert [(e["attempt"], e["outcome"]) for e in log] == [
            (1, "retrying"),
            (2, "retrying"),
            (3, "failed"),
        ]
        assert all("ConnectError" in entry["error"] for entry in log)
        assert log[-1]["next_attempt_at"] is None


def test_an_event_a_dead_dispatcher_left_is_taken_over(
    server: ServerProcess, prefix: str, receiver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dispatcher read the finish and died before it made the deliveries: another
    takes the event over once it has been pending long enough (here 0.3 s)."""
    monkeypatch.setattr(webhooks, "STALE_SECONDS", 0.3)
    with Client.connect(server.url, prefix=prefix, keys=SnapshotKeys.none()) as client:
        client.register(FLOWS[3])
        store = client.webhooks()
        store.add(receiver, secret="a-secret-of-the-test-0123")
        order = client.start("approval", {})
        order.signal("approval", {"ok": True})
        read = store.read_finished("dead-dispatcher")  # read, never acknowledged
        assert [event.fields["k"] for event in read] == ["started", "finished"]
        assert store.read_finished("dead-dispatcher") == []  # nothing new
        policy = WebhookPolicy(first_delay=0.1, factor=1, poll_seconds=0.1)
        running = serve(
            server, prefix, ApiSettings(tokens=frozenset({TOKEN}), webhook_policy=policy)
        )
        try:
            wait_for(lambda: any(r["answered"] == 204 for r in Receiver.received))
        finally:
            running.stop()
    payload = json.loads(Receiver.received[-1]["body"])
    assert payload["instance"]["instance_id"] == order.id
    assert {json.loads(r["body"])["delivery_id"] for r in Receiver.received} == {
        payload["delivery_id"]
    }
