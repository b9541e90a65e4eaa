"""The `rustyflower` group: connection options before or after the command, --version,
help that shows flags as flags, --json on every control command, signed snapshot files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner, Result

from rustyflower.adapters.cli.main import app
from rustyflower.core.snapshot import SigningKey
from tests.cli import activities
from tests.cli.conftest import ACTIVITIES, FLOWS, Cli

KEY = SigningKey("k1", b"s" * 32)
KEYS = {"RUSTYFLOWER_SIGNING_KEYS": f"k1:{KEY.to_base64()}"}
NO_KEYS = {"RUSTYFLOWER_SIGNING_KEYS": "", "RUSTYFLOWER_REQUIRE_SIGNATURE": ""}


def invoke(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    """The app with nothing from the environment but ``env`` (no Redis URL, no prefix)."""
    clean = {name: None for name in os.environ if name.startswith("RUSTYFLOWER_")}
    result = CliRunner().invoke(app, [str(arg) for arg in args], env={**clean, **(env or {})})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


# --- connection options --------------------------------------------------------------------------


@pytest.mark.emulator
def test_connection_options_work_before_and_after_the_command(cli: Cli) -> None:
    cli("flows", "register", FLOWS / "greet.yaml")
    expected = [{"name": "greet", "versions": ["1"], "latest": "1"}]
    where = ["--redis-url", cli.url, "--prefix", cli.prefix]

    after = invoke("flows", "list", "--json", *where)  # the placement users have always typed
    assert after.exit_code == 0, after.stderr
    assert json.loads(after.stdout) == expected
    before = invoke(*where, "flows", "list", "--json")
    assert before.exit_code == 0, before.stderr
    assert json.loads(before.stdout) == expected
    # given in both places, the command's own option wins
    both = invoke("--prefix", "elsewhere", "flows", "list", "--json", *where)
    assert json.loads(both.stdout) == expected
    empty = invoke(*where, "flows", "list", "--json", "--prefix", cli.prefix + "x")
    assert json.loads(empty.stdout) == []
    # the environment still works, and an option overrides it
    from_env = invoke("flows", "list", "--json", env=cli.env)
    assert json.loads(from_env.stdout) == expected
    overridden = invoke("--prefix", cli.prefix + "y", "flows", "list", "--json", env=cli.env)
    assert json.loads(overridden.stdout) == []


def test_dev_takes_no_redis_url() -> None:
    result = invoke("--redis-url", "redis://127.0.0.1:1/0", "dev")
    assert result.exit_code == 2
    assert "dev starts its own server: give it no --redis-url" in result.stderr


def test_every_command_that_connects_takes_the_connection_options_after_its_name() -> None:
    """26 commands repeated the three options; they now come from one place."""
    group = typer.main.get_command(app)
    connected = []

    def walk(command: Any, path: str) -> None:
        if hasattr(command, "commands"):
            for name, child in command.commands.items():
                walk(child, f"{path} {name}".strip())
            return
        names = {param.name for param in command.params}
        if {"redis_url", "prefix", "data_dir"} <= names:
            connected.append(path)
        elif {"prefix", "data_dir"} <= names:
            connected.append(f"{path} (own server)")

    walk(group, "")
    assert len(connected) == 33, connected
    assert "dev (own server)" in connected
    assert {
        "status",
        "flows register",
        "export asl",
        "failover",
        "workers",
        "purge",
        "report",
        "replicate",
        "cloud aws",
    } <= set(connected)


# --- version, bare command, help ---------------------------------------------------------------


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("rustyflower ") and result.stdout.split()[1][0].isdigit()


def test_bare_rustyflower_prints_help_and_exits_2() -> None:
    result = invoke()
    assert result.exit_code == 2
    assert "Usage: rustyflower" in result.stdout + result.stderr


@pytest.mark.parametrize(
    "command", [[], ["status"], ["hold"], ["run"], ["failover"], ["flows", "list"], ["dev"]]
)
def test_help_shows_flags_without_a_value(command: list[str]) -> None:
    """Before: '--json <bool>' read as if --json took a value (and '--help <bool>')."""
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert "<bool>" not in result.stdout, result.stdout
    assert "--help" in result.stdout


# --- --json on the control commands ------------------------------------------------------------


@pytest.mark.emulator
def test_control_commands_answer_in_json(working: Cli) -> None:
    """Before: hold, release, cancel, retry and signal had no --json."""
    waiting = working("start", "approval", "--id", "j-1").stdout.strip()
    working.wait_status(waiting, "running")

    held = working.json("hold", waiting, "--reason", "audit")
    assert held == {
        "action": "held",
        "instance_id": "j-1",
        "status": "running",
        "held": True,
        "positions": ["Await approval"],
        "seq": held["seq"],
        "epoch": 0,
    }
    released = working.json("release", waiting)
    assert released["action"] == "released" and released["held"] is False
    signalled = working.json("signal", waiting, "approval", "--data", '{"ok": true}')
    assert signalled["action"] == "delivered approval" and signalled["instance_id"] == "j-1"
    working.wait_status(waiting, "succeeded")

    activities.FAILING.add("fragile")
    failing = working.json("start", "fragile", "--wait", ok=False)["instance_id"]
    activities.FAILING.clear()
    retried = working.json("retry", failing)
    assert retried["action"] == "retrying" and retried["status"] == "running"

    other = working("start", "approval").stdout.strip()
    cancelled = working.json("cancel", other)
    assert cancelled["action"] == "cancelled" and cancelled["status"] == "cancelled"
    assert cancelled["positions"] == []


# --- run ---------------------------------------------------------------------------------------


def test_run_takes_several_activities_modules(tmp_path: Path) -> None:
    """Before: --activities of `run` took one module (the last one given)."""
    extra = tmp_path / "more_activities.py"
    extra.write_text(
        "from rustyflower.core.activities import ActivityRegistry\n"
        "registry = ActivityRegistry()\n"
        "@registry.activity\n"
        "def shout(payload):\n"
        "    return {'loud': payload['greeting'].upper()}\n"
    )
    flow = tmp_path / "both.yaml"
    flow.write_text(
        "name: both\nstart_at: Greet\nstates:\n"
        "  Greet: {type: task, activity: greet, next: Shout}\n"
        "  Shout: {type: task, activity: shout, end: true}\n"
    )
    result = invoke(
        "run", flow, "--activities", ACTIVITIES, "--activities", str(extra), "--json", "-i", "{}"
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["output"] == {"loud": "HELLO WORLD"}


# --- signed snapshot files ---------------------------------------------------------------------


def test_run_snapshot_out_is_signed_when_keys_are_set(tmp_path: Path) -> None:
    """Before: written unsigned, and `inspect` with the same keys refused it."""
    out = tmp_path / "s.json"
    ran = invoke("run", FLOWS / "approval.yaml", "-a", ACTIVITIES, "--snapshot-out", out, env=KEYS)
    assert ran.exit_code == 0, ran.stderr
    assert json.loads(out.read_bytes())["signature"]["key_id"] == "k1"
    assert "warning" not in ran.stderr
    inspected = invoke("inspect", out, "--json", env=KEYS)
    assert inspected.exit_code == 0, inspected.stderr
    assert json.loads(inspected.stdout)["positions"] == ["Await approval"]


def test_run_snapshot_out_without_keys_warns_that_it_is_unsigned(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    ran = invoke(
        "run", FLOWS / "approval.yaml", "-a", ACTIVITIES, "--snapshot-out", out, env=NO_KEYS
    )
    assert ran.exit_code == 0
    assert "signature" not in json.loads(out.read_bytes())
    assert "warning:" in ran.stderr and "is not signed" in ran.stderr


@pytest.mark.emulator
def test_snapshot_of_an_unsigned_store_is_signed_by_a_cli_with_keys(
    registered: Cli, tmp_path: Path
) -> None:
    """Before: the store's unsigned bytes were written as they were, without a word."""
    instance = registered("start", "approval", "--id", "sig-1").stdout.strip()
    signed_file = tmp_path / "signed.json"
    result = registered.subprocess("snapshot", instance, "-o", signed_file, env=KEYS)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    assert json.loads(signed_file.read_bytes())["signature"]["key_id"] == "k1"
    assert invoke("inspect", signed_file, env=KEYS).exit_code == 0

    unsigned_file = tmp_path / "unsigned.json"
    result = registered.subprocess("snapshot", instance, "-o", unsigned_file, env=NO_KEYS)
    assert result.returncode == 0
    assert "warning: the snapshot of sig-1 is not signed" in result.stderr
    assert "signature" not in json.loads(unsigned_file.read_bytes())
