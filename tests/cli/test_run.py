"""`rustyflower run`: a flow in this process, on the real clock or (--virtual-time) a virtual one.

No server is involved. Most runs go through typer's ``CliRunner`` (in-process, so their
time can be measured without the interpreter's start-up); the timeout at the deadline is
checked on the installed command as a real process, whose exit must not wait for the
abandoned call.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from rustyflower.adapters.cli.main import app
from tests.cli.conftest import RUSTYFLOWER

ACTIVITIES = """
import time
from rustyflower import ActivityRegistry

registry = ActivityRegistry()


class Boom(Exception):
    pass


@registry.activity
def nap(payload):
    time.sleep(payload["seconds"])
    return {"slept": payload["seconds"]}


@registry.activity(timeout_seconds=1)
def bounded_nap(payload):
    time.sleep(payload["seconds"])
    return {"slept": payload["seconds"]}


@registry.activity
def greet(payload):
    return {"greeting": "hello " + payload.get("name", "world")}


@registry.activity
def boom(payload):
    raise Boom("it broke")
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "acts.py").write_text(ACTIVITIES, encoding="utf-8")
    return tmp_path


def write_flow(folder: Path, name: str, states: dict[str, Any], start_at: str) -> Path:
    path = folder / f"{name}.json"
    document = {"name": name, "version": "1", "start_at": start_at, "states": states}
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def run(project: Path, flow: Path, *args: str) -> Result:
    return CliRunner().invoke(
        app, ["run", str(flow), "--activities", str(project / "acts.py"), *args]
    )


def task(activity: str, **more: Any) -> dict[str, Any]:
    return {"type": "task", "activity": activity, "end": True, **more}


# --- a task's timeout on the real clock (regression: the call ran to its end) -----------------


