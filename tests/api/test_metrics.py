"""``/metrics`` and reports after a known run: the figures are exactly what happened.

The run: 5 ``doubling`` (one task), 3 ``twice`` (a task that fails its first attempt and
is retried after 1 s, then a second task), 2 ``refusing`` (a task that always fails),
one instance left waiting for an event, and one malformed work message (a dead letter).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from rustyflower import Flow, SnapshotKeys
from rustyflower.adapters.web import ApiSettings
from rustyflower.client import Client
from tests.api.conftest import FLOWS, TOKEN, Api, activities, serve
from tests.redis.servers import ServerProcess

AUTH = {"Authorization": f"Bearer {TOKEN}"}

pytestmark = pytest.mark.emulator


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def known_run(api: Api, http: httpx.Client) -> list[str]:
    started = [
        http.post("/v1/instances", json={"flow": flow, "input": {"value": n}}).json()["instance_id"]
        for flow, count in (("doubling", 5), ("twice", 3), ("refusing", 2))
        for n in range(count)
    ]
    waiting = http.post("/v1/instances", json={"flow": "approval"}).json()["instance_id"]
    raw = redis.Redis.from_url(api.server.url)
    raw.xadd(f"{api.prefix}:{{s0}}:q:normal", {"m": "not a work message"})
    raw.close()
    for instance_id in started:
        deadline = time.monotonic() + 20
        while http.get(f"/v1/instances/{instance_id}").json()["status"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    return [*started, waiting]


def test_metrics_match_a_known_run(api: Api) -> None:
    with api.http() as http:
        known_run(api, http)
        deadline = time.monotonic() + 10
        while True:  # the dead letter is the worker's to move
            found = samples(http.get("/metrics").text)
            if value(found, "rustyflower_dead_letters") == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    counter = "rustyflower_flows_started_total"
    assert [value(found, counter, flow=f) for f in ("doubling", "twice", "refusing")] == [5, 3, 2]
    assert value(found, counter, flow="approval") == 1
    finished = "rustyflower_flows_finished_total"
    assert value(found, finished, flow="doubling", status="succeeded") == 5
    assert value(found, finished, flow="twice", status="succeeded") == 3
    assert value(found, finished, flow="refusing", status="failed") == 2
    assert not any(
        name == finished and dict(labels).get("flow") == "approval" for name, labels in found
    )
    steps = "rustyflower_steps_finished_total"
    assert value(found, steps, flow="doubling", step="Double", outcome="succeeded") == 5
    assert value(found, steps, flow="twice", step="First", outcome="failed") == 3
    assert value(found, steps, flow="twice", step="First", outcome="succeeded") == 3
    assert value(found, steps, flow="twice", step="Second", outcome="succeeded") == 3
    assert value(found, steps, flow="refusing", step="Refuse", outcome="failed") == 2
    duration = "rustyflower_step_duration_seconds"
    assert value(found, f"{duration}_count", flow="twice", step="First") == 6  # two attempts each
    assert value(found, f"{duration}_bucket", flow="twice", step="First", le="+Inf") == 6
    assert value(found, f"{duration}_sum", flow="doubling", step="Double") < 5 * 1.0
    flow_duration = "rustyflower_flow_duration_seconds"
    # a retry 1 s later: every `twice` took over a second, every `doubling` less
    assert value(found, f"{flow_duration}_bucket", flow="twice", le="1.0") == 0
    assert value(found, f"{flow_duration}_bucket", flow="twice", le="5.0") == 3
    assert value(found, f"{flow_duration}_bucket", flow="doubling", le="1.0") == 5
    assert value(found, f"{flow_duration}_sum", flow="twice") >= 3.0
    instances = "rustyflower_instances"
    assert value(found, instances, status="succeeded") == 8
    assert value(found, instances, status="failed") == 2
    assert value(found, instances, status="running") == 1
    for priority in ("high", "normal", "low"):
        assert value(found, "rustyflower_queue_waiting", priority=priority) == 0
        assert value(found, "rustyflower_queue_in_progress", priority=priority) == 0
    assert value(found, "rustyflower_timers_overdue") == 0
    assert value(found, "rustyflower_dead_letters") == 1
    assert value(found, "rustyflower_workers_alive") == 1
    heartbeat = value(found, "rustyflower_worker_heartbeat_age_seconds", worker=f"api-{api.prefix}")
    assert 0 <= heartbeat < 15
    threads = {
        dict(labels)["thread"]: number
        for (name, labels), number in found.items()
        if name == "rustyflower_worker_thread_healthy"
        and dict(labels).get("worker") == f"api-{api.prefix}"
    }
    assert threads and set(threads.values()) == {1.0}, threads  # every thread of it is healthy
    assert any(thread.startswith("rustyflower-executor") for thread in threads), threads


def test_queue_depth_and_timer_backlog_while_no_worker_runs(
    server: ServerProcess, prefix: str
) -> None:
    """Without a worker, started work waits in the queue and due timers pile up."""
    running = serve(server, prefix, ApiSettings(tokens=frozenset({TOKEN}), webhooks=False))
    try:
        with Client.connect(server.url, prefix=prefix, keys=SnapshotKeys.none()) as client:
            client.register(FLOWS[0], activities=activities)
            client.register(Flow("pause", version="1").wait("Nap", seconds=1).build())
            client.register(Flow("sleep", version="1").wait("Long", seconds=3600).build())
            for _ in range(4):
                client.start("doubling", {"value": 1})
            client.start("doubling", {"value": 1}, priority="high")
            client.start("pause", {})
            client.start("sleep", {})
            time.sleep(1.5)  # the nap's timer is due and nobody fires it
            with httpx.Client(base_url=running.url, headers=AUTH) as http:
                found = samples(http.get("/metrics").text)
    finally:
        running.stop()
    assert value(found, "rustyflower_queue_waiting", priority="normal") == 4
    assert value(found, "rustyflower_queue_waiting", priority="high") == 1
    assert value(found, "rustyflower_queue_in_progress", priority="normal") == 0
    assert value(found, "rustyflower_timers_scheduled") == 2
    assert value(found, "rustyflower_timers_overdue") == 1
    assert 0.4 <= value(found, "rustyflower_timers_lag_seconds") < 10
    assert value(found, "rustyflower_workers_alive") == 0


def test_report_matches_the_run_in_the_api_and_the_cli(api: Api, tmp_path: Any) -> None:
    with api.http() as http:
        known_run(api, http)
        report = http.get("/v1/reports", params={"since": "1h"}).json()
    by_flow = {row["flow"]: row for row in report["flows"]}
    assert by_flow["doubling"] | {"p50_seconds": 0, "p95_seconds": 0} == {
        "flow": "doubling",
        "started": 5,
        "finished": 5,
        "succeeded": 5,
        "failed": 0,
        "cancelled": 0,
        "success_rate": 1.0,
        "p50_seconds": 0,
        "p95_seconds": 0,
    }
    assert by_flow["refusing"]["success_rate"] == 0.0
    assert by_flow["approval"]["started"] == 1 and by_flow["approval"]["finished"] == 0
    assert by_flow["twice"]["p50_seconds"] >= 1.0
    failing = [
        (s["flow"], s["step"], s["failures"], s["top_error"]) for s in report["most_failing_steps"]
    ]
    assert failing == [("twice", "First", 3, "Flaky"), ("refusing", "Refuse", 2, "PermissionError")]
    assert report["slowest_steps"][0]["flow"] == "twice"
    assert report["covered_from"] is None
    cli = subprocess.run(
        [sys.executable, "-m", "rustyflower.adapters.cli.main", "report", "--since", "1h",
         "--json", "--redis-url", api.server.url, "--prefix", api.prefix],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    from_cli = json.loads(cli.stdout)
    assert from_cli["flows"] == report["flows"]
    assert from_cli["most_failing_steps"] == report["most_failing_steps"]
    table = subprocess.run(
        [sys.executable, "-m", "rustyflower.adapters.cli.main", "report", "--since", "1h",
         "--redis-url", api.server.url, "--prefix", api.prefix],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert "most failing steps" in table.stdout and "PermissionError" in table.stdout
