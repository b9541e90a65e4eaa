"""`rustyflower dev` as a real process: start, use, stop with SIGTERM, start again, keep all."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.cli.conftest import ACTIVITIES, FLOWS, REPO, RUSTYFLOWER

pytestmark = pytest.mark.emulator


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RUSTYFLOWER_")}


def rustyflower(data_dir: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RUSTYFLOWER, *(str(arg) for arg in args), "--data-dir", str(data_dir)],
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextlib.contextmanager
def dev_server(data_dir: Path) -> Iterator[subprocess.Popen[str]]:
    """`rustyflower dev` until the block ends; then SIGTERM, and it must exit 0."""
    process = subprocess.Popen(
        [RUSTYFLOWER, "dev", "--data-dir", str(data_dir), "--activities", ACTIVITIES],
        cwd=REPO,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url_file = data_dir / "server.url"
    try:
        deadline = time.monotonic() + 30
        while not serving(data_dir, process.pid):  # a stale server.url may be there already
            if process.poll() is not None:
                raise AssertionError(f"dev exited early: {process.communicate()}")
            assert time.monotonic() < deadline, "dev did not write its server.url"
            time.sleep(0.05)
        yield process
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
        assert "RustyFlower dev server at redis://127.0.0.1:" in stdout
        assert "HTTP API at http://127.0.0.1:" in stdout  # dev serves the API on loopback
        assert "Traceback" not in stderr
        assert not url_file.exists()  # stopped cleanly: the URL file is gone
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if url_file.is_file():  # the embedded server outlived `dev`: stop it (ours only)
            with contextlib.suppress(redis.RedisError):
                redis.Redis.from_url(url_file.read_text().strip()).shutdown(nosave=True)


def serving(data_dir: Path, owner: int) -> bool:
    """Whether the `dev` of PID ``owner`` has its server up (it writes server.url last)."""
    try:
        recorded = json.loads((data_dir / "server.pid").read_text())
    except (FileNotFoundError, ValueError):
        return False
    return recorded.get("owner") == owner and (data_dir / "server.url").is_file()


def test_dev_keeps_every_instance_across_restarts(tmp_path: Path) -> None:
    data_dir = tmp_path / ".rustyflower"
    with dev_server(data_dir):
        registered = rustyflower(
            data_dir, "flows", "register", FLOWS / "greet.yaml", FLOWS / "approval.yaml"
        )
        assert registered.returncode == 0, registered.stderr
        done = rustyflower(data_dir, "start", "greet", "--input", '{"name": "Dev"}', "--wait")
        assert done.returncode == 0, done.stderr
        finished_id = done.stdout.splitlines()[0]
        waiting = rustyflower(data_dir, "start", "approval", "--id", "keep-me")
        assert waiting.returncode == 0 and waiting.stdout.strip() == "keep-me"

        second = rustyflower(data_dir, "dev")
        assert second.returncode == 3
        assert "already running" in second.stderr

    with dev_server(data_dir):
        status = json.loads(rustyflower(data_dir, "status", "keep-me", "--json").stdout)
        assert status["status"] == "running" and status["positions"] == ["Await approval"]
        again = json.loads(rustyflower(data_dir, "status", finished_id, "--json").stdout)
        assert again["status"] == "succeeded" and again["output"] == {"greeting": "hello Dev"}
        assert rustyflower(data_dir, "signal", "keep-me", "approval").returncode == 0
        deadline = time.monotonic() + 20
        while True:
            status = json.loads(rustyflower(data_dir, "status", "keep-me", "--json").stdout)
            if status["status"] == "succeeded" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert status["status"] == "succeeded", status
        listed = json.loads(rustyflower(data_dir, "list", "--json").stdout)
        assert sorted(row["instance_id"] for row in listed) == sorted([finished_id, "keep-me"])

    # with the server stopped, client commands say so
    stopped = rustyflower(data_dir, "list")
    assert stopped.returncode == 3 and "no Redis configured" in stopped.stderr


def test_dev_after_kill_9_stops_the_orphaned_server_and_starts_again(tmp_path: Path) -> None:
    """Before: `kill -9` left the embedded Valkey running, and the next `dev` refused to
    start ('already running') until someone found and killed the server by hand."""
    data_dir = tmp_path / ".rustyflower"
    killed = subprocess.Popen(
        [RUSTYFLOWER, "dev", "--data-dir", str(data_dir), "--activities", ACTIVITIES],
        cwd=REPO,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url_file = data_dir / "server.url"
    deadline = time.monotonic() + 30
    while not url_file.is_file():
        assert killed.poll() is None and time.monotonic() < deadline, "dev did not start"
        time.sleep(0.05)
    orphan = redis.Redis.from_url(url_file.read_text().strip())
    orphan_pid = int(orphan.info("server")["process_id"])
    registered = rustyflower(data_dir, "flows", "register", FLOWS / "greet.yaml")
    assert registered.returncode == 0, registered.stderr
    killed.kill()  # kill -9: no cleanup, the server runs on
    killed.wait()
    assert orphan.ping()

    with dev_server(data_dir):
        listed = json.loads(rustyflower(data_dir, "flows", "list", "--json").stdout)
        assert [flow["name"] for flow in listed] == ["greet"]  # the same data
        assert not running(orphan_pid)  # stopped, not serving beside the new one


def running(pid: int) -> bool:
    """Whether ``pid`` runs; an exited process its new parent has not reaped does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
