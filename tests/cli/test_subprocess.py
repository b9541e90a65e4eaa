"""The installed `rustyflower` command as a real process: exit codes and one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis

from rustyflower.adapters.redis.keys import Keyspace
from tests.cli.conftest import ACTIVITIES, FLOWS, REPO, RUSTYFLOWER, Cli
from tests.redis.servers import ServerProcess, free_port, valkey_binary


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUSTYFLOWER_")}
    return env | extra


def run(*args: str | Path, cwd: Path = REPO, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RUSTYFLOWER, *(str(arg) for arg in args)],
        cwd=cwd,
        env=clean_env(**extra),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and "Traceback" not in stderr
    return lines[0]


# --- without a server ---------------------------------------------------------------------------


def test_unreachable_redis_exits_3_with_one_line_and_no_password() -> None:
    url = f"redis://ops:hunter2@127.0.0.1:{free_port()}/0"
    result = run("list", "--redis-url", url)
    assert result.returncode == 3
    message = one_line(result.stderr)
    assert "cannot reach Redis at redis://ops:***@127.0.0.1" in message
    assert "hunter2" not in result.stderr + result.stdout

    from_env = run("status", "some-id", RUSTYFLOWER_REDIS_URL=url)
    assert from_env.returncode == 3 and "cannot reach Redis" in one_line(from_env.stderr)


def test_no_redis_configured_exits_3(tmp_path: Path) -> None:
    result = run("list", cwd=tmp_path)
    assert result.returncode == 3
    assert "no Redis configured: start `rustyflower dev`" in one_line(result.stderr)
    not_a_url = run("list", "--redis-url", "http://localhost:6379")
    assert not_a_url.returncode == 3 and "is not a Redis URL" in one_line(not_a_url.stderr)


def test_invalid_json_exits_2_before_connecting() -> None:
    result = run("start", "greet", "--input", "{not json", "--redis-url", "redis://nowhere:1")
    assert result.returncode == 2
    assert "--input is not valid JSON" in one_line(result.stderr)
    signal_data = run("signal", "x", "approval", "--data", "[1,", "--redis-url", "redis://x:1")
    assert signal_data.returncode == 2 and "--data" in one_line(signal_data.stderr)


def test_usage_errors_exit_2() -> None:
    assert run("start").returncode == 2  # missing argument (typer's usage error)
    assert run("list", "--limit", "0").returncode == 2


# --- against a server ---------------------------------------------------------------------------


@pytest.mark.emulator
def test_worker_command_runs_flows_and_stops_gracefully_on_sigterm(cli: Cli) -> None:
    registered = cli.subprocess("flows", "register", FLOWS / "greet.yaml", FLOWS / "fragile.yaml")
    assert registered.returncode == 0, registered.stderr
    cli.subprocess("flows", "register", FLOWS / "approval.yaml")

    worker = subprocess.Popen(
        [RUSTYFLOWER, "worker", "--activities", ACTIVITIES, "--name", "w1", "--concurrency", "2"],
        cwd=REPO,
        env={**os.environ, **cli.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        done = cli.subprocess("start", "greet", "--input", '{"name": "Ann"}', "--wait")
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert lines[1] == f"succeeded instance {lines[0]}"
        assert json.loads("\n".join(lines[2:])) == {"greeting": "hello Ann"}

        failed = cli.subprocess("start", "fragile", "--input", '{"fail": true}', "--wait")
        assert failed.returncode == 1 and "Boom: it broke" in failed.stdout

        waiting = cli.subprocess("start", "approval", "--wait", "--timeout", "0.3")
        assert waiting.returncode == 3
        assert "still running after 0.3 s" in waiting.stderr.splitlines()[-1]

        unknown = cli.subprocess("start", "nope")
        assert unknown.returncode == 2 and "unknown flow 'nope'" in one_line(unknown.stderr)

        lease = redis.Redis.from_url(cli.url).get(Keyspace(cli.prefix).scheduler_lease())
        assert lease is not None and b"w1" in lease  # the worker runs the scheduler too
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    assert "stopping" in stderr and "stopped" in stderr
    assert "Traceback" not in stderr


@pytest.mark.emulator
def test_redis_going_away_during_a_command_exits_3(tmp_path: Path) -> None:
    server = ServerProcess("valkey", valkey_binary(), tmp_path / "valkey")
    server.start()
    try:
        env = {"RUSTYFLOWER_REDIS_URL": server.url, "RUSTYFLOWER_PREFIX": "gone"}
        assert run("flows", "register", FLOWS / "approval.yaml", **env).returncode == 0
        follower = subprocess.Popen(
            [RUSTYFLOWER, "start", "approval", "--wait"],
            cwd=REPO,
            env=clean_env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert follower.stdout is not None
        instance_id = follower.stdout.readline().strip()  # started, now following
        assert instance_id
        time.sleep(0.3)
        server.stop(kill=True)
        _, stderr = follower.communicate(timeout=60)
    finally:
        server.stop()
    assert follower.returncode == 3, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert errors == [stderr.splitlines()[-1]] and "Traceback" not in stderr
    assert f"Redis at {server.url} went away" in errors[0]
