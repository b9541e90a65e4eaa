"""``rustyflower drill --to aws`` run as a user runs it (``tests/drill/kit.py``)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from tests.drill.kit import drill as run_drill

pytestmark = [pytest.mark.emulator, pytest.mark.slow]

N = 20
drill = partial(run_drill, "aws", N)


def test_a_drill_whose_site_dies_with_everything_parked_ends_clean(tmp_path: Path) -> None:
    """Killed once every instance waits for its event (replication caught up): the cloud
    takes every one over, gets the events, ends them; the site fails them back."""
    code, report, stderr = drill("--seed", "11", "--kill-after", "5", work=tmp_path)
    assert code == 0, report
    assert report["instances"] == N and report["ok"] is True
    assert (report["mismatches"], report["duplicate_transitions"]) == (0, 0)
    assert report["duplicate_executions"] == 0 and report["unfinished"] == []
    assert report["not_replicated"] == [] and report["rpo_transitions"]["p99"] == 0
    assert report["finished_in"] == {"aws": N}
    # the lease goes stale 10 s after its last renewal (every 0.5 s, later when the agent
    # is starved: the figure is reported, not bounded here); the first instance runs in the
    # cloud soon after, the last once the takeover is done
    assert 0 < report["rto_seconds"] <= report["takeover_seconds"] < 60
    assert "watchdog took over 20 instance(s)" in stderr
    ids = [row["instance"] for row in report["per_instance"]]
    assert len(set(ids)) == N


BEHIND = ("--settle", "1", "--kill-after", "1.8")
"""A drill whose replicas are behind the site at the kill, whatever the machine's load."""


def test_a_drill_killed_mid_flight_runs_no_call_twice(tmp_path: Path) -> None:
    """Killed while calls run: the cloud continues from replicas some transitions behind
    the site and makes the calls the site made since under the site's keys, so the ledger
    (an activity that honours its key) runs none of them twice. The replicas are made to
    lag: with a settle time of 1 s the replicator ships each instance at about 1 s and
    nothing after, so the 0.8 s before the kill at 1.8 s are the site's alone."""
    code, report, _ = drill("--seed", "3", *BEHIND, work=tmp_path)
    assert not report["not_replicated"], "the replicator shipped nothing before the kill"
    assert report["superseded_entries"] > 0, "the kill came after the last transition"
    # the frontier was crossed: calls the site made were asked again, under its keys
    assert report["honoured_repeats"] > 0, report
    assert report["duplicate_executions"] == 0, report
    assert (report["mismatches"], report["duplicate_transitions"], report["unfinished"]) == (
        0,
        0,
        [],
    )
    assert code == 0 and report["ok"] is True


def test_a_kill_before_replication_accounts_for_every_instance(tmp_path: Path) -> None:
    """Killed right after the starts: what the replicator had not shipped is named (the
    cloud never had it) and ends on the site when it comes back; nothing is dropped."""
    code, report, _ = drill("--seed", "12", "--kill-after", "0", work=tmp_path)
    rows = {row["instance"]: row for row in report["per_instance"]}
    assert len(rows) == N
    assert report["not_replicated"], "the kill came after everything replicated"
    for name in report["not_replicated"]:
        assert rows[name]["replicated_seq"] is None
        assert rows[name]["finished_in"] == "site"
    assert all(row["status"] == "succeeded" for row in rows.values())
    assert (report["mismatches"], report["duplicate_transitions"], report["unfinished"]) == (
        0,
        0,
        [],
    )
    assert code == (0 if report["ok"] else 1)
