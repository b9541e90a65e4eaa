"""The dashboard: static pages (plain JS modules, no build step) over the HTTP API.

``install_dashboard(app)`` serves them at ``/ui/`` on the API's own application (so
``rustyflower serve`` and ``rustyflower dev`` both have it), sends ``/`` there, and adds
the one route the pages need besides the API: a flow's graph, laid out for drawing. The
pages call the API with the bearer token the user gives them (none under ``dev``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

from rustyflower.adapters.web.auth import require_token
from rustyflower.adapters.web.dashboard.graph import flow_graph
from rustyflower.adapters.web.instances import Client

STATIC = Path(__file__).resolve().parent / "static"
PATH = "/ui"

# The pages load nothing but their own files and talk to nothing but this API: a script
# injected through some data could neither load code from elsewhere nor send it there.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(dependencies=[Depends(require_token)], include_in_schema=False)


@router.get(f"{PATH}/api/graph/{{name}}")
async def graph(
    name: str,
    client: Client,
    version: Annotated[str | None, Query(min_length=1)] = None,
) -> dict[str, Any]:
    """The flow's states and arrows with their places (``graph.flow_graph``)."""
    return flow_graph(await client.definition(name, version)).as_dict()


class _Pages(StaticFiles):
    """The static files, each with ``PAGE_HEADERS``."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(PAGE_HEADERS)
        return response


def install_dashboard(app: FastAPI) -> None:
    app.include_router(router)  # before the mount, which would take every /ui/... path
    app.mount(PATH, _Pages(directory=STATIC, html=True), name="dashboard")

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse(f"{PATH}/")
