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

from rustyflower.adapters.web.auth import require_token
from rustyflower.adapters.web.dashboard.graph import flow_graph
from rustyflower.adapters.web.instances import Client

STATIC = Path(__file__).resolve().parent / "static"
PATH = "/ui"

router = APIRouter(dependencies=[Depends(require_token)], include_in_schema=False)


@router.get(f"{PATH}/api/graph/{{name}}")
async def graph(
    name: str,
    client: Client,
    version: Annotated[str | None, Query(min_length=1)] = None,
) -> dict[str, Any]:
    """The flow's states and arrows with their places (``graph.flow_graph``)."""
    return flow_graph(await client.definition(name, version)).as_dict()


def install_dashboard(app: FastAPI) -> None:
    app.include_router(router)  # before the mount, which would take every /ui/... path
    app.mount(PATH, StaticFiles(directory=STATIC, html=True), name="dashboard")

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse(f"{PATH}/")
