"""The checkpoint step: cadence, sealing, sink selection, and sink failures that do no harm."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from functions_azure.checkpoint import (
    DiscardingSink,
    checkpoint_request,
    sink_from_settings,
    write_checkpoint,
)
from functions_azure.function_app import app
from functions_azure.payloads import snapshot_text
from functions_azure.settings import AppSettings
from rustyflower.adapters.localcloud.durable_client import LocalDurableClient
from rustyflower.adapters.localcloud.durable_history import EPOCH
from rustyflower.adapters.localcloud.durable_host import DurableHost
from rustyflower.core.engine import start
from rustyflower.core.model import parse_definition
from rustyflower.core.settings import SettingsError
from rustyflower.core.snapshot.document import decode_snapshot
from tests.azure.support import (
    KEYS,
    MEMORY_SINK,
    conformance_durations,
    post_snapshot,
    start_body,
)

pytestmark = pytest.mark.usefixtures("azure_env")

REPO = Path(__file__).resolve().parents[2]

STEPS = parse_definition(
    {
        "name": "steps",
        "start_at": "One",
        "states": {
            "One": {"type": "wait", "seconds": 1, "next": "Two"},
            "Two": {"type": "wait", "seconds": 1, "next": "Three"},
            "Three": {"type": "wait", "seconds": 1, "next": "Four"},
            "Four": {"type": "wait", "seconds": 1, "end": True},
        },
    }
)


def run_steps(instance_id: str = "steps-1") -> Any:
    host = DurableHost(app, durations=conformance_durations)
    client = LocalDurableClient(host)
    snapshot = start(STEPS, {}, instance_id, EPOCH).snapshot
    assert post_snapshot(client, start_body(snapshot)).status_code == 202
    host.run()
    return host.instances[instance_id]


def seqs(instance_id: str = "steps-1") -> list[int]:
    return [seq for iid, seq, _ in MEMORY_SINK.puts if iid == instance_id]


def test_every_transition_is_checkpointed_by_default() -> None:
    instance = run_steps()
    assert instance.output["status"] == "succeeded"
    assert seqs() == [1, 2, 3, 4, 5]
    for _iid, seq, data in MEMORY_SINK.puts:
        assert decode_snapshot(data, KEYS).seq == seq  # sealed with the app's keys


def test_every_n_transitions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUSTYFLOWER_CHECKPOINT_EVERY", "2")
    run_steps()
    assert seqs() == [1, 3, 5]


def test_zero_keeps_only_the_final_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUSTYFLOWER_CHECKPOINT_EVERY", "0")
    instance = run_steps()
    assert seqs() == [5]
    assert instance.output["sealed"] is True
    assert decode_snapshot(instance.output["snapshot"], KEYS).status == "succeeded"


class BrokenSink:
    """A test fake of a sink whose storage is down."""

    def put(self, instance_id: str, seq: int, data: bytes) -> None:
        raise ConnectionError("storage is down")


def broken_sink(_settings: Any) -> BrokenSink:
    return BrokenSink()


def test_a_failing_sink_does_not_fail_the_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "RUSTYFLOWER_SNAPSHOT_SINK", "tests.azure.test_orchestrator_checkpoint:broken_sink"
    )
    instance = run_steps()
    assert instance.status == "Completed"
    assert instance.output["status"] == "succeeded"
    assert instance.output["sealed"] is True  # sealed, though not stored
    assert "storage is down" in instance.output["checkpoint_error"]
    assert instance.custom_status["checkpoint"]["failures"] == 5


def test_checkpoint_lag_shows_in_the_custom_status() -> None:
    host = DurableHost(app, durations=conformance_durations)
    snapshot = start(STEPS, {}, "steps-2", EPOCH).snapshot
    post_snapshot(LocalDurableClient(host), start_body(snapshot))
    host.run(until=EPOCH + timedelta(seconds=2.5))
    status = host.instances["steps-2"].custom_status
    assert status["seq"] == 3
    assert status["checkpoint"]["seq"] == 3


def test_write_checkpoint_answers() -> None:
    snapshot = start(STEPS, {}, "direct", EPOCH).snapshot
    text = snapshot_text(snapshot)
    answer = write_checkpoint(checkpoint_request(text, final=True), MEMORY_SINK, KEYS)
    assert answer["ok"] and answer["seq"] == 1
    assert decode_snapshot(answer["snapshot"], KEYS).instance_id == "direct"
    assert "snapshot" not in write_checkpoint(
        checkpoint_request(text, final=False), MEMORY_SINK, KEYS
    )
    bad = write_checkpoint({"snapshot": "{}"}, MEMORY_SINK, KEYS)
    assert not bad["ok"] and "MalformedSnapshotError" in bad["error"]
    assert not write_checkpoint({}, MEMORY_SINK, KEYS)["ok"]


def test_sink_selection() -> None:
    assert isinstance(sink_from_settings(AppSettings.from_env({})), DiscardingSink)
    blob = sink_from_settings(
        AppSettings.from_env({"RUSTYFLOWER_SNAPSHOT_CONNECTION": "UseDevelopmentStorage=true"})
    )
    assert type(blob).__name__ == "BlobSnapshotStore"
    custom = sink_from_settings(
        AppSettings.from_env({"RUSTYFLOWER_SNAPSHOT_SINK": "tests.azure.support:memory_sink"})
    )
    assert custom is MEMORY_SINK
    with pytest.raises(SettingsError):
        sink_from_settings(AppSettings.from_env({"RUSTYFLOWER_SNAPSHOT_SINK": "ftp"}))


def test_settings_are_checked() -> None:
    with pytest.raises(SettingsError, match="RUSTYFLOWER_CONTINUE_AS_NEW_AFTER"):
        AppSettings.from_env({"RUSTYFLOWER_CONTINUE_AS_NEW_AFTER": "0"})
    with pytest.raises(SettingsError, match="whole number"):
        AppSettings.from_env({"RUSTYFLOWER_CHECKPOINT_EVERY": "often"})
    assert AppSettings.from_env({"RUSTYFLOWER_SNAPSHOT_CONTAINER": "c"}).snapshot_sink == "blob"


def test_the_build_assembles_a_deployable_app_folder(tmp_path: Any) -> None:
    """``python -m functions_azure.build``: function_app.py at the root, packages vendored."""
    out = tmp_path / "app"
    subprocess.run(
        [sys.executable, "-m", "functions_azure.build", str(out), "--with", "tests/conformance"],
        check=True,
        cwd=REPO,
        capture_output=True,
    )
    for name in ("function_app.py", "host.json", "requirements.txt"):
        assert (out / name).is_file()
    assert (out / "rustyflower" / "core" / "engine" / "machine.py").is_file()
    assert (out / "rustyflower" / "adapters" / "azure" / "blob_store.py").is_file()
    assert not (out / "rustyflower" / "adapters" / "redis").exists()
    assert (out / "tests" / "conformance" / "activities.py").is_file()
    probe = (
        "import function_app, rustyflower.core, functions_azure;"
        "print(rustyflower.core.__file__);"
        "print(*sorted(f.get_function_name() for f in function_app.app.get_functions()))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], cwd=out, capture_output=True, text=True, check=True
    )
    core_file, *functions = found.stdout.split()
    assert core_file.startswith(str(out))
    # the shipped flows declare no triggers, so these are the app's own functions
    assert functions == sorted(
        [
            "continue_snapshot",
            "get_flow_instance",
            "raise_flow_event",
            "terminate_flow_instance",
            "rustyflower_orchestrator",
            "rustyflower_activity",
            "rustyflower_checkpoint",
            "rustyflower_signal",
            "rustyflower_watchdog",
        ]
    )
