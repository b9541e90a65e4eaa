"""The HTTP API over a real server: what a caller does, who may call, and bad input.

Every answer to bad input is a 4xx with the JSON error shape naming the field at fault
(docs/api.md "Errors"); nothing a caller sends yields a 500.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from rustyflower import SnapshotKeys, decode_snapshot
from rustyflower.adapters.web import ApiSettings
from rustyflower.adapters.web.settings import ApiSettingsError, tokens_from
from tests.api.conftest import TOKEN, Api, serve

pytestmark = pytest.mark.emulator


def settled(http: httpx.Client, instance_id: str, timeout: float = 10) -> dict[str, Any]:
    """The instance's status once it left ``running`` (the API has no wait: webhooks do)."""
    deadline = time.monotonic() + timeout
    while True:
        body = http.get(f"/v1/instances/{instance_id}").json()
        if body["status"] != "running" or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


# --- what a caller does ---------------------------------------------------------------------


def test_start_read_and_list(api: Api) -> None:
    with api.http() as http:
        started = http.post("/v1/instances", json={"flow": "doubling", "input": {"value": 21}})
        assert started.status_code == 201, started.text
        body = started.json()
        assert body["created"] is True and body["flow"] == "doubling"
        assert started.headers["location"] == f"/v1/instances/{body['instance_id']}"
        final = settled(http, body["instance_id"])
        assert (final["status"], final["output"]) == ("succeeded", {"value": 42})
        again = http.post("/v1/instances", json={"flow": "doubling", "id": body["instance_id"]})
        assert (again.status_code, again.json()["created"]) == (200, False)
        history = http.get(f"/v1/instances/{body['instance_id']}/history").json()
        assert [entry["kind"] for entry in history][:: len(history) - 1] == [
            "FlowStarted",
            "FlowSucceeded",
        ]
        flows = http.get("/v1/flows").json()
        assert {flow["name"] for flow in flows} == {"doubling", "twice", "refusing", "approval"}


