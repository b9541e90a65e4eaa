"""`rustyflower worker --processes N`: N worker processes under one supervisor (issue 13).

The installed command runs against a real server: the processes share the work, one
that is killed is started again, SIGTERM stops them all gracefully, a supervisor killed
outright leaves no worker behind, and a process that cannot run stops everything with
its exit code.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from rustyflower.adapters.redis.keys import Keyspace
from tests.cli.conftest import ACTIVITIES, FLOWS, REPO, RUSTYFLOWER, Cli

pytestmark = [pytest.mark.emulator, pytest.mark.slow]


def _workers(cli: Cli) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(cli.url)
    try:
        keys = Keyspace(cli.prefix)
        found = [client.get(key) for key in client.scan_iter(keys.worker_health_pattern())]
        return [json.loads(raw) for raw in found if raw is not None]
    finally:
        client.close()


def _until(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().rpartition(")")[2].split()[0] != "Z"


@pytest.fixture
def supervisor(cli: Cli) -> Iterator[subprocess.Popen[str]]:
    registered = cli.subprocess("flows", "register", FLOWS / "greet.yaml")
    assert registered.returncode == 0, registered.stderr
    process = subprocess.Popen(
        [RUSTYFLOWER, "worker", "--activities", ACTIVITIES, "--name", "pool", "--processes", "2"],
        cwd=REPO,
        env={**os.environ, **cli.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield process
    if process.poll() is None:
        process.kill()
        process.communicate(timeout=30)


def test_processes_run_the_work_restart_and_stop_together(
    cli: Cli, supervisor: subprocess.Popen[str]
) -> None:
    workers = _until(lambda: len(_workers(cli)) == 2 and _workers(cli))
    assert sorted(worker["name"] for worker in workers) == ["pool-0", "pool-1"]
    pids = {worker["name"]: worker["pid"] for worker in workers}
    assert supervisor.pid not in pids.values()

    ids = []
    for index in range(8):
        started = cli.subprocess("start", "greet", "--input", json.dumps({"name": f"n{index}"}))
        assert started.returncode == 0, started.stderr
        ids.append(started.stdout.split()[0])
    for instance_id in ids:
        cli.wait_status(instance_id, "succeeded", timeout=30)

    os.kill(pids["pool-1"], signal.SIGKILL)  # the supervisor starts it again
    again = _until(
        lambda: [w for w in _workers(cli) if w["name"] == "pool-1" and w["pid"] != pids["pool-1"]]
    )
    done = cli.subprocess("start", "greet", "--input", '{"name": "after"}', "--wait")
    assert done.returncode == 0, done.stderr

    supervisor.send_signal(signal.SIGTERM)
    _, stderr = supervisor.communicate(timeout=60)
    assert supervisor.returncode == 0, stderr
    assert "exited" in stderr and "starting it again" in stderr
    assert not _alive(pids["pool-0"]) and not _alive(again[0]["pid"])
    assert "Traceback" not in stderr


def test_workers_stop_when_their_supervisor_is_killed(
    cli: Cli, supervisor: subprocess.Popen[str]
) -> None:
    workers = _until(lambda: len(_workers(cli)) == 2 and _workers(cli))
    supervisor.kill()
    supervisor.communicate(timeout=30)
    for worker in workers:
        _until(lambda pid=worker["pid"]: not _alive(pid))


def test_a_process_that_cannot_run_stops_them_all_with_its_code(cli: Cli) -> None:
    # the signing key check refuses every worker process at its start (exit 3)
    redis.Redis.from_url(cli.url).hset(Keyspace(cli.prefix).key_check(), "k1", "not the proof")
    keys = "k1:" + base64.b64encode(b"s" * 32).decode()
    result = cli.subprocess(
        "worker", "--activities", ACTIVITIES, "--processes", "2",
        env={"RUSTYFLOWER_SIGNING_KEYS": keys}, timeout=120,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "exited 3 times in a row" in result.stderr
    assert "could not run (exit 3)" in result.stderr.splitlines()[-1]
