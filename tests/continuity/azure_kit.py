"""A Function App on 127.0.0.1 that really runs: the app's HTTP functions over the replay host.

``tests/azure/test_client.py``'s fake host answers the app's routes with an in-memory hub
where nothing runs. Here the same routes call the app's *wired* HTTP functions
(``functions_azure.function_app``: the user code the Functions host would call) with a
``FakeDurableClient`` over a ``DurableHost``: the real SDK orchestrator runs the flow, the
app's activity and checkpoint functions run in-process (checkpoints go wherever the app
settings say: Azurite here). Around every request the host delivers whatever is due by
the real time (activity results, raised events, timers that expired), so the
orchestration moves as a hosted one would; ``run_all`` runs everything to its end on the
virtual clock (later timers fire at once).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from functions_azure.function_app import app
from rustyflower.adapters.azure.ids import durable_instance_id
from tests.azure.durable_host import DurableHost, FakeDurableClient, Instance
from tests.azure.support import call_http, http_request
from tests.azure.test_client import FUNCTION_KEY, match

ROUTES = (
    ("POST", ("instances",), "continue_snapshot"),
    ("GET", ("instances", "{instance_id}"), "get_flow_instance"),
    ("POST", ("instances", "{instance_id}", "events", "{event_name}"), "raise_flow_event"),
    ("POST", ("instances", "{instance_id}", "terminate"), "terminate_flow_instance"),
)

__all__ = ["FUNCTION_KEY", "ReplayFunctionApp", "running_app"]


class ReplayFunctionApp(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.durable = DurableHost(app, now=datetime.now(UTC))
        self.client = FakeDurableClient(self.durable)
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def settle(self) -> None:
        """Deliver what is due by now (the clock follows the real one, never back)."""
        with self.lock:
            self.durable.run(until=datetime.now(UTC))

    def run_all(self) -> None:
        """Run every orchestration to its end on the virtual clock."""
        with self.lock:
            self.durable.run()

    def instance(self, flow_id: str) -> Instance:
        return self.durable.instances[durable_instance_id(flow_id)]


class _Handler(BaseHTTPRequestHandler):
    server: ReplayFunctionApp

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def _reply(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        sent = {"Content-Type": "application/json", **(headers or {})}
        sent["Content-Length"] = str(len(body))
        for name, value in sent.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {name: values[0] for name, values in parse_qs(url.query).items()}
        parts = [unquote(part) for part in url.path.strip("/").split("/")]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if parts[:1] != ["api"]:
            return self._reply(404)
        if (self.headers.get("x-functions-key") or query.get("code")) != FUNCTION_KEY:
            return self._reply(401)
        for route_method, template, function in ROUTES:
            params = match(template, parts[1:])
            if route_method != method or params is None:
                continue
            request = http_request(method, f"{self.server.url}{self.path}", body, params, query)
            with self.server.lock:
                self.server.requests.append((function, "/".join(parts[1:])))
                self.server.durable.run(until=datetime.now(UTC))  # what is due by now
                response = call_http(function, request, self.server.client)
                self.server.durable.run(until=self.server.durable.clock)
            headers = {
                name: value
                for name, value in response.headers.items()
                if name.lower() not in ("content-length", "content-type")
            }
            return self._reply(response.status_code, response.get_body(), headers)
        return self._reply(404)


@contextmanager
def running_app() -> Iterator[ReplayFunctionApp]:
    server = ReplayFunctionApp()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