def test_a_sync_activity_past_its_timeout_fails_at_the_deadline(project: Path) -> None:
    """A 30 s activity with a 1 s timeout: States.Timeout after 1 s, as on Redis and AWS;
    the process exits then, without waiting for the abandoned call."""
    flow = write_flow(project, "slow", {"A": task("nap", timeout_seconds=1)}, "A")
    began = time.monotonic()
    finished = subprocess.run(
        [RUSTYFLOWER, "run", str(flow), "--activities", "acts.py", "--input", '{"seconds": 30}'],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    seconds = time.monotonic() - began
    assert finished.returncode == 1, finished.stderr
    assert "States.Timeout: state 'A' exceeded its timeout_seconds" in finished.stdout
    assert "TimedOut" in finished.stdout
    assert seconds < 10


def test_an_activity_default_timeout_applies_as_on_the_runner(project: Path) -> None:
    flow = write_flow(project, "bounded", {"A": task("bounded_nap")}, "A")
    began = time.monotonic()
    result = run(project, flow, "--input", '{"seconds": 3}', "--json")
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["error"] == "States.Timeout"
    assert time.monotonic() - began < 2.5


def test_a_timed_out_call_is_retried(project: Path) -> None:
    retried = task(
        "nap",
        timeout_seconds=1,
        retry=[{"errors": ["States.Timeout"], "interval_seconds": 1, "max_attempts": 1}],
        catch=[{"errors": ["States.Timeout"], "next": "Greet"}],
        end=False,
        next="Greet",
    )
    flow = write_flow(project, "retried", {"A": retried, "Greet": task("greet")}, "A")
    result = run(project, flow, "--input", '{"seconds": 2}')
    assert result.exit_code == 0, result.output
    assert result.stdout.count("TimedOut") == 2  # the first attempt, then the retry
    assert '"greeting": "hello world"' in result.stdout


# --- --virtual-time ---------------------------------------------------------------------------


HOUR_LONG = {
    "Sleep": {"type": "wait", "seconds": 3600, "next": "Ask"},
    "Ask": {
        "type": "wait_for_event",
        "event": "approval",
        "timeout_seconds": 7200,
        "on_timeout": "Greet",
        "result_path": "$.approval",
        "next": "Greet",
    },
    "Greet": task("greet"),
}


def test_virtual_time_runs_hour_long_waits_in_well_under_a_second(project: Path) -> None:
    flow = write_flow(project, "hours", HOUR_LONG, "Sleep")
    began = time.monotonic()
    result = run(project, flow, "--virtual-time", "--input", '{"name": "Di"}')
    seconds = time.monotonic() - began
    assert result.exit_code == 0, result.output
    assert seconds < 1.0
    assert "succeeded instance" in result.stdout
    assert '"greeting": "hello Di"' in result.stdout
    assert "10800.000s" in result.stdout  # the timeline shows virtual time: 1 h + 2 h


def test_virtual_time_delivers_events_and_writes_the_snapshot(project: Path) -> None:
    flow = write_flow(project, "hours", HOUR_LONG, "Sleep")
    out = project / "final.json"
    result = run(
        project,
        flow,
        "--virtual-time",
        "--event",
        'approval={"ok": true}',
        "--snapshot-out",
        str(out),
        "--json",
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["status"] == "succeeded"
    assert shown["transitions"] == 4
    assert shown["output"] == {"greeting": "hello world"}
    inspected = CliRunner().invoke(app, ["inspect", str(out), "--json"])
    assert inspected.exit_code == 0, inspected.output
    assert json.loads(inspected.stdout)["status"] == "succeeded"


@pytest.mark.parametrize("virtual", [False, True], ids=["real-clock", "virtual-time"])
def test_exit_codes(project: Path, virtual: bool) -> None:
    clock = ["--virtual-time"] if virtual else []
    failing = write_flow(project, "failing", {"A": task("boom")}, "A")
    failed = run(project, failing, *clock)
    assert failed.exit_code == 1
    assert "Boom: it broke" in failed.stdout

    waiting = write_flow(
        project, "waiting", {"A": {"type": "wait_for_event", "event": "go", "end": True}}, "A"
    )
    waited = run(project, waiting, *clock)
    assert waited.exit_code == 0
    assert "waiting at A (use --event NAME=JSON)" in waited.stdout

    bad_input = run(project, failing, *clock, "--input", "{nope")
    assert bad_input.exit_code == 2
    assert "--input is not valid JSON" in bad_input.stderr

    unknown = write_flow(project, "unknown", {"A": task("gret")}, "A")
    refused = run(project, unknown, *clock)
    assert refused.exit_code == 2
    assert "unknown activity 'gret' (did you mean 'greet'?)" in refused.stderr


def test_an_endless_flow_on_virtual_time_stops_with_one_line(project: Path) -> None:
    polling = {
        "A": {"type": "wait", "seconds": 60, "next": "B"},
        "B": {
            "type": "choice",
            "choices": [{"when": {"variable": "$.stop", "boolean_equals": True}, "next": "C"}],
            "default": "A",
        },
        "C": {"type": "succeed"},
    }
    loop = write_flow(project, "loop", polling, "A")
    result = run(project, loop, "--virtual-time", "--input", '{"stop": false}', "--json")
    assert result.exit_code == 2
    assert "more than 10000 events; an endless flow?" in result.stderr


def test_a_sub_flow_runs_and_an_unknown_one_fails_the_call(project: Path) -> None:
    child = write_flow(project, "child", {"G": task("greet")}, "G")
    parent = write_flow(
        project,
        "parent",
        {"Call": {"type": "sub_flow", "flow": "child", "result_path": "$.child", "end": True}},
        "Call",
    )
    ran = run(project, parent, "--subflow", str(child), "--json")
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["output"]["child"] == {"greeting": "hello world"}
    missing = run(project, parent, "--json")
    assert missing.exit_code == 1
    assert json.loads(missing.stdout)["error"] == "UnknownFlow"


def test_the_installed_command_takes_virtual_time(project: Path) -> None:
    flow = write_flow(project, "hours", HOUR_LONG, "Sleep")
    finished = subprocess.run(
        [RUSTYFLOWER, "run", str(flow), "--activities", "acts.py", "--virtual-time", "--json"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    assert json.loads(finished.stdout)["status"] == "succeeded"


def test_a_parent_waits_while_its_sub_flow_waits_for_an_event(project: Path) -> None:
    """As on a runner: the child waits for its event, and the parent for the child."""
    child = write_flow(
        project,
        "child",
        {"Go": {"type": "wait_for_event", "event": "go", "next": "G"}, "G": task("greet")},
        "Go",
    )
    parent = write_flow(
        project, "parent", {"Call": {"type": "sub_flow", "flow": "child", "end": True}}, "Call"
    )
    waiting = run(project, parent, "--subflow", str(child), "--virtual-time")
    assert waiting.exit_code == 0, waiting.output
    assert "waiting at Call" in waiting.stdout
    answered = run(project, parent, "--subflow", str(child), "--event", "go={}", "--json")
    assert answered.exit_code == 0, answered.output
    assert json.loads(answered.stdout)["output"] == {"greeting": "hello world"}
