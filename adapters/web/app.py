"""``create_app``: the FastAPI application over one ``AsyncClient``.

    from rustyflower.adapters.web import ApiSettings, create_app
    app = create_app(AsyncClient.connect(url), ApiSettings(tokens=frozenset({...})))

The app is a plain ASGI application: another part (the dashboard) mounts its pages on
it with ``app.mount("/ui", StaticFiles(directory=...))``, and its own routes read the
same client from ``request.app.state.client``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from importlib.metadata import version

import httpx
from fastapi import FastAPI

from rustyflower.adapters.web import instances, metrics, operations, webhooks
from rustyflower.adapters.web.errors import BodyLimit, install_error_handlers
from rustyflower.adapters.web.settings import ApiSettings
from rustyflower.client import AsyncClient

DESCRIPTION = """Operate RustyFlower's runner over HTTP: start and read instances, signal,
hold, release, cancel, retry, download snapshots, fail over and back, reports, webhooks
and Prometheus metrics. Every endpoint but `/healthz` takes `Authorization: Bearer
<token>` (a token of `RUSTYFLOWER_API_TOKENS`). Errors are JSON: `{"error": {"status",
"code", "message", "field", "problems"}}`."""


def create_app(
    client: AsyncClient,
    settings: ApiSettings | None = None,
    *,
    webhook_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The API over ``client`` (which the app closes when it shuts down).

    ``webhook_transport``: how webhook deliveries reach their URLs (tests give httpx a
    transport of their own; None: the network).
    """
    chosen = settings or ApiSettings()
    local = metrics.ProcessMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        dispatcher = None
        if chosen.webhooks:
            dispatcher = webhooks.Dispatcher(
                client, chosen.webhook_policy, local, transport=webhook_transport
            )
            dispatcher.start()
        app.state.dispatcher = dispatcher
        try:
            yield
        finally:
            if dispatcher is not None:
                await dispatcher.stop()
            await client.aclose()

    app = FastAPI(
        title="RustyFlower",
        version=version("rustyflower"),
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.client = client
    app.state.settings = chosen
    app.state.metrics = local
    app.state.dispatcher = None
    install_error_handlers(app)
    app.include_router(instances.router)
    app.include_router(operations.router)
    app.include_router(webhooks.router)
    app.include_router(metrics.router)
    app.include_router(operations.health)
    app.add_middleware(BodyLimit, limit=chosen.max_body_bytes)
    return app
