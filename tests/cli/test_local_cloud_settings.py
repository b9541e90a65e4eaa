"""What a local cloud records for the other commands, and how they read it.

``rustyflower cloud azure`` records its settings in ``<data-dir>/cloud-azure.json``; the
continuity commands read them under the environment (cloud_settings.py). The local Azure
itself, as a subprocess, is in tests/continuity/test_local_azure_cli.py; finding the
Function App it runs is checked here on folders.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rustyflower.adapters.cli import cloud_settings
from rustyflower.adapters.cli.errors import CliEnvironmentError
from rustyflower.adapters.cli.main import app
from rustyflower.adapters.localcloud.function_app import (
    APP_FILE,
    FunctionAppNotFoundError,
    find_app_folder,
    provide_activities,
)
from rustyflower.core.activities import ActivityRegistry, load_registry

REPO = Path(__file__).resolve().parents[2]
URL = "RUSTYFLOWER_AZURE_FUNCTION_URL"
KEY = "RUSTYFLOWER_AZURE_FUNCTION_KEY"


def write_as(data_dir: Path, pid: int, settings: dict[str, str]) -> Path:
    """A settings file as another process (``pid``) would have written it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = cloud_settings.settings_file(data_dir, "azure")
    path.write_text(json.dumps({"pid": pid, "settings": settings}))
    return path


def dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(done.stdout)


def test_recorded_settings_are_defaults_under_the_environment(tmp_path: Path) -> None:
    path = cloud_settings.record(tmp_path, "azure", {URL: "http://127.0.0.1:7", KEY: "k"})
    assert path.stat().st_mode & 0o077 == 0  # it holds a function key
    environ = {URL: "https://app.example", KEY: "  ", "OTHER": "x"}
    merged = cloud_settings.cloud_environment(tmp_path, environ)
    assert merged[URL] == "https://app.example"  # set in the environment: it wins
    assert merged[KEY] == "k"  # set but empty: the recorded value
    assert merged["OTHER"] == "x"
    cloud_settings.forget(tmp_path, "azure")
    assert not path.exists()
    assert cloud_settings.cloud_environment(tmp_path, {}) == {}


def test_a_file_left_by_a_dead_process_is_ignored_and_replaced(tmp_path: Path) -> None:
    write_as(tmp_path, dead_pid(), {URL: "http://127.0.0.1:9"})
    assert cloud_settings.recorded(tmp_path) == {}
    assert cloud_settings.running(tmp_path, "azure") is None
    cloud_settings.record(tmp_path, "azure", {URL: "http://127.0.0.1:10"})
    assert cloud_settings.recorded(tmp_path) == {URL: "http://127.0.0.1:10"}


def test_a_live_local_cloud_is_never_overwritten_nor_removed(tmp_path: Path) -> None:
    other = os.getppid()  # alive, and not this process
    path = write_as(tmp_path, other, {URL: "http://127.0.0.1:11"})
    assert cloud_settings.running(tmp_path, "azure") == other
    assert cloud_settings.recorded(tmp_path) == {URL: "http://127.0.0.1:11"}
    with pytest.raises(CliEnvironmentError, match=f"already running \\(pid {other}\\)"):
        cloud_settings.record(tmp_path, "azure", {URL: "http://127.0.0.1:12"})
    cloud_settings.forget(tmp_path, "azure")
    assert path.exists()


def test_failover_reads_the_recorded_function_app(tmp_path: Path) -> None:
    """The file is read: the error is about the snapshot file, not a missing setting."""
    write_as(tmp_path, os.getppid(), {URL: "http://127.0.0.1:9", KEY: "k"})
    clean = {name: None for name in os.environ if name.startswith("RUSTYFLOWER_")}
    missing = tmp_path / "none.json"
    args = ["failover", "--to", "azure", "--snapshot", str(missing)]
    without = CliRunner().invoke(app, args, env=clean)
    assert without.exit_code == 3 and "no Function App" in without.stderr
    recorded = CliRunner().invoke(app, [*args, "--data-dir", str(tmp_path)], env=clean)
    assert "no Function App" not in recorded.stderr
    assert str(missing) in recorded.stderr + recorded.stdout


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
