"""A Function App on 127.0.0.1 that really runs: the app's HTTP functions over the replay host.

The routes the Functions host would serve for ``functions_azure`` (``/api/instances...``,
function-key protected as ``AuthLevel.FUNCTION`` is) call the app's *wired* HTTP
functions (the user code the host would call) with a :class:`LocalDurableClient` over a
:class:`DurableHost`: the real SDK orchestrator runs the flow, the app's activity and
checkpoint functions run in this process (checkpoints go wherever the app settings say:
Azurite for ``rustyflower cloud azure``). Around every request the host delivers what is
due by the real time (activity results, raised events, timers that expired); with
``tick`` a thread does so between requests too, so timers fire when nobody asks, as in
Azure. :meth:`LocalFunctionApp.run_all` runs everything to its end on the host's virtual
clock (later timers fire at once: the tests use it).

One lock serializes requests and deliveries: the host, like an orchestration's
partition, does one thing at a time, and activities run inside it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import azure.functions as func

from rustyflower.adapters.azure.ids import durable_instance_id
from rustyflower.adapters.localcloud.durable_client import LocalDurableClient
from rustyflower.adapters.localcloud.durable_history import Instance
from rustyflower.adapters.localcloud.durable_host import DurableHost

__all__ = ["ROUTES", "LocalFunctionApp", "call_http", "http_request", "serving"]

ROUTES = (
    ("POST", ("instances",), "continue_snapshot"),
    ("GET", ("instances", "{instance_id}"), "get_flow_instance"),
    ("POST", ("instances", "{instance_id}", "events", "{event_name}"), "raise_flow_event"),
    ("POST", ("instances", "{instance_id}", "terminate"), "terminate_flow_instance"),
)
"""The app's HTTP functions by method and route (function_app.py's ``app.route``s)."""


def http_request(
    method: str,
    url: str,
    body: bytes = b"",
    route_params: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> func.HttpRequest:
    return func.HttpRequest(
        method=method,
        url=url,
        body=body,
        route_params=dict(route_params or {}),
        params=dict(params or {}),
    )


def call_http(
    host: DurableHost, name: str, request: func.HttpRequest, client: LocalDurableClient
) -> func.HttpResponse:
    """Call one of the app's HTTP functions (its user code) with ``client`` as its binding."""
    user = host.functions[name].get_user_function()
    response: func.HttpResponse = asyncio.run(user.client_function(req=request, client=client))
    return response


def match(template: tuple[str, ...], parts: list[str]) -> dict[str, str] | None:
    """The route parameters when ``parts`` fits ``template`` (``{name}`` takes one part)."""
    if len(template) != len(parts):
        return None
    params: dict[str, str] = {}
    for expected, part in zip(template, parts, strict=True):
        if expected.startswith("{"):
            params[expected[1:-1]] = part
        elif expected != part:
            return None
    return params


class LocalFunctionApp(ThreadingHTTPServer):
    """The app's HTTP API on ``127.0.0.1:port`` (0: a free port), over ``durable``."""

    daemon_threads = True

    def __init__(
        self,
        durable: DurableHost,
        function_key: str,
        *,
        port: int = 0,
        tick: float | None = None,
    ) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.durable = durable
        self.function_key = function_key
        self.tick = tick
        self.client = LocalDurableClient(durable)
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        self.failure: BaseException | None = None
        """What made a delivery between requests fail (the ticker stops then)."""

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

    def ticking(self, stopped: threading.Event) -> None:
        """Deliver what falls due every ``tick`` seconds until ``stopped``."""
        assert self.tick is not None
        while not stopped.wait(self.tick):
            try:
                self.settle()
            except Exception as error:  # an orchestration the host refuses: keep serving
                self.failure = error
                return


class _Handler(BaseHTTPRequestHandler):
    server: LocalFunctionApp

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
        if (self.headers.get("x-functions-key") or query.get("code")) != self.server.function_key:
            return self._reply(401)
        for route_method, template, function in ROUTES:
            params = match(template, parts[1:])
            if route_method != method or params is None:
                continue
            request = http_request(method, f"{self.server.url}{self.path}", body, params, query)
            durable = self.server.durable
            with self.server.lock:
                self.server.requests.append((function, "/".join(parts[1:])))
                durable.run(until=datetime.now(UTC))  # what is due by now
                response = call_http(durable, function, request, self.server.client)
                durable.run(until=durable.clock)
            headers = {
                name: value
                for name, value in response.headers.items()
                if name.lower() not in ("content-length", "content-type")
            }
            return self._reply(response.status_code, response.get_body(), headers)
        return self._reply(404)


@contextmanager
def serving(server: LocalFunctionApp) -> Iterator[LocalFunctionApp]:
    """Serve ``server`` (and tick, when it has a ``tick``) on threads for the block."""
    stopped = threading.Event()
    threads = [threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})]
    if server.tick is not None:
        threads.append(threading.Thread(target=server.ticking, args=(stopped,), daemon=True))
    for thread in threads:
        thread.start()
    try:
        yield server
    finally:
        stopped.set()
        server.shutdown()
        server.server_close()
        for thread in threads:
            thread.join(timeout=5)
