"""The API's views for operators (what the dashboard shows): a step's input and output, a
flow's definition, workers, queues and schedules, over a real server and worker."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from rustyflower import read_definition
from tests.api.conftest import Api

pytestmark = pytest.mark.emulator


def until(http: httpx.Client, path: str, check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        body = http.get(path).json()
        if check(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_steps_show_each_visit_with_its_input_and_output(api: Api) -> None:
    with api.http() as http:
        started = http.post("/v1/instances", json={"flow": "approval", "input": {"n": 1}}).json()
        path = f"/v1/instances/{started['instance_id']}/steps"
        (waiting,) = http.get(path).json()
        assert waiting["position"] == "Wait" and waiting["input"] == {"n": 1}
        assert (waiting["left_at"], waiting["output"]) == (None, None)
        http.post(
            f"/v1/instances/{started['instance_id']}/signal",
            json={"event": "approval", "data": {"ok": True}},
        )
        visits = http.get(path).json()
        assert [(v["state"], v["input"], v["output"]) for v in visits] == [
            ("Wait", {"n": 1}, {"n": 1, "answer": {"ok": True}}),
            ("Done", {"n": 1, "answer": {"ok": True}}, {"n": 1, "answer": {"ok": True}}),
        ]
        assert visits[0]["entered_seq"] == 1 and visits[0]["left_seq"] == 2
        missing = http.get("/v1/instances/nobody/steps")
        assert (missing.status_code, missing.json()["error"]["code"]) == (404, "unknown_instance")


def test_a_flows_definition(api: Api) -> None:
    with api.http() as http:
        body = http.get("/v1/flows/approval").json()
        assert (body["name"], body["version"]) == ("approval", "1")
        assert body["definition"]["states"]["Wait"]["event"] == "approval"
        assert http.get("/v1/flows/approval", params={"version": "1"}).json() == body
        unknown = http.get("/v1/flows/approval", params={"version": "9"})
        assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_flow")
        assert "version '9'" in unknown.json()["error"]["message"]
        assert http.get("/v1/flows/nothing").status_code == 404


def test_workers_show_heartbeats_and_thread_health(api: Api) -> None:
    with api.http() as http:
        body = until(http, "/v1/workers", lambda b: b["alive"] >= 1)
    (worker,) = [w for w in body["workers"] if w["name"] == f"api-{api.prefix}"]
    assert worker["alive"] and worker["healthy"]
    assert 0 <= worker["heartbeat_age_seconds"] < 15
    assert worker["last_heartbeat"].endswith("Z")
    assert "double" in worker["activities"] and worker["concurrency"] == 2
    assert worker["threads"] and all(thread["healthy"] for thread in worker["threads"])
    assert {"activities", "failures"} <= set(worker["stats"])
    assert body["routed"] == []


def test_queues_count_waiting_work_and_timers(api: Api) -> None:
    with api.http() as http:
        idle = until(http, "/v1/queues", lambda b: b["waiting"] == 0 and b["in_progress"] == 0)
        assert [row["priority"] for row in idle["queues"]] == ["high", "normal", "low"]
        assert idle["dead_letters"] == 0 and idle["deferred"] == 0
        assert idle["timers"]["overdue"] == 0 and idle["timers"]["lag_seconds"] == 0
        # an instance that waits for an event holds no queued work; the flow timeout of
        # the order example is a timer
        api.client.register(read_definition("examples/order/flow.yaml"))
        body = http.post(
            "/v1/instances",
            json={"flow": "order", "input": {"order_id": "Q", "total": 1, "items": []}},
        ).json()
        timers = until(http, "/v1/queues", lambda b: b["timers"]["scheduled"] >= 2)
        assert timers["timers"]["scheduled"] >= 2  # the flow's and the task's timeouts
        # nothing runs charge_card here: its work is routed and waits
        routed = until(http, "/v1/queues", lambda b: b["routed"])
        assert routed["routed"][0]["activity"] == "charge_card"
        assert routed["routed"][0]["workers"] == []
        http.post(f"/v1/instances/{body['instance_id']}/cancel")


def test_schedules_list_their_next_fire(api: Api) -> None:
    api.client.register(read_definition("examples/nightly_report/flow.yaml"))
    with api.http() as http:
        (schedule,) = http.get("/v1/schedules").json()
    assert (schedule["name"], schedule["flow"]) == ("nightly_report:nightly", "nightly_report")
    assert schedule["cron"] == "0 2 * * *" and schedule["timezone"] == "Europe/Berlin"
    assert schedule["paused"] is False and schedule["next_fire"].endswith("Z")
    assert schedule["last_fire"] is None and schedule["declared_by"] == "nightly_report"
