"""The runner commands through typer's CliRunner, against a real Valkey, workers in threads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli import activities
from tests.cli.conftest import ACTIVITIES, FLOWS, Cli, new_prefix

pytestmark = pytest.mark.emulator


def single_error(result_stderr: str) -> str:
    """The error output is exactly one line starting with 'error:' (no traceback)."""
    lines = [line for line in result_stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result_stderr
    assert lines[0].startswith("error: "), result_stderr
    assert "Traceback" not in result_stderr
    return lines[0]


# --- flows ------------------------------------------------------------------------------------


def test_register_list_and_show(cli: Cli, tmp_path: Path) -> None:
    result = cli("flows", "register", FLOWS / "greet.yaml", FLOWS / "approval.yaml")
    assert "registered greet@1" in result.stdout
    assert "registered approval@1" in result.stdout
    again = cli("flows", "register", FLOWS / "greet.yaml")
    assert "already registered greet@1" in again.stdout

    flows = cli.json("flows", "list")
    assert flows == [
        {"name": "approval", "versions": ["1"], "latest": "1"},
        {"name": "greet", "versions": ["1"], "latest": "1"},
    ]
    table = cli("flows", "list").stdout
    assert "greet" in table and "approval" in table and "\x1b[" not in table

    shown = cli("flows", "show", "approval").stdout
    assert shown.startswith("name: approval\nversion: '1'\n")
    assert "event: approval" in shown
    assert cli.json("flows", "show", "greet", "--version", "1")["states"]["Greet"]["activity"] == (
        "greet"
    )

    # a new version registers alongside; the latest is the default
    v2 = tmp_path / "greet2.yaml"
    v2.write_text((FLOWS / "greet.yaml").read_text().replace('"1"', '"2"'))
    cli("flows", "register", v2)
    assert cli.json("flows", "list")[1] == {"name": "greet", "versions": ["1", "2"], "latest": "2"}
    assert "version: '2'" in cli("flows", "show", "greet").stdout

    # the same version with other content is refused
    changed = tmp_path / "changed.yaml"
    changed.write_text((FLOWS / "greet.yaml").read_text().replace("activity: greet", "activity: x"))
    refused = cli("flows", "register", changed, ok=False)
    assert refused.exit_code == 2
    assert "new version" in single_error(refused.stderr)

    unknown = cli("flows", "show", "nope", ok=False)
    assert unknown.exit_code == 2
    assert "unknown flow 'nope' (registered: approval, greet)" in single_error(unknown.stderr)
    unknown_version = cli("flows", "show", "greet", "--version", "9", ok=False)
    assert "no version '9'" in single_error(unknown_version.stderr)


def test_register_checks_activities_and_definitions(cli: Cli, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(
        (FLOWS / "greet.yaml").read_text().replace("activity: greet", "activity: gret")
    )
    result = cli("flows", "register", wrong, "--activities", ACTIVITIES, ok=False)
    assert result.exit_code == 2
    assert "unknown activity gret" in single_error(result.stderr)

    invalid = tmp_path / "invalid.yaml"
    invalid.write_text("name: bad\nstart_at: Nowhere\nstates: {}\n")
    result = cli("flows", "register", invalid, ok=False)
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr
    assert all(line.startswith("error: ") for line in result.stderr.splitlines() if line)

    missing = cli("flows", "register", tmp_path / "missing.yaml", ok=False)
    assert missing.exit_code == 2
    assert "cannot read" in single_error(missing.stderr)
    assert cli.json("flows", "list") == []


# --- start, status, list, history --------------------------------------------------------------


def test_start_wait_prints_the_id_then_the_output(working: Cli) -> None:
    result = working("start", "greet", "--input", '{"name": "Ada"}', "--wait", "--timeout", "10")
    lines = result.stdout.splitlines()
    instance_id = lines[0]
    assert lines[1] == f"succeeded instance {instance_id}"
    assert json.loads("\n".join(lines[2:])) == {"greeting": "hello Ada"}

    summary = working.json("start", "greet", "--input", '{"name": "Bo"}', "--wait")
    assert summary["status"] == "succeeded"
    assert summary["output"] == {"greeting": "hello Bo"}
    assert summary["flow"] == "greet" and summary["version"] == "1"


def test_register_start_wait_status_on_each_server(cli_on_each_server: Cli) -> None:
    cli = cli_on_each_server
    cli("flows", "register", FLOWS / "greet.yaml", "--activities", ACTIVITIES)
    cli.start_worker()
    summary = cli.json("start", "greet", "--input", '{"name": "Vik"}', "--wait", "--timeout", "10")
    assert summary["status"] == "succeeded" and summary["output"] == {"greeting": "hello Vik"}
    kinds = [entry["kind"] for entry in cli.json("history", summary["instance_id"])]
    assert kinds[0] == "FlowStarted" and kinds[-1] == "FlowSucceeded"
    assert [row["instance_id"] for row in cli.json("list")] == [summary["instance_id"]]


def test_start_wait_exit_codes(working: Cli) -> None:
    failed = working("start", "fragile", "--input", '{"fail": true}', "--wait", ok=False)
    assert failed.exit_code == 1
    assert "failed instance" in failed.stdout and "Boom: it broke" in failed.stdout

    waiting = working("start", "approval", "--wait", "--timeout", "0.5", ok=False)
    assert waiting.exit_code == 3
    message = single_error(waiting.stderr.splitlines()[-1])
    assert "still running after 0.5 s" in message
    assert "waiting for event 'approval'" in message
    instance_id = waiting.stdout.strip()
    assert working.json("status", instance_id)["status"] == "running"  # it carries on


def test_start_without_wait_prints_only_the_id(registered: Cli) -> None:
    result = registered("start", "greet")
    instance_id = result.stdout.strip()
    assert len(result.stdout.splitlines()) == 1 and instance_id
    started = registered.json("start", "greet", "--priority", "high", "--key", "tenant-a")
    assert started["created"] is True and started["status"] == "running"
    assert registered.json("status", started["instance_id"])["priority"] == "high"
    assert registered.store.placement(started["instance_id"]).concurrency_key == "tenant-a"


def test_start_with_an_existing_id_starts_nothing(working: Cli) -> None:
    first = working("start", "approval", "--id", "order-42", "--input", '{"name": "A"}')
    assert first.stdout.strip() == "order-42"
    again = working("start", "approval", "--id", "order-42", "--input", '{"name": "B"}')
    assert again.stdout.strip() == "order-42"
    assert "exists already" in again.stderr and "nothing started" in again.stderr
    assert working.json("start", "approval", "--id", "order-42")["created"] is False
    status = working.json("status", "order-42")
    assert status["input"] == {"name": "A"}
    kinds = [entry["kind"] for entry in working.json("history", "order-42")]
    assert kinds.count("FlowStarted") == 1


def test_status_list_and_history_json_shapes(working: Cli) -> None:
    done = working.json("start", "greet", "--input", '{"name": "Cy"}', "--wait")["instance_id"]
    waiting = working("start", "approval", "--input", '{"name": "Di"}').stdout.strip()
    working.wait_status(waiting, "running")

    status = working.json("status", waiting)
    assert set(status) >= {
        "instance_id", "flow", "version", "status", "held", "seq", "epoch", "priority",
        "positions", "waiting_for", "input", "output", "error", "cause", "created_at",
        "updated_at", "finished_at",
    }  # fmt: skip
    assert status["positions"] == ["Await approval"]
    assert [item["kind"] for item in status["waiting_for"]] == ["event"]
    assert status["waiting_for"][0]["event"] == "approval"

    finished = working.json("status", done)
    assert finished["status"] == "succeeded" and finished["output"] == {"greeting": "hello Cy"}
    assert finished["positions"] == [] and finished["finished_at"]

    rows = working.json("list")
    assert [row["instance_id"] for row in rows] == [waiting, done]  # newest update first
    assert rows[0]["positions"] == ["Await approval"] and rows[1]["positions"] == []
    assert {row["status"] for row in rows} == {"running", "succeeded"}
    assert [r["instance_id"] for r in working.json("list", "--status", "succeeded")] == [done]
    assert [r["instance_id"] for r in working.json("list", "--flow", "approval")] == [waiting]
    assert len(working.json("list", "--limit", "1")) == 1
    assert working.json("list", "--status", "failed") == []

    history = working.json("history", done)
    assert [entry["seq"] for entry in history] == sorted(entry["seq"] for entry in history)
    assert history[0]["kind"] == "FlowStarted" and history[-1]["kind"] == "FlowSucceeded"
    assert set(history[0]) == {"seq", "at", "kind", "position", "detail"}

    # the readable forms
    table = working("list").stdout
    assert "ID" in table and waiting in table and "approval@1" in table
    assert "Await approval" in table
    text = working("status", waiting).stdout
    assert "waiting for  event 'approval'" in text
    timeline = working("history", done).stdout.splitlines()
    assert timeline[0] == f"{done} greet@1 succeeded"
    assert "FlowSucceeded" in timeline[-1]


def test_unknown_instance_and_bad_input_are_one_line(working: Cli) -> None:
    for command in (
        ["status", "nope"],
        ["history", "nope"],
        ["signal", "nope", "approval"],
        ["hold", "nope"],
        ["snapshot", "nope", "-o", "x.snap"],
    ):
        result = working(*command, ok=False)
        assert result.exit_code == 2, command
        assert "no instance 'nope'" in single_error(result.stderr)
    bad_json = working("start", "greet", "--input", "{nope", ok=False)
    assert bad_json.exit_code == 2
    assert "--input is not valid JSON" in single_error(bad_json.stderr)
    bad_priority = working("start", "greet", "--priority", "urgent", ok=False)
    assert bad_priority.exit_code == 2 and "--priority" in single_error(bad_priority.stderr)
    bad_status = working("list", "--status", "sleeping", ok=False)
    assert bad_status.exit_code == 2 and "--status" in single_error(bad_status.stderr)
    unknown_flow = working("start", "nope", ok=False)
    assert unknown_flow.exit_code == 2 and "unknown flow 'nope'" in unknown_flow.stderr


# --- controls -----------------------------------------------------------------------------------


def test_signal_hold_release(working: Cli) -> None:
    instance_id = working("start", "approval", "--input", '{"name": "Ed"}').stdout.strip()
    working.wait_status(instance_id, "running")

    wrong = working("signal", instance_id, "rejection", ok=False)
    assert wrong.exit_code == 2
    assert "not waiting for event 'rejection'" in single_error(wrong.stderr)

    held = working("hold", instance_id, "--reason", "audit")
    assert "is running (held)" in held.stdout
    assert working.json("status", instance_id)["held"] is True
    assert [r["instance_id"] for r in working.json("list", "--status", "held")] == [instance_id]
    twice = working("hold", instance_id, ok=False)
    assert twice.exit_code == 2 and "already held" in single_error(twice.stderr)
    working("release", instance_id)
    assert working.json("status", instance_id)["held"] is False

    bad_data = working("signal", instance_id, "approval", "--data", "{x", ok=False)
    assert bad_data.exit_code == 2 and "--data is not valid JSON" in bad_data.stderr
    delivered = working("signal", instance_id, "approval", "--data", '{"ok": true}')
    assert delivered.stdout.startswith(f"delivered approval: {instance_id}")
    status = working.wait_status(instance_id, "succeeded")
    assert status["output"] == {
        "name": "Ed",
        "approval": {"ok": True},
        "greeting": {"greeting": "hello Ed"},
    }
    late = working("signal", instance_id, "approval", ok=False)
    assert late.exit_code == 2 and "error: " in late.stderr
    kinds = [entry["kind"] for entry in working.json("history", instance_id)]
    assert "Held" in kinds and "EventReceived" in kinds


def test_cancel(working: Cli) -> None:
    instance_id = working("start", "approval").stdout.strip()
    result = working("cancel", instance_id, "--reason", "customer changed their mind")
    assert f"{instance_id} is cancelled" in result.stdout
    status = working.json("status", instance_id)
    assert status["status"] == "cancelled"
    assert status["cause"] == "customer changed their mind"
    again = working("cancel", instance_id, ok=False)
    assert again.exit_code == 2 and single_error(again.stderr)


def test_retry_a_failed_instance_from_its_failed_step(working: Cli) -> None:
    activities.FAILING.add("fragile")
    failed = working.json("start", "fragile", "--input", '{"n": 1}', "--wait", ok=False)
    assert failed["status"] == "failed" and failed["error"] == "Boom"
    assert failed["failed_position"] == "Break"
    instance_id = failed["instance_id"]

    activities.FAILING.clear()
    retried = working("retry", instance_id)
    assert f"retrying: {instance_id} is running" in retried.stdout
    status = working.wait_status(instance_id, "succeeded")
    assert status["output"] == {"n": 1, "result": {"fixed": True}}
    kinds = [entry["kind"] for entry in working.json("history", instance_id)]
    assert kinds.count("TaskScheduled") == 2  # Prepare (a pass state) did not run again
    assert kinds.count("FlowStarted") == 1

    not_failed = working("retry", instance_id, ok=False)
    assert not_failed.exit_code == 2 and "retried" in single_error(not_failed.stderr)


# --- snapshots ------------------------------------------------------------------------------------


def test_snapshot_then_resume_in_a_fresh_prefix_gives_the_same_result(
    working: Cli, tmp_path: Path
) -> None:
    instance_id = working("start", "approval", "--input", '{"name": "Flo"}').stdout.strip()
    working.wait_status(instance_id, "running")
    file = tmp_path / "approval.snap"
    written = working("snapshot", instance_id, "-o", file)
    assert f"wrote {file}" in written.stderr and file.stat().st_size > 0

    elsewhere = working.with_prefix(new_prefix())
    elsewhere.start_worker()
    resumed = elsewhere("resume", file)
    assert f"resumed (epoch 0): {instance_id} is running at Await approval" in resumed.stdout
    assert elsewhere.json("status", instance_id)["positions"] == ["Await approval"]

    for side in (working, elsewhere):
        side("signal", instance_id, "approval", "--data", "true")
    here = working.wait_status(instance_id, "succeeded")
    there = elsewhere.wait_status(instance_id, "succeeded")
    assert (
        here["output"]
        == there["output"]
        == {
            "name": "Flo",
            "approval": True,
            "greeting": {"greeting": "hello Flo"},
        }
    )


def test_resume_is_refused_for_an_older_epoch(registered: Cli, tmp_path: Path) -> None:
    instance_id = registered("start", "approval").stdout.strip()
    old = tmp_path / "old.snap"
    registered("snapshot", instance_id, "-o", old)

    same = registered("resume", old, ok=False)
    assert same.exit_code == 2
    assert "nothing to resume" in single_error(same.stderr)

    taken = registered("resume", old, "--take-ownership")
    assert "resumed (epoch 1)" in taken.stdout
    assert registered.json("status", instance_id)["epoch"] == 1

    refused = registered("resume", old, ok=False)
    assert refused.exit_code == 2
    message = single_error(refused.stderr)
    assert "owned by epoch 1" in message and "epoch 0" in message

    garbage = tmp_path / "garbage.snap"
    garbage.write_bytes(b"not a snapshot")
    broken = registered("resume", garbage, ok=False)
    assert broken.exit_code == 2 and single_error(broken.stderr)
    missing = registered("resume", tmp_path / "missing.snap", ok=False)
    assert missing.exit_code == 2 and "cannot read" in single_error(missing.stderr)


def kinds(cli: Cli, instance_id: str) -> list[str]:
    return [entry["kind"] for entry in cli.json("history", instance_id)]


def test_take_ownership_never_rolls_back_newer_state(working: Cli, tmp_path: Path) -> None:
    """Issue 10, item 2: an older snapshot (even of a finished instance) is refused by
    ``resume --take-ownership``; only ``--discard-newer-state`` rolls back, on the record."""
    instance_id = working("start", "approval", "--input", '{"name": "Flo"}').stdout.strip()
    working.wait_status(instance_id, "running")
    old = tmp_path / "old.snap"
    working("snapshot", instance_id, "-o", old)
    working("signal", instance_id, "approval", "--data", "true")
    finished = working.wait_status(instance_id, "succeeded")

    refused = working("resume", old, "--take-ownership", ok=False)
    assert refused.exit_code == 2
    message = single_error(refused.stderr)
    assert f"seq {finished['seq']}" in message and "--discard-newer-state" in message
    after = working.json("status", instance_id)
    assert (after["status"], after["seq"], after["epoch"]) == ("succeeded", finished["seq"], 0)
    assert kinds(working, instance_id).count("FlowSucceeded") == 1

    plain = working("resume", old, "--discard-newer-state", ok=False)
    assert plain.exit_code == 2 and "--take-ownership" in single_error(plain.stderr)

    rolled = working("resume", old, "--take-ownership", "--discard-newer-state")
    assert "resumed (epoch 1)" in rolled.stdout
    assert "discarded" in rolled.stderr
    status = working.json("status", instance_id)
    assert (status["status"], status["epoch"]) == ("running", 1)
    assert status["seq"] > finished["seq"]  # the store's seq never goes back
    history = working.json("history", instance_id)
    entry = history[-1]
    assert entry["kind"] == "NewerStateDiscarded"
    assert entry["detail"]["discarded_seq"] == finished["seq"]
    assert entry["detail"]["discarded_status"] == "succeeded"
    assert entry["detail"]["resumed_seq"] == 1


# --- limits ---------------------------------------------------------------------------------------


def test_limits_set_show_clear(registered: Cli) -> None:
    assert registered.json("limits", "show") == {
        "flow_concurrency": {},
        "key_concurrency": None,
        "activity_rates": {},
    }
    registered("limits", "set", "--flow", "greet", "--concurrency", "2")
    registered("limits", "set", "--key-concurrency", "3")
    registered("limits", "set", "--activity", "greet", "--rate", "600/min")
    shown = registered.json("limits", "show")
    assert shown["flow_concurrency"] == {"greet": 2}
    assert shown["key_concurrency"] == 3
    assert shown["activity_rates"] == {"greet": {"per_second": 10.0, "text": "10/s"}}
    table = registered("limits", "show").stdout
    assert "flow concurrency" in table and "10/s" in table

    for args, expected in (
        (["--activity", "greet", "--rate", "10/fortnight"], "not a rate"),
        (["--flow", "greet"], "--flow and --concurrency go together"),
        (["--flow", "nope", "--concurrency", "1"], "unknown flow 'nope'"),
        ([], "nothing to set"),
    ):
        result = registered("limits", "set", *args, ok=False)
        assert result.exit_code == 2, args
        assert expected in single_error(result.stderr)
    assert registered("limits", "set", "--concurrency", "0", "--flow", "g", ok=False).exit_code == 2

    registered("limits", "clear", "--flow", "greet", "--key-concurrency")
    assert registered.json("limits", "show") == {
        "flow_concurrency": {},
        "key_concurrency": None,
        "activity_rates": {"greet": {"per_second": 10.0, "text": "10/s"}},
    }
    registered("limits", "clear", "--activity", "greet")
    assert registered.json("limits", "show")["activity_rates"] == {}
    assert registered("limits", "clear", ok=False).exit_code == 2


# --- schedules ------------------------------------------------------------------------------------


def test_schedule_add_list_pause_resume_remove(registered: Cli) -> None:
    added = registered(
        "schedule", "add", "morning", "--flow", "greet", "--cron", "0 9 * * 1-5",
        "--timezone", "Europe/Berlin", "--input", '{"name": "team"}', "--overlap", "buffer_one",
    )  # fmt: skip
    assert "added schedule morning: greet on '0 9 * * 1-5' (Europe/Berlin), next" in added.stdout
    rows = registered.json("schedule", "list")
    assert len(rows) == 1
    row = rows[0]
    assert {key: row[key] for key in ("name", "flow", "version", "cron", "timezone")} == {
        "name": "morning",
        "flow": "greet",
        "version": None,
        "cron": "0 9 * * 1-5",
        "timezone": "Europe/Berlin",
    }
    assert row["input"] == {"name": "team"} and row["overlap"] == "buffer_one"
    assert row["catch_up"] == "latest" and row["paused"] is False
    assert row["next_fire"].endswith("Z") and row["last_fire"] is None

    exists = registered(
        "schedule", "add", "morning", "--flow", "greet", "--cron", "@daily", ok=False
    )
    assert exists.exit_code == 2 and "exists already" in single_error(exists.stderr)
    registered("schedule", "add", "morning", "--flow", "greet", "--cron", "@daily", "--replace")
    assert registered.json("schedule", "list")[0]["cron"] == "@daily"

    assert "paused schedule morning" in registered("schedule", "pause", "morning").stdout
    paused = registered.json("schedule", "list")[0]
    assert paused["paused"] is True and paused["next_fire"] is None
    assert "paused" in registered("schedule", "list").stdout
    registered("schedule", "resume", "morning")
    assert registered.json("schedule", "list")[0]["paused"] is False
    table = registered("schedule", "list").stdout
    assert "morning" in table and "@daily" in table and "active" in table

    for args, expected in (
        (["--flow", "greet", "--cron", "61 * * * *"], "not a valid cron expression"),
        (
            ["--flow", "greet", "--cron", "@daily", "--timezone", "Mars/Olympus"],
            "unknown time zone",
        ),
        (["--flow", "greet", "--cron", "@daily", "--overlap", "sometimes"], "overlap is one of"),
        (["--flow", "greet", "--cron", "@daily", "--catch-up", "never"], "catch_up is one of"),
        (["--flow", "nope", "--cron", "@daily"], "unknown flow 'nope'"),
        (["--flow", "greet", "--version", "7", "--cron", "@daily"], "no version '7'"),
        (["--flow", "greet", "--cron", "@daily", "--input", "{"], "--input is not valid JSON"),
    ):
        result = registered("schedule", "add", "other", *args, ok=False)
        assert result.exit_code == 2, args
        assert expected in single_error(result.stderr), (args, result.stderr)

    assert "removed schedule morning" in registered("schedule", "remove", "morning").stdout
    assert registered.json("schedule", "list") == []
    gone = registered("schedule", "pause", "morning", ok=False)
    assert gone.exit_code == 2 and "unknown schedule 'morning'" in single_error(gone.stderr)


def test_register_refuses_a_schedule_the_scheduler_would_refuse_and_registers_nothing(
    cli: Cli, tmp_path: Path
) -> None:
    # the flow model and the scheduler apply one set of schedule rules: a definition whose
    # schedule cannot be synced fails validation, before anything is registered
    for schedule, problem in (
        ("{name: every-second, cron: '* * * * * *'}", "not a 5-field cron expression"),
        ("{name: has space, cron: '0 2 * * *'}", "schedule name 'nightly:has space'"),
    ):
        flow = tmp_path / "nightly.yaml"
        flow.write_text(
            "name: nightly\nstart_at: Greet\n"
            f"schedules: [{schedule}]\n"
            "states: {Greet: {type: task, activity: greet, end: true}}\n"
        )
        result = cli("flows", "register", flow, ok=False)
        assert result.exit_code == 2, result.stdout
        assert problem in result.stderr and "Traceback" not in result.stderr
        assert cli.json("flows", "list") == []
        assert cli.json("schedule", "list") == []


def test_register_syncs_the_schedules_a_flow_declares(cli: Cli) -> None:
    result = cli("flows", "register", FLOWS / "nightly.yaml", "--activities", ACTIVITIES)
    assert "registered nightly@1 (schedules: nightly:nightly-greet)" in result.stdout
    [row] = cli.json("schedule", "list")
    assert row["name"] == "nightly:nightly-greet" and row["declared_by"] == "nightly"
    assert row["cron"] == "0 2 * * *" and row["timezone"] == "Europe/Paris"
    assert row["version"] == "1" and row["input"] == {"name": "night"}
