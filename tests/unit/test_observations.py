"""core.observations and core.reports on values: what a transition says, and the sums."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rustyflower.core.builder import Flow
from rustyflower.core.engine import ActivityCompleted, ActivityFailed, advance, start
from rustyflower.core.observations import (
    FlowFinished,
    FlowStarted,
    StepFinished,
    observe,
    step_name,
)
from rustyflower.core.reports import FlowRecord, StepRecord, build_report, parse_since, percentile

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_a_run_is_observed_once_per_transition() -> None:
    flow = Flow("two", version="1").task("A", "a").task("B", "b").build()
    first = start(flow, {}, "i-1", T0)
    assert observe(None, first.snapshot) == [FlowStarted("two", "1", "2026-01-01T12:00:00Z")]
    call = next(iter(first.snapshot.state.pending.values())).command
    failed = advance(
        first.snapshot, ActivityFailed(call.call_id, "Boom", "no"), T0 + timedelta(seconds=2)
    )
    seen = observe(first.snapshot, failed.snapshot)
    assert seen[0] == StepFinished(
        "two", "A", "task", "failed", "Boom", "2026-01-01T12:00:02Z", 2.0
    )
    assert isinstance(seen[1], FlowFinished)
    assert (seen[1].status, seen[1].error, seen[1].duration_seconds) == ("failed", "Boom", 2.0)
    # a snapshot that did not move one seq on (a resume) says nothing
    assert observe(None, failed.snapshot) == []
    assert observe(first.snapshot, first.snapshot) == []


def test_a_success_and_map_items_share_one_step_name() -> None:
    flow = Flow("one", version="1").task("A", "a").build()
    first = start(flow, {}, "i-2", T0)
    call = next(iter(first.snapshot.state.pending.values())).command
    done = advance(
        first.snapshot, ActivityCompleted(call.call_id, {"ok": 1}), T0 + timedelta(seconds=0.5)
    )
    kinds = [type(seen).__name__ for seen in observe(first.snapshot, done.snapshot)]
    assert kinds == ["StepFinished", "FlowFinished"]
    assert step_name("Ship[12]/Pack[3]/Label") == "Ship/Pack/Label"


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.0
    assert percentile([float(n) for n in range(1, 21)], 0.95) == 19.0
    assert percentile([7.0], 0.95) == 7.0
    with pytest.raises(ValueError):
        percentile([1.0], 0)


def test_a_report_sums_per_flow_and_ranks_steps() -> None:
    report = build_report(
        since="s",
        until="u",
        started=["a", "a", "b"],
        finished=[
            FlowRecord("a", "succeeded", 1.0),
            FlowRecord("a", "failed", 3.0),
            FlowRecord("c", "cancelled", 9.0),
        ],
        steps=[
            StepRecord("a", "X", "failed", "Boom", 1.0),
            StepRecord("a", "X", "timed_out", "States.Timeout", 5.0),
            StepRecord("a", "X", "failed", "Boom", None),
            StepRecord("a", "Y", "succeeded", None, 0.1),
        ],
    )
    by_flow = {summary.flow: summary for summary in report.flows}
    assert (by_flow["a"].started, by_flow["a"].finished, by_flow["a"].success_rate) == (2, 2, 0.5)
    assert (by_flow["b"].finished, by_flow["b"].success_rate) == (0, None)
    assert by_flow["c"].cancelled == 1
    assert [(s.step, s.failures, s.top_error) for s in report.most_failing_steps] == [
        ("X", 3, "Boom")
    ]
    assert [s.step for s in report.slowest_steps] == ["X", "Y"]
    assert report.slowest_steps[0].max_seconds == 5.0


def test_since_reads_spans_and_times() -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_since("24h", now) == now - timedelta(hours=24)
    assert parse_since("90s", now) == now - timedelta(seconds=90)
    assert parse_since("2w", now) == now - timedelta(weeks=2)
    assert parse_since("2026-02-01T00:00:00Z", now) == datetime(2026, 2, 1, tzinfo=UTC)
    for bad in ("", "yesterday", "-3h", "400d", "2026-04-01T00:00:00Z", "2026-02-01"):
        with pytest.raises(ValueError, match="since"):
            parse_since(bad, now)
