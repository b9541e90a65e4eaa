"""rustyflower.worker: the embedded server and an in-process worker, on real servers."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis

from rustyflower import ActivityRegistry, Flow, SnapshotKeys
from rustyflower.client import Client
from rustyflower.worker import EmbeddedServer, Worker
from tests.redis.servers import ServerProcess

pytestmark = pytest.mark.emulator


def waiting_flow() -> Flow:
    return Flow("waiting").wait_for_event("Wait", "go").succeed("Done")


def test_the_embedded_server_keeps_instances_across_restarts(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path)
    with pytest.raises(RuntimeError, match="not started"):
        server.url  # noqa: B018
    with server:
        assert server.running
        assert (tmp_path / "server.url").read_text().strip() == server.url
        with Client.connect(data_dir=tmp_path, keys=SnapshotKeys.none()) as client:
            client.register(waiting_flow().build())
            instance_id = client.start("waiting", {"n": 1}).id
    assert not server.running
    assert not (tmp_path / "server.url").exists()
    with server, Client.connect(server.url, keys=SnapshotKeys.none()) as client:
        again = client.instance(instance_id)
        assert again.status().positions == ("Wait",)
        again.signal("go", 1)
        assert again.result(timeout=5) == 1


def test_a_worker_runs_activities_and_stops_its_threads(
    server: ServerProcess, client: Client
) -> None:
    activities = ActivityRegistry()
    activities.register(lambda payload: payload + 1, name="increment")
    client.register(Flow("adding").task("Add", "increment").build())
    before = {thread for thread in threading.enumerate() if thread.name.startswith("rustyflower")}
    with Worker(client, activities, concurrency=1, name="w-adding", grace_period=1):
        assert client.start("adding", 41).result(timeout=10) == 42
    time.sleep(0.1)
    after = {thread for thread in threading.enumerate() if thread.name.startswith("rustyflower")}
    assert after <= before


def test_a_worker_with_the_scheduler_leads_by_lease(
    server: ServerProcess, client: Client, prefix: str
) -> None:
    probe = redis.Redis.from_url(server.url)
    lease = f"{prefix}:scheduler:lease"
    try:
        with Worker(client, ActivityRegistry(), name="w-scheduling", scheduler=True) as worker:
            deadline = time.monotonic() + 10
            while probe.get(lease) != b"w-scheduling" and time.monotonic() < deadline:
                time.sleep(0.05)
            assert probe.get(lease) == worker.name.encode()
        assert probe.get(lease) is None  # given back on the way out
    finally:
        probe.close()
