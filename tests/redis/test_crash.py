"""Crash tests with real processes: a worker killed mid-activity, the server restarted.

Workers run in processes of their own (``tests/redis/worker_main.py``) against a server
of their own (the embedded Valkey or Debian's redis-server, append-only with fsync on
every write), which a test may kill and start again on the same data.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from rustyflower.adapters.redis.conductor import Conductor
from rustyflower.adapters.redis.keys import Keyspace
from rustyflower.adapters.redis.store import RedisStore
from rustyflower.core.builder import Flow, Retry
from tests.redis import activities
from tests.redis.activities import check_instance, executions, wait_finished, wait_until
from tests.redis.servers import ServerProcess, redis_binary, valkey_binary
from tests.tooling import missing_tool

pytestmark = [pytest.mark.emulator, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["valkey", "redis"])
def own_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    """A server for this test alone: it may be killed and restarted."""
    binary = valkey_binary() if request.param == "valkey" else redis_binary()
    if binary is None:
        missing_tool("redis-server is not installed (.ci/run installs Debian's redis-server)")
    process = ServerProcess(request.param, binary, tmp_path / "data")
    process.start()
    yield process
    process.stop(kill=True)


@dataclass
class Setup:
    server: ServerProcess
    client: redis.Redis
    keys: Keyspace
    store: RedisStore
    conductor: Conductor
    logs: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn_worker(self, **options: Any) -> subprocess.Popen[bytes]:
        """A worker process; returns once it takes work."""
        settings = {
            "concurrency": 2,
            "visibility-timeout": 2.0,
            "heartbeat-interval": 0.5,
            "name": f"w{len(self.workers)}",
            **options,
        }
        args = [sys.executable, "-m", "tests.redis.worker_main", self.server.url, self.keys.prefix]
        for name, value in settings.items():
            args += [f"--{name}", str(value)]
        log = (self.logs / f"worker-{len(self.workers)}.log").open("wb")
        process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=log)
        self.workers.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.strip() == b"ready", f"the worker did not start: {self.log_text()}"
        return process

    def log_text(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}"
            for path in sorted(self.logs.glob("worker-*.log"))
        )

    def ran(self) -> list[str]:
        return executions(self.client, self.keys.prefix)


@pytest.fixture
def setup(own_server: ServerProcess, tmp_path: Path) -> Iterator[Setup]:
    client = redis.Redis.from_url(own_server.url)
    keys = Keyspace(prefix=f"c{uuid.uuid4().hex[:8]}")
    store = RedisStore(client, keys)
    store.ensure_groups()
    activities.configure(own_server.url, keys.prefix)
    found = Setup(own_server, client, keys, store, Conductor(store), tmp_path)
    yield found
    for process in found.workers:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
    client.close()


def test_a_worker_killed_mid_activity_is_replaced_and_the_activity_retried(setup: Setup) -> None:
    flow = (
        Flow("crashy")
        .task("A", "count", parameters={"ms": 0}, result_path="$.a")
        .task("B", "count", parameters={"ms": 1500}, result_path="$.b")
        .task("C", "count", parameters={"ms": 0}, result_path="$.c")
        .build()
    )
    setup.store.register(flow)
    first = setup.spawn_worker()
    instance = setup.conductor.start("crashy", {}).instance_id
    wait_until(lambda: len(setup.ran()) >= 2, 10, what="B to start")
    time.sleep(0.3)
    first.send_signal(signal.SIGKILL)
    assert first.wait(timeout=10) == -signal.SIGKILL
    assert setup.store.info(instance).status == "running"
    setup.spawn_worker()
    try:
        status = wait_finished(setup.store, instance, timeout=20)
    except AssertionError:
        pytest.fail(f"the flow did not finish after the crash:\n{setup.log_text()}")
    assert status == "succeeded"
    ran = setup.ran()
    by_position = {position: [k for k in ran if k.split(":")[1] == position] for position in "ABC"}
    assert len(by_position["A"]) == 1 and len(by_position["C"]) == 1, ran
    assert len(by_position["B"]) == 2 and len(set(by_position["B"])) == 1, ran  # same key twice
    history = check_instance(setup.store, instance)
    done = [entry["position"] for entry in history if entry["kind"] == "TaskSucceeded"]
    assert done == ["A", "B", "C"]
    output = setup.store.load(instance, fresh=True).state.output
    assert output == {"a": {"ms": 0}, "b": {"ms": 1500}, "c": {"ms": 0}}
    assert "reclaiming message" in setup.log_text()


def test_the_server_restarted_mid_flow_every_flow_completes(setup: Setup) -> None:
    retry = Retry(interval_seconds=1, max_attempts=5, backoff_rate=1.0)
    steps = Flow("batch")
    for index in range(5):
        steps.task(
            f"S{index}",
            "count",
            parameters={"ms": 30, "step": index},
            result_path=f"$.s{index}",
            retry=[retry],
        )
    setup.store.register(steps.build())
    worker = setup.spawn_worker()
    instances = [setup.conductor.start("batch", {"n": n}).instance_id for n in range(20)]
    wait_until(lambda: len(setup.ran()) >= 30, 20, what="the batch to get going")
    assert len(setup.ran()) < 90, "the batch was nearly over before the restart"
    setup.server.stop(kill=True)
    time.sleep(1.0)  # an outage the client's own retries do not hide
    setup.server.start()
    try:
        for instance in instances:
            assert wait_finished(setup.store, instance, timeout=40) == "succeeded"
    except AssertionError:
        pytest.fail(f"not every flow finished after the restart:\n{setup.log_text()}")
    assert worker.poll() is None, "the worker died in the outage"
    for n, instance in enumerate(instances):
        history = check_instance(setup.store, instance)
        done = [entry["position"] for entry in history if entry["kind"] == "TaskSucceeded"]
        assert done == [f"S{index}" for index in range(5)], history
        output = setup.store.load(instance, fresh=True).state.output
        assert output == {"n": n} | {f"s{i}": {"ms": 30, "step": i} for i in range(5)}
    assert "Traceback" not in setup.log_text()


def test_sigterm_lets_the_running_activity_finish(setup: Setup) -> None:
    setup.store.register(Flow("graceful").task("Slow", "count", parameters={"ms": 1200}).build())
    worker = setup.spawn_worker()
    instance = setup.conductor.start("graceful", {}).instance_id
    wait_until(setup.ran, 10, what="the activity to start")
    asked = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    code = worker.wait(timeout=20)
    took = time.monotonic() - asked
    assert code == 0, setup.log_text()
    assert took >= 0.8, "the worker exited without waiting for its activity"
    # the activity's result was applied before the worker exited
    info = setup.store.info(instance)
    assert info.status == "succeeded"
    assert setup.ran() == [setup.ran()[0]]  # it ran once
    check_instance(setup.store, instance)
    assert "worker exited cleanly" in setup.log_text()
    assert "Traceback" not in setup.log_text()
