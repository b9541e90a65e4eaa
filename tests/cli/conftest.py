"""Fixtures for the CLI tests: a real server, a key prefix per test, in-thread workers.

Most tests drive ``adapters.cli.main.app`` through typer's ``CliRunner``; a few run the
installed ``rustyflower`` command as a subprocess (exit codes, one-line errors, `dev`).
The server is the embedded Valkey binary as a separate process; ``server`` (from the
runner tests) adds Debian's redis-server for the tests that take it.
"""

from __future__ import annotations

import json
import os
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
from typer.testing import CliRunner, Result

from rustyflower.adapters.cli.main import app
from rustyflower.adapters.redis.keys import Keyspace
from rustyflower.adapters.redis.store import RedisStore
from rustyflower.adapters.redis.worker import Worker, WorkerOptions
from tests.cli import activities
from tests.redis.conftest import server  # noqa: F401 - the valkey + redis-server fixture
from tests.redis.servers import ServerProcess, valkey_binary

REPO = Path(__file__).resolve().parents[2]
FLOWS = Path(__file__).resolve().parent / "flows"
RUSTYFLOWER = str(Path(sys.executable).parent / "rustyflower")
ACTIVITIES = "tests.cli.activities"


@pytest.fixture(scope="session")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess("valkey", valkey_binary(), tmp_path_factory.mktemp("cli-valkey"))
    process.start()
    yield process
    process.stop()


@dataclass
class Cli:
    """The `rustyflower` app against one server, under a key prefix of its own."""

    url: str
    prefix: str
    workers: list[Worker] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.prefixes.append(self.prefix)

    @property
    def env(self) -> dict[str, str]:
        return {"RUSTYFLOWER_REDIS_URL": self.url, "RUSTYFLOWER_PREFIX": self.prefix}

    def __call__(self, *args: str | Path, ok: bool = True) -> Result:
        """Run a command in-process; with ``ok`` it must exit 0."""
        result = CliRunner().invoke(app, [str(arg) for arg in args], env=self.env)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        if ok:
            assert result.exit_code == 0, (result.stdout, result.stderr)
        return result

    def json(self, *args: str | Path, ok: bool = True) -> Any:
        return json.loads(self(*args, "--json", ok=ok).stdout)

    def subprocess(
        self, *args: str | Path, timeout: float = 60, **options: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run the installed `rustyflower` command."""
        env = {**os.environ, **self.env, **options.pop("env", {})}
        return subprocess.run(
            [RUSTYFLOWER, *(str(arg) for arg in args)],
            cwd=options.pop("cwd", REPO),
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **options,
        )

    @property
    def store(self) -> RedisStore:
        return RedisStore(redis.Redis.from_url(self.url), Keyspace(self.prefix))

    def with_prefix(self, prefix: str) -> Cli:
        return Cli(self.url, prefix, self.workers, self.prefixes)

    def start_worker(self, **options: Any) -> Worker:
        """A worker in this process (threads) with the test activities."""
        settings = {"concurrency": 2, "block_ms": 50, "timer_interval": 0.02}
        settings |= {"name": f"cli-test-{uuid.uuid4().hex[:6]}", **options}
        worker = Worker(self.store, activities.registry, WorkerOptions(**settings))
        worker.start()
        self.workers.append(worker)
        return worker

    def wait_status(self, instance_id: str, wanted: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status: dict[str, Any] = self.json("status", instance_id)
            if status["status"] == wanted:
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"{instance_id} is {status['status']}, not {wanted}")
            time.sleep(0.05)


def new_prefix() -> str:
    return f"c{uuid.uuid4().hex[:10]}"


@pytest.fixture
def cli(valkey: ServerProcess) -> Iterator[Cli]:
    made = Cli(valkey.url, new_prefix())
    yield from _cleanup(made, valkey.url)


@pytest.fixture
def cli_on_each_server(server: ServerProcess) -> Iterator[Cli]:  # noqa: F811 - the fixture
    """Like ``cli``, once against the embedded Valkey and once against Debian's redis-server."""
    made = Cli(server.url, new_prefix())
    yield from _cleanup(made, server.url)


def _cleanup(made: Cli, url: str) -> Iterator[Cli]:
    activities.FAILING.clear()
    yield made
    for worker in made.workers:
        worker.stop(timeout=5)
    client = redis.Redis.from_url(url)
    for prefix in made.prefixes:
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)
    client.close()
    activities.FAILING.clear()


@pytest.fixture
def registered(cli: Cli) -> Cli:
    """The test flows registered (with the test activities checked)."""
    cli("flows", "register", *sorted(FLOWS.glob("[!n]*.yaml")), "--activities", ACTIVITIES)
    return cli


@pytest.fixture
def working(registered: Cli) -> Cli:
    registered.start_worker()
    return registered
