"""A local AWS's record reaches ``failover`` as explicit settings, never through os.environ.

The AWS side is moto's server on loopback, in a process of its own (a real HTTP endpoint,
as ``cloud aws`` serves); the record is written as ``cloud aws`` writes it. The process
environment carries no AWS credentials, and a profile this machine does not have: only
the record's endpoint and credentials, handed to boto3 explicitly, can reach moto. moto
answering "no such state machine" (StateMachineDoesNotExist) is the proof the failover
got there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rustyflower.adapters.cli.main import app
from rustyflower.adapters.continuity.aws import AwsClients, AwsSettings
from rustyflower.adapters.continuity.errors import ContinuityError
from rustyflower.adapters.localcloud.aws import TARGETS
from rustyflower.adapters.localcloud.record import LocalCloudRecord, cloud_environment
from rustyflower.core.engine import start
from rustyflower.core.snapshot import SnapshotKeys
from rustyflower.core.snapshot.document import encode_snapshot
from tests.continuity.kit import FLOW
from tests.redis.servers import free_port

REGION = "us-east-1"
PREFIX = "arn:aws:states:us-east-1:123456789012:stateMachine:rf-"
CLOUD_SETTINGS = ("AWS_", "RUSTYFLOWER_")
MISSING_MACHINE = "has no state machine"
"""What failover says when AWS answers StateMachineDoesNotExist: only moto can."""


class WatchedEnviron(MutableMapping[str, str]):
    """``os.environ`` with every write noted: the commands must only read it."""

    def __init__(self, inner: MutableMapping[str, str]) -> None:
        self.inner = inner
        self.writes: list[str] = []

    def cloud_writes(self) -> list[str]:
        """The writes of cloud settings (typer briefly sets PYDANTIC_DISABLE_PLUGINS)."""
        return [w for w in self.writes if w.split(" ", 1)[1].startswith(CLOUD_SETTINGS)]

    def __getitem__(self, name: str) -> str:
        return self.inner[name]

    def __setitem__(self, name: str, value: str) -> None:
        self.writes.append(f"set {name}")
        self.inner[name] = value

    def __delitem__(self, name: str) -> None:
        self.writes.append(f"del {name}")
        del self.inner[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.inner)

    def __len__(self) -> int:
        return len(self.inner)

    def copy(self) -> dict[str, str]:
        return dict(self.inner)


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[str]:
    """moto's server in a process of its own (its own environment, as ``cloud aws``)."""
    port = free_port()
    address = f"http://127.0.0.1:{port}"
    log = (tmp_path / "moto.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{address}/moto-api/", timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield address
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


@pytest.fixture
def watched(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> WatchedEnviron:
    """No AWS or RustyFlower settings, a profile that is nowhere; every write noted."""
    for name in list(os.environ):
        if name.startswith(CLOUD_SETTINGS):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_PROFILE", "not-on-this-machine")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    found = WatchedEnviron(os.environ)
    monkeypatch.setattr(os, "environ", found)
    return found


def local_aws(data_dir: Path, endpoint: str) -> Path:
    """The record ``cloud aws`` writes for ``endpoint``."""
    return LocalCloudRecord(
        cloud="aws",
        pid=os.getpid(),
        endpoint=endpoint,
        environment={
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "RUSTYFLOWER_STATE_MACHINE_PREFIX": PREFIX,
        },
        targets=TARGETS,
    ).write(data_dir)


def snapshot_file(tmp_path: Path) -> Path:
    begun = start(FLOW, {"amount": 1}, "record-1", datetime.now(UTC))
    path = tmp_path / "record-1.snapshot"
    path.write_bytes(encode_snapshot(begun.snapshot, SnapshotKeys.from_env({})))
    return path


def failover(snapshot: Path, data_dir: Path, *more: str) -> tuple[int, str]:
    args = ["failover", "--to", "aws", "--snapshot", str(snapshot), "--data-dir", str(data_dir)]
    result = CliRunner().invoke(app, [*args, *more])
    return result.exit_code, result.stdout + result.stderr


def test_the_record_reaches_failover_without_touching_the_environment(
    tmp_path: Path, endpoint: str, watched: WatchedEnviron
) -> None:
    data_dir = tmp_path / "data"
    local_aws(data_dir, endpoint)
    before = dict(watched)
    code, said = failover(snapshot_file(tmp_path), data_dir)
    # moto answered: the record's endpoint and credentials reached boto3, and the
    # profile the environment names (absent here) was set aside
    assert MISSING_MACHINE in said, said
    assert f"{PREFIX}lifeboat-v1" in said
    assert code == 1
    assert watched.cloud_writes() == [], watched.writes
    assert dict(watched) == before


def test_an_endpoint_the_user_sets_is_a_target_the_record_does_not_apply(
    tmp_path: Path, endpoint: str, watched: WatchedEnviron, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    local_aws(data_dir, endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens: refused
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "mine")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "mine")
    watched.writes.clear()  # the user's settings, not the command's
    assert cloud_environment(data_dir)["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9"
    before = dict(watched)
    code, said = failover(
        snapshot_file(tmp_path), data_dir, "--region", REGION, "--state-machine-prefix", PREFIX
    )
    assert MISSING_MACHINE not in said
    assert "could not be reached" in said and "127.0.0.1:9" in said, said
    assert code == 1
    assert watched.cloud_writes() == [], watched.writes
    assert dict(watched) == before


def test_the_clients_take_the_endpoint_and_credentials_of_the_settings(
    endpoint: str, watched: WatchedEnviron
) -> None:
    settings = AwsSettings.from_env(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "key",
            "AWS_SECRET_ACCESS_KEY": "secret",
            "AWS_SESSION_TOKEN": "token",
        },
        region=REGION,
    )
    client = AwsClients(settings.region, settings=settings)("stepfunctions")
    assert client.meta.endpoint_url == endpoint
    credentials = client._request_signer._credentials  # what boto3 signs with
    assert (credentials.access_key, credentials.secret_key, credentials.token) == (
        "key",
        "secret",
        "token",
    )
    assert client.list_state_machines()["stateMachines"] == []  # moto answers them
    # no endpoint nor credentials given: boto3's usual chain, the named profile included
    plain = AwsClients(REGION, settings=AwsSettings.from_env({}))
    with pytest.raises(ContinuityError, match="not-on-this-machine"):
        plain("stepfunctions")
