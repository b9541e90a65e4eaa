"""The dashboard is served by the API's own app: its pages without a token (they hold no
data), its data only with one, and its JS modules all resolve (no build step)."""

from __future__ import annotations

import re

import httpx
import pytest

from rustyflower.adapters.web import ApiSettings
from rustyflower.adapters.web.dashboard import STATIC
from tests.api.conftest import TOKEN, Api, serve

pytestmark = pytest.mark.emulator

IMPORTS = re.compile(r"""^import .* from "\./([\w.-]+)";$""", re.MULTILINE)


def test_the_pages_and_every_module_they_import_are_served(api: Api) -> None:
    with api.http(None) as http:
        home = http.get("/", follow_redirects=False)
        assert (home.status_code, home.headers["location"]) == (307, "/ui/")
        page = http.get("/ui/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="app.js"></script>' in page.text
        policy = page.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert page.headers["x-content-type-options"] == "nosniff"
        assert http.get("/ui/style.css").headers["content-type"].startswith("text/css")
        wanted, seen = ["app.js"], set()
        while wanted:
            name = wanted.pop()
            if name in seen:
                continue
            seen.add(name)
            module = http.get(f"/ui/{name}")
            assert module.status_code == 200, name
            assert "javascript" in module.headers["content-type"], name
            wanted += IMPORTS.findall(module.text)
    assert seen == {path.name for path in STATIC.glob("*.js")}  # none unused, none missing


def test_the_graph_needs_a_token_and_lays_out_the_flow(api: Api) -> None:
    with api.http(None) as http:
        refused = http.get("/ui/api/graph/approval")
        assert (refused.status_code, refused.json()["error"]["code"]) == (401, "unauthorized")
    with api.http() as http:
        graph = http.get("/ui/api/graph/approval", params={"version": "1"}).json()
        assert {node["id"] for node in graph["nodes"]} == {"(start)", "Wait", "Done", "(end)"}
        assert graph["width"] > 0 and graph["height"] > 0
        unknown = http.get("/ui/api/graph/nothing")
        assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_flow")
        assert "/ui/api/graph/{name}" not in http.get("/openapi.json").json()["paths"]


def test_the_dashboard_can_be_left_out(api: Api) -> None:
    settings = ApiSettings(tokens=frozenset({TOKEN}), webhooks=False, dashboard=False)
    running = serve(api.server, api.prefix, settings)
    try:
        with httpx.Client(base_url=running.url) as http:
            assert http.get("/ui/").status_code == 404
            assert http.get("/ui/api/graph/approval").status_code == 404
    finally:
        running.stop()
