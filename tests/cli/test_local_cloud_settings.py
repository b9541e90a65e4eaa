"""What a local cloud records for the other commands, and how they read it.

``rustyflower cloud azure`` records its settings in ``<data-dir>/cloud-azure.json``
through the one record module (adapters/localcloud/record.py, which ``cloud aws`` writes
through too); the continuity commands read them with the environment. The local Azure
itself, as a subprocess, is in tests/continuity/test_local_azure_cli.py; finding the
Function App it runs is checked here on folders.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rustyflower.adapters.cli.main import app
from rustyflower.adapters.localcloud.function_app import (
    APP_FILE,
    FunctionAppNotFoundError,
    find_app_folder,
    provide_activities,
)
from rustyflower.adapters.localcloud.record import (
    LocalCloudRecord,
    LocalCloudRunningError,
    cloud_environment,
    forget,
    record_path,
    running,
)
from rustyflower.core.activities import ActivityRegistry, load_registry

REPO = Path(__file__).resolve().parents[2]
URL = "RUSTYFLOWER_AZURE_FUNCTION_URL"
KEY = "RUSTYFLOWER_AZURE_FUNCTION_KEY"
STORAGE = "RUSTYFLOWER_AZURE_STORAGE"


def azure(pid: int, settings: dict[str, str]) -> LocalCloudRecord:
    """A local Azure's record as the process ``pid`` writes it."""
    return LocalCloudRecord(
        cloud="azure",
        pid=pid,
        endpoint=settings[URL],
        environment=settings,
        targets=(URL, STORAGE),
    )


def dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(done.stdout)


def test_a_recorded_azure_applies_wholly_unless_another_is_named(tmp_path: Path) -> None:
    path = azure(os.getpid(), {URL: "http://127.0.0.1:7", KEY: "k"}).write(tmp_path)
    assert path == record_path(tmp_path, "azure")
    assert path.stat().st_mode & 0o077 == 0  # it holds a function key
    blank = {URL: "  ", KEY: "mine", "OTHER": "x"}
    merged = cloud_environment(tmp_path, blank)
    assert merged == {URL: "http://127.0.0.1:7", KEY: "k", "OTHER": "x"}  # set but empty
    elsewhere = {URL: "https://app.example", "OTHER": "x"}
    assert cloud_environment(tmp_path, elsewhere) == elsewhere  # the key not mixed in
    forget(tmp_path, "azure")
    assert not path.exists()
    assert cloud_environment(tmp_path, {}) == {}


def test_a_file_left_by_a_dead_process_is_ignored_and_replaced(tmp_path: Path) -> None:
    azure(dead_pid(), {URL: "http://127.0.0.1:9"}).write(tmp_path)
    assert cloud_environment(tmp_path, {}) == {}
    assert running(tmp_path, "azure") is None
    azure(os.getpid(), {URL: "http://127.0.0.1:10"}).write(tmp_path)
    assert cloud_environment(tmp_path, {}) == {URL: "http://127.0.0.1:10"}


def test_a_live_local_cloud_is_never_overwritten_nor_removed(tmp_path: Path) -> None:
    other = os.getppid()  # alive, and not this process
    path = azure(other, {URL: "http://127.0.0.1:11"}).write(tmp_path)
    holder = running(tmp_path, "azure")
    assert holder is not None and holder.pid == other
    assert cloud_environment(tmp_path, {}) == {URL: "http://127.0.0.1:11"}
    with pytest.raises(LocalCloudRunningError, match=f"already running \\(pid {other}\\)"):
        azure(os.getpid(), {URL: "http://127.0.0.1:12"}).write(tmp_path)
    forget(tmp_path, "azure")
    assert path.exists()


def test_failover_reads_the_recorded_function_app(tmp_path: Path) -> None:
    """The file is read: the error is about the snapshot file, not a missing setting."""
    azure(os.getppid(), {URL: "http://127.0.0.1:9", KEY: "k"}).write(tmp_path)
    clean = {name: None for name in os.environ if name.startswith("RUSTYFLOWER_")}
    missing = tmp_path / "none.json"
    args = ["failover", "--to", "azure", "--snapshot", str(missing)]
    without = CliRunner().invoke(app, args, env=clean)
    assert without.exit_code == 3 and "no Function App" in without.stderr
    recorded = CliRunner().invoke(app, [*args, "--data-dir", str(tmp_path)], env=clean)
    assert "no Function App" not in recorded.stderr
    assert str(missing) in recorded.stdout + recorded.stderr


# --- the Function App the local Azure runs -----------------------------------------------------


def test_the_app_is_found_from_a_folder_of_the_checkout(tmp_path: Path) -> None:
    assert find_app_folder(None, REPO / "docs") == REPO
    assert find_app_folder(REPO) == REPO
    with pytest.raises(FunctionAppNotFoundError, match=f"--app {tmp_path}: no {APP_FILE}"):
        find_app_folder(tmp_path)


def test_a_built_app_folder_is_an_app(tmp_path: Path) -> None:
    built = tmp_path / "app"
    subprocess.run(
        [sys.executable, "-m", "functions_azure.build", str(built)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    assert find_app_folder(built) == built.resolve()


def test_the_activities_given_are_what_the_app_loads() -> None:
    registry = ActivityRegistry()
    spec = provide_activities(registry)
    assert load_registry(spec) is registry  # as the app's activity function loads it
