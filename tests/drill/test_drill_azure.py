"""``rustyflower drill --to azure`` run as a user runs it (``tests/drill/kit.py``): Azurite
and the real Function App on the replay host (the real Durable SDK orchestrator running
the core engine), the app's watchdog timer function taking the killed site over."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.drill.kit import drill as run_drill

pytestmark = [pytest.mark.emulator, pytest.mark.slow]

N = 12
drill = partial(run_drill, "azure")


def clean(report: dict[str, Any]) -> None:
    """Every instance once, finished, with its reference output, nothing executed twice."""
    rows = {row["instance"]: row for row in report["per_instance"]}
    assert len(rows) == report["instances"]
    assert report["duplicate_transitions"] == 0, report
    assert report["mismatches"] == 0, report
    assert report["unfinished"] == [], report
    assert all(row["status"] == "succeeded" for row in rows.values())
    assert report["duplicate_executions"] == 0, report
    assert report["ok"] is True


def test_a_site_killed_mid_flight_fails_over_to_azure_and_back_clean(tmp_path: Path) -> None:
    """Killed while instances run, the replicas behind (shipped at about 1 s with a settle
    time of 1 s, nothing after; killed at 1.8 s): Azure continues each from its replica
    and redoes what the site had done past it, asking the activity again under the site's
    own keys (the orchestrator runs the core engine), so the ledger answers those calls
    and none runs twice."""
    code, report, stderr = drill(
        20, "--seed", "3", "--settle", "1", "--kill-after", "1.8", work=tmp_path
    )
    clean(report)
    assert code == 0
    assert report["cloud"] == "azure"
    assert not report["not_replicated"], "the replicator shipped nothing before the kill"
    assert report["superseded_entries"] > 0, "the kill came after the last transition"
    assert report["honoured_repeats"] > 0, report
    assert report["duplicate_executions"] == 0, report
    assert report["finished_in"].get("azure", 0) + report["finished_in"].get("site", 0) == 20
    assert "watchdog took over" in stderr and "failed back" in stderr


def test_a_kill_before_replication_accounts_for_every_instance(tmp_path: Path) -> None:
    """Killed right after the starts: what the replicator had not shipped is named (Azure
    never had it) and ends on the site when it comes back; nothing is dropped."""
    code, report, _ = drill(N, "--seed", "12", "--kill-after", "0", work=tmp_path)
    clean(report)
    assert code == 0
    rows = {row["instance"]: row for row in report["per_instance"]}
    assert report["not_replicated"], "the kill came after everything replicated"
    for name in report["not_replicated"]:
        assert rows[name]["replicated_seq"] is None
        assert rows[name]["finished_in"] == "site"


def test_a_site_killed_with_everything_parked_ends_every_instance_in_azure(
    tmp_path: Path,
) -> None:
    """Killed once every instance waits for its event: Azure takes every one over, gets
    the events, ends them; the site fails them back (their final snapshots)."""
    code, report, stderr = drill(N, "--seed", "11", "--kill-after", "5", work=tmp_path)
    clean(report)
    assert code == 0
    assert report["not_replicated"] == [] and report["rpo_transitions"]["p99"] == 0
    assert report["superseded_entries"] == 0 and report["honoured_repeats"] == 0
    assert report["finished_in"] == {"azure": N}
    # the lease goes stale 10 s after its last renewal (every 0.5 s, later when the agent
    # is starved: the figure is reported, not bounded here); the first instance runs in the
    # cloud soon after, the last once the takeover is done
    assert 0 < report["rto_seconds"] <= report["takeover_seconds"] < 60
    assert f"watchdog took over {N} instance(s)" in stderr