def test_listing_pages_through_every_instance_once(api: Api) -> None:
    with api.http() as http:
        ids = [
            http.post("/v1/instances", json={"flow": "approval", "id": f"page-{n}"}).json()[
                "instance_id"
            ]
            for n in range(5)
        ]
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, Any] = {"flow": "approval", "limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = http.get("/v1/instances", params=params).json()
            seen += [row["instance_id"] for row in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert (seen, pages) == (list(reversed(ids)), 3)
        held = http.post(f"/v1/instances/{ids[0]}/hold", json={"reason": "look"}).json()
        assert held["held"] is True
        only_held = http.get("/v1/instances", params={"held": "true"}).json()["items"]
        assert [row["instance_id"] for row in only_held] == [ids[0]]
        running = http.get("/v1/instances", params={"status": "running", "limit": 1000}).json()
        assert len(running["items"]) == 5


def test_controls_signal_and_snapshot(api: Api) -> None:
    with api.http() as http:
        order = http.post("/v1/instances", json={"flow": "approval", "input": {"n": 1}}).json()
        path = f"/v1/instances/{order['instance_id']}"
        assert order["waiting_for"][0]["kind"] == "event"
        held = http.post(f"{path}/hold").json()
        released = http.post(f"{path}/release").json()
        assert (held["held"], released["held"], released["seq"]) == (True, False, held["seq"] + 1)
        snapshot = http.get(f"{path}/snapshot")
        assert snapshot.status_code == 200
        assert "attachment" in snapshot.headers["content-disposition"]
        value = decode_snapshot(snapshot.content, SnapshotKeys.none())
        assert (value.instance_id, value.state.input) == (order["instance_id"], {"n": 1})
        signalled = http.post(f"{path}/signal", json={"event": "approval", "data": {"ok": 1}})
        assert signalled.status_code == 200, signalled.text
        receipt = signalled.json()
        assert (receipt["delivered_to"], receipt["instance"]["status"]) == ("local", "succeeded")
        assert receipt["instance"]["output"] == {"n": 1, "answer": {"ok": 1}}
        other = http.post("/v1/instances", json={"flow": "approval"}).json()
        cancelled = http.post(
            f"/v1/instances/{other['instance_id']}/cancel", json={"reason": "not needed"}
        ).json()
        assert (cancelled["status"], cancelled["cause"]) == ("cancelled", "not needed")


def test_retry_and_bulk_start(api: Api) -> None:
    with api.http() as http:
        refused = http.post("/v1/instances", json={"flow": "refusing"}).json()
        failed = settled(http, refused["instance_id"])
        assert (failed["status"], failed["error"]) == ("failed", "PermissionError")
        retried = http.post(f"/v1/instances/{refused['instance_id']}/retry")
        assert (retried.status_code, retried.json()["status"]) == (200, "running")
        bulk = http.post(
            "/v1/instances/bulk",
            json={"flow": "doubling", "inputs": [{"value": n} for n in range(20)]},
        )
        assert bulk.status_code == 201
        outputs = [settled(http, i)["output"]["value"] for i in bulk.json()["instance_ids"]]
        assert outputs == [2 * n for n in range(20)]


def test_openapi_is_served_and_names_every_route(api: Api) -> None:
    with api.http() as http:
        document = http.get("/openapi.json").json()
    paths = set(document["paths"])
    assert {
        "/v1/instances",
        "/v1/instances/bulk",
        "/v1/instances/{instance_id}",
        "/v1/instances/{instance_id}/history",
        "/v1/instances/{instance_id}/signal",
        "/v1/instances/{instance_id}/snapshot",
        "/v1/failover",
        "/v1/failback",
        "/v1/reports",
        "/v1/webhooks",
        "/metrics",
    } <= paths
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


# --- who may call -----------------------------------------------------------------------------


def test_every_route_refuses_a_caller_without_a_valid_token(api: Api) -> None:
    with api.http() as http:
        document = http.get("/openapi.json").json()
    routes = [
        (method.upper(), path.replace("{instance_id}", "x").replace("{hook_id}", "wh_x"))
        for path, methods in document["paths"].items()
        for method in methods
        if path != "/healthz"
    ]
    assert len(routes) >= 17
    for token in (None, "wrong-token-0123456789", TOKEN[:-1]):
        with api.http(token) as http:
            for method, path in routes:
                answer = http.request(method, path, json={})
                assert answer.status_code == 401, (token, method, path, answer.text)
                assert answer.headers["www-authenticate"] == "Bearer"
                assert answer.json()["error"]["code"] == "unauthorized"
    with api.http(None) as http:
        assert http.get("/healthz").json() == {"ok": True}  # for load balancers
    with httpx.Client(base_url=api.url) as http:  # another scheme is not a bearer token
        basic = http.get("/v1/flows", headers={"Authorization": "Basic dXNlcjpwYXNz"})
        assert basic.status_code == 401


def test_tokens_are_required_off_loopback_and_must_be_long() -> None:
    with pytest.raises(ApiSettingsError, match="needs bearer tokens"):
        ApiSettings().check_bind("0.0.0.0")
    ApiSettings().check_bind("127.0.0.1")
    ApiSettings().check_bind("::1")
    ApiSettings(tokens=frozenset({TOKEN})).check_bind("0.0.0.0")
    with pytest.raises(ApiSettingsError, match="shorter than 16"):
        tokens_from({"RUSTYFLOWER_API_TOKENS": f"{TOKEN},short"})
    assert tokens_from({}, f"# ops\n{TOKEN}\n\n") == frozenset({TOKEN})


def test_without_tokens_nobody_needs_one(server: Any, prefix: str) -> None:
    """What `rustyflower dev` serves on loopback."""
    running = serve(server, prefix, ApiSettings(webhooks=False))
    try:
        with httpx.Client(base_url=running.url) as http:
            assert http.get("/v1/instances").status_code == 200
    finally:
        running.stop()


# --- bad input -----------------------------------------------------------------------------

DEEP = "[" * 100 + "]" * 100
BAD_INPUTS: list[tuple[str, str, str, Any, int, str, str | None]] = [
    # (case, method, path, body (str: raw text), status, error code, field)
    ("unknown instance", "GET", "/v1/instances/nope", None, 404, "unknown_instance", None),
    ("unknown instance's history", "GET", "/v1/instances/nope/history", None, 404,
     "unknown_instance", None),
    ("hold an unknown instance", "POST", "/v1/instances/nope/hold", None, 404,
     "unknown_instance", None),
    ("unknown flow", "POST", "/v1/instances", {"flow": "nope"}, 404, "unknown_flow", None),
    ("unknown version", "POST", "/v1/instances", {"flow": "doubling", "version": "9"}, 404,
     "unknown_flow", None),
    ("invalid JSON", "POST", "/v1/instances", '{"flow": "doubling",', 400, "invalid_json",
     "body"),
    ("not JSON at all", "POST", "/v1/instances", "flow=doubling", 400, "invalid_json", "body"),
    ("JSON nested too deep to parse", "POST", "/v1/instances", "[" * 5000, 400,
     "bad_request", "body"),
    ("input nested deeper than 64", "POST", "/v1/instances",
     '{"flow": "doubling", "input": ' + DEEP + "}", 422, "invalid_request", "body.input"),
    ("NaN in the input", "POST", "/v1/instances", '{"flow": "doubling", "input": [NaN]}', 422,
     "invalid_request", "body.input"),
    ("a lone surrogate in the data", "POST", "/v1/instances/x/signal",
     '{"event": "e", "data": "\\ud800"}', 422, "invalid_request", "body.data"),
    ("body not an object", "POST", "/v1/instances", "[1, 2]", 422, "invalid_request", "body"),
    ("flow missing", "POST", "/v1/instances", {"input": {}}, 422, "invalid_request",
     "body.flow"),
    ("flow of the wrong type", "POST", "/v1/instances", {"flow": 7}, 422, "invalid_request",
     "body.flow"),
    ("priority not one of three", "POST", "/v1/instances", {"flow": "doubling",
     "priority": "urgent"}, 422, "invalid_request", "body.priority"),
    ("a misspelt field", "POST", "/v1/instances", {"flow": "doubling", "inptu": {}}, 422,
     "invalid_request", "body.inptu"),
    ("an id with a control character", "POST", "/v1/instances", {"flow": "doubling",
     "id": "a\u0007b"}, 422, "invalid_request", "body.id"),
    ("an id too long", "POST", "/v1/instances", {"flow": "doubling", "id": "x" * 300}, 422,
     "invalid_request", "body.id"),
    ("a path id too long", "GET", "/v1/instances/" + "x" * 300, None, 422,
     "invalid_request", "path.instance_id"),
    ("bulk without inputs", "POST", "/v1/instances/bulk", {"flow": "doubling", "inputs": []},
     422, "invalid_request", "body.inputs"),
    ("bulk inputs not a list", "POST", "/v1/instances/bulk", {"flow": "doubling",
     "inputs": {"a": 1}}, 422, "invalid_request", "body.inputs"),
    ("signal without an event", "POST", "/v1/instances/x/signal", {"data": 1}, 422,
     "invalid_request", "body.event"),
    ("limit above 1000", "GET", "/v1/instances?limit=5000", None, 422, "invalid_request",
     "query.limit"),
    ("limit not a number", "GET", "/v1/instances?limit=ten", None, 422, "invalid_request",
     "query.limit"),
    ("an unknown status", "GET", "/v1/instances?status=lost", None, 422, "invalid_request",
     "query.status"),
    ("held not a boolean", "GET", "/v1/instances?held=perhaps", None, 422, "invalid_request",
     "query.held"),
    ("a cursor not handed out", "GET", "/v1/instances?cursor=abc", None, 400,
     "invalid_cursor", None),
    ("a report since nonsense", "GET", "/v1/reports?since=yesterday", None, 422,
     "invalid_request", "query.since"),
    ("failover to another cloud", "POST", "/v1/failover", {"to": "gcp", "all": True}, 422,
     "invalid_request", "body.to"),
    ("failover of nothing", "POST", "/v1/failover", {"to": "aws"}, 422, "invalid_request",
     "body.instance_ids"),
    ("a webhook to a non-URL", "POST", "/v1/webhooks", {"url": "ftp://x"}, 422,
     "invalid_request", "body.url"),
    ("a webhook on an unknown event", "POST", "/v1/webhooks", {"url": "http://127.0.0.1:9/",
     "events": ["started"]}, 422, "invalid_request", "body.events[0]"),
    ("deliveries of an unknown webhook", "GET", "/v1/webhooks/wh_nope/deliveries", None, 404,
     "unknown_webhook", None),
    ("a route that is not there", "GET", "/v2/instances", None, 404, "not_found", None),
    ("a method the route lacks", "DELETE", "/v1/instances", None, 405, "method_not_allowed",
     None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "method", "path", "body", "status", "code", "field"),
    BAD_INPUTS,
    ids=[row[0] for row in BAD_INPUTS],
)
def test_bad_input_gets_a_4xx_naming_the_field(
    api: Api,
    case: str,
    method: str,
    path: str,
    body: Any,
    status: int,
    code: str,
    field: str | None,
) -> None:
    with api.http() as http:
        if isinstance(body, str):
            answer = http.request(
                method, path, content=body.encode(), headers={"content-type": "application/json"}
            )
        else:
            answer = http.request(method, path, json=body)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert (error["status"], error["code"], error["field"]) == (status, code, field)
    assert error["message"]


def test_bad_input_in_the_instances_state(api: Api) -> None:
    with api.http() as http:
        order = http.post("/v1/instances", json={"flow": "approval"}).json()
        path = f"/v1/instances/{order['instance_id']}"
        nobody = http.post(f"{path}/signal", json={"event": "nobody-waits"})
        assert (nobody.status_code, nobody.json()["error"]["code"]) == (409, "rejected")
        assert http.post(f"{path}/release").status_code == 409  # not held
        assert http.post(f"{path}/retry").status_code == 409  # not failed
        http.post(f"{path}/cancel")
        again = http.post(f"{path}/cancel")
        assert (again.status_code, again.json()["error"]["code"]) == (409, "rejected")


def test_an_oversized_body_is_refused_before_it_is_read(api: Api) -> None:
    huge = json.dumps({"flow": "doubling", "input": "x" * (1024 * 1024)}).encode()
    with api.http() as http:
        declared = http.post(
            "/v1/instances", content=huge, headers={"content-type": "application/json"}
        )
        assert declared.status_code == 413
        assert declared.json()["error"] == {
            "status": 413,
            "code": "too_large",
            "message": "the request body is over 1048576 bytes",
            "field": "body",
            "problems": [],
        }

        def chunks() -> Any:  # no Content-Length: the body is counted as it arrives
            for offset in range(0, len(huge), 65536):
                yield huge[offset : offset + 65536]

        streamed = http.post(
            "/v1/instances", content=chunks(), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413, streamed.text
        assert streamed.json()["error"]["code"] == "too_large"
        # the server is fine afterwards
        assert http.get("/v1/flows").status_code == 200
