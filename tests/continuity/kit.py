"""Helpers of the continuity tests (no tests here): the site, its flow, the CLI.

The *site* is the on-premises runner: a real Redis server (``tests/redis`` fixtures), a
store signed with the keys the cloud side knows, and a worker in this process running the
conformance activities (the same module the AWS Lambda and the Azure activity function
run). The CLI is driven in-process through typer's ``CliRunner`` with the site's
connection and the cloud settings in its environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from rustyflower.adapters.cli.main import app
from rustyflower.adapters.redis.conductor import Conductor
from rustyflower.adapters.redis.store import RedisStore
from rustyflower.core.engine import Snapshot
from rustyflower.core.model import parse_definition
from rustyflower.core.snapshot import SnapshotKeys
from tests.conformance.activities import registry as conformance_registry
from tests.redis.activities import running_worker
from tests.redis.conftest import Runtime

REST_SECONDS = 4
FLOW = parse_definition(
    {
        "name": "lifeboat",
        "version": "1",
        "start_at": "Prepare",
        "states": {
            "Prepare": {
                "type": "task",
                "activity": "add",
                "parameters": {"a.$": "$.amount", "b": 1},
                "result_path": "$.total",
                "next": "Approve",
            },
            "Approve": {
                "type": "wait_for_event",
                "event": "approval",
                "result_path": "$.decision",
                "next": "Rest",
            },
            "Rest": {"type": "wait", "seconds": REST_SECONDS, "next": "Finish"},
            "Finish": {
                "type": "task",
                "activity": "concat",
                "parameters": {"left.$": "$.decision.by", "right": " approved"},
                "result_path": "$.note",
                "end": True,
            },
        },
    }
)
INPUT = {"amount": 41}
APPROVAL = {"by": "ann"}
EXPECTED = {"amount": 41, "total": 42, "decision": {"by": "ann"}, "note": "ann approved"}
"""The output of an uninterrupted run (``test_the_reference_run_on_premises`` checks it)."""


def wait_until(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def command_output(stdout: str) -> str:
    """The command's stdout without the lines the in-process Lambda handlers printed there
    (Powertools logs and metrics, one JSON object a line, from moto's executor threads)."""
    lines = stdout.splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith(('{"level"', '{"_aws"')))


@dataclass
class Site:
    """The on-premises side of a test: store, conductor, worker, CLI environment."""

    runtime: Runtime
    keys: SnapshotKeys
    environment: dict[str, str] = field(default_factory=dict)
    store: RedisStore = field(init=False)
    conductor: Conductor = field(init=False)

    def __post_init__(self) -> None:
        self.store = RedisStore(self.runtime.client, self.runtime.keys, self.keys)
        self.conductor = Conductor(self.store)
        self.store.register(FLOW)

    @property
    def url(self) -> str:
        return self.runtime.server.url

    @contextlib.contextmanager
    def worker(self) -> Iterator[None]:
        with running_worker(
            self.url,
            self.runtime.keys,
            activities=conformance_registry,
            snapshot_keys=self.keys,
            timer_interval=0.02,
        ):
            yield

    def start(self, instance_id: str, flow_input: Any = None) -> Snapshot:
        return self.conductor.start(
            FLOW.name, INPUT if flow_input is None else flow_input, instance_id=instance_id
        )

    def wait_at(self, instance_id: str, position: str, timeout: float = 20.0) -> Snapshot:
        def there() -> Snapshot | None:
            if not self.store.exists(instance_id):
                return None  # a child flow the worker has not started yet
            snapshot = self.store.load(instance_id, fresh=True)
            return snapshot if snapshot.positions == [position] else None

        found: Snapshot = wait_until(f"{instance_id} at {position}", there, timeout)
        return found

    def wait_finished(self, instance_id: str, timeout: float = 30.0) -> Snapshot:
        def finished() -> Snapshot | None:
            snapshot = self.store.load(instance_id, fresh=True)
            return snapshot if snapshot.finished else None

        found: Snapshot = wait_until(f"{instance_id} to finish", finished, timeout)
        return found

    def cli_environment(self) -> dict[str, str]:
        """The settings every CLI call of this site runs with."""
        return {
            "RUSTYFLOWER_REDIS_URL": self.url,
            "RUSTYFLOWER_PREFIX": self.runtime.keys.prefix,
            **self.environment,
        }

    def settle_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Put the CLI's settings in the process environment for the whole test.

        CliRunner sets ``env`` in ``os.environ`` for one call and deletes it afterwards;
        a Lambda handler creating a boto3 client in moto's executor thread at that moment
        iterates ``os.environ`` and fails (``KeyError``). Settled once, nothing is deleted
        while executions run."""
        for name, value in self.cli_environment().items():
            monkeypatch.setenv(name, value)

    def cli(self, *args: str, ok: bool = True, env: Mapping[str, str] | None = None) -> Result:
        wanted = {**self.cli_environment(), **(env or {})}
        changes = {name: value for name, value in wanted.items() if os.environ.get(name) != value}
        result = CliRunner().invoke(app, list(args), env=changes)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        if ok:
            assert result.exit_code == 0, (result.stdout, result.stderr)
        return result

    def cli_json(self, *args: str, ok: bool = True, env: Mapping[str, str] | None = None) -> Any:
        result = self.cli(*args, "--json", ok=ok, env=env)
        return json.loads(command_output(result.stdout))

    def reference_run(self, instance_id: str) -> Snapshot:
        """The flow uninterrupted on premises (signalled as soon as it waits)."""
        self.start(instance_id)
        self.wait_at(instance_id, "Approve")
        self.conductor.signal(instance_id, "approval", APPROVAL)
        return self.wait_finished(instance_id)
