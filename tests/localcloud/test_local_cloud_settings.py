"""What a running local cloud leaves for the other commands, and when they take it.

No emulator here: the records are files, the processes are this one (alive) and a PID
that is gone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lambda_aws.settings import HANDLERS as TERRAFORM_HANDLERS
from rustyflower.adapters import localcloud
from rustyflower.adapters.cli.main import app
from rustyflower.adapters.localcloud.lambdas import HANDLERS
from rustyflower.adapters.localcloud.record import (
    LocalCloudRecord,
    active_records,
    cloud_environment,
    record_path,
)

ENVIRONMENT = {
    "AWS_ENDPOINT_URL": "http://127.0.0.1:4566",
    "AWS_REGION": "us-east-1",
    "RUSTYFLOWER_TOKENS_TABLE": "rustyflower-tokens",
}
TARGETS = ("AWS_ENDPOINT_URL", "RUSTYFLOWER_TOKENS_TABLE", "RUSTYFLOWER_STATE_MACHINE_PREFIX")


def record(pid: int | None = None) -> LocalCloudRecord:
    return LocalCloudRecord(
        cloud="aws",
        pid=os.getpid() if pid is None else pid,
        endpoint="http://127.0.0.1:4566",
        environment=ENVIRONMENT,
        targets=TARGETS,
    )


def gone_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    return finished.pid


def test_the_record_is_written_where_the_commands_look_and_read_back(tmp_path: Path) -> None:
    path = record().write(tmp_path / "data")
    assert path == record_path(tmp_path / "data", "aws") == tmp_path / "data" / "cloud-aws.json"
    assert LocalCloudRecord.read(path) == record()
    assert LocalCloudRecord.read(tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert LocalCloudRecord.read(tmp_path / "bad.json") is None


def test_the_settings_apply_while_the_cloud_runs(tmp_path: Path) -> None:
    record().write(tmp_path)
    environ = {"AWS_REGION": "eu-west-1", "AWS_PROFILE": "production", "HOME": "/home/x"}
    before = dict(environ)
    # all of the local cloud's settings, the region too; no profile laid over them
    assert cloud_environment(tmp_path, environ) == {**ENVIRONMENT, "HOME": "/home/x"}
    assert environ == before  # read, never changed


@pytest.mark.parametrize("target", TARGETS)
def test_a_cloud_set_in_the_environment_wins_over_the_record(tmp_path: Path, target: str) -> None:
    record().write(tmp_path)
    environ = {target: "elsewhere", "AWS_PROFILE": "production"}
    assert active_records(tmp_path, environ) == []
    assert cloud_environment(tmp_path, environ) == environ  # the profile kept too


def test_a_target_set_but_empty_points_nowhere(tmp_path: Path) -> None:
    record().write(tmp_path)
    assert cloud_environment(tmp_path, {"AWS_ENDPOINT_URL": "  "}) == ENVIRONMENT


def test_a_record_left_by_a_killed_cloud_is_ignored(tmp_path: Path) -> None:
    record(gone_pid()).write(tmp_path)
    assert active_records(tmp_path, {}) == []
    assert cloud_environment(tmp_path, {"AWS_PROFILE": "p"}) == {"AWS_PROFILE": "p"}


def test_the_local_functions_run_the_handlers_terraform_deploys() -> None:
    assert {name: TERRAFORM_HANDLERS[name] for name in HANDLERS} == HANDLERS


def test_without_the_local_extra_the_command_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(sys.modules):
        if name == "moto" or name.startswith(("moto.", "rustyflower.adapters.localcloud.aws")):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "moto", None)  # as if it were not installed
    # a module imported before is also an attribute of its package, which `from ... import`
    # would take without importing anything
    monkeypatch.delattr(localcloud, "aws", raising=False)
    result = CliRunner().invoke(app, ["cloud", "aws", "--data-dir", str(tmp_path)])
    assert result.exit_code == 3, (result.stdout, result.stderr)
    assert "pip install 'rustyflower[local]'" in result.stderr
    assert "Traceback" not in result.stderr
