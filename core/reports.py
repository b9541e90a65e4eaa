"""Reports over a time window: per flow, how many finished, how many succeeded, how long
they took; which steps were slowest and which failed most.

Pure: it aggregates the observations a runtime recorded (``core.observations``), read
back as plain records, so the CLI's ``report``, the HTTP API and a dashboard show the
same figures. Percentiles use the nearest-rank method on the exact durations (no
histogram interpolation): p50 of 1, 2, 3, 4 is 2; p95 of twenty values is the 19th.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rustyflower.core.timeutil import parse_timestamp, require_aware

TOP_STEPS = 5
"""How many steps ``slowest_steps`` and ``most_failing_steps`` list."""

_SPAN = re.compile(r"^\s*(\d{1,6})\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_WINDOW = timedelta(days=366)


def parse_since(text: str, now: datetime) -> datetime:
    """The start of a report's window: a span back from ``now`` (``90s``, ``30m``,
    ``24h``, ``7d``, ``2w``) or an RFC 3339 time. ``ValueError`` says what is wrong."""
    require_aware(now)
    match = _SPAN.match(text)
    if match is not None:
        span = timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
        if span > MAX_WINDOW:
            raise ValueError(f"since {text!r}: at most {MAX_WINDOW.days} days back")
        return now - span
    moment = parse_timestamp(text.strip())
    if moment is None:
        raise ValueError(
            f"since {text!r}: give a span (30m, 24h, 7d) or a time (2026-01-31T08:00:00Z)"
        )
    if moment > now:
        raise ValueError(f"since {text!r} is in the future")
    return moment


@dataclass(frozen=True)
class FlowRecord:
    """A flow that finished in the window."""

    flow: str
    status: str
    seconds: float


@dataclass(frozen=True)
class StepRecord:
    """A step attempt that finished in the window (``seconds`` None: not timed)."""

    flow: str
    step: str
    outcome: str
    error: str | None
    seconds: float | None


@dataclass(frozen=True)
class FlowSummary:
    flow: str
    started: int
    finished: int
    succeeded: int
    failed: int
    cancelled: int
    success_rate: float | None
    """Succeeded / finished (None when none finished)."""
    p50_seconds: float | None
    p95_seconds: float | None


@dataclass(frozen=True)
class StepSummary:
    flow: str
    step: str
    attempts: int
    failures: int
    """Attempts that failed or timed out."""
    failure_rate: float
    p50_seconds: float | None
    p95_seconds: float | None
    max_seconds: float | None
    top_error: str | None


@dataclass(frozen=True)
class Report:
    since: str
    until: str
    covered_from: str | None
    """The oldest record the runtime still had, when the window reaches further back
    (its event log is capped): figures before it are missing. None: the window is whole."""
    flows: tuple[FlowSummary, ...]
    slowest_steps: tuple[StepSummary, ...]
    most_failing_steps: tuple[StepSummary, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "until": self.until,
            "covered_from": self.covered_from,
            "flows": [vars(summary) for summary in self.flows],
            "slowest_steps": [vars(summary) for summary in self.slowest_steps],
            "most_failing_steps": [vars(summary) for summary in self.most_failing_steps],
        }


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile of ``values`` (None when there are none)."""
    if not values:
        return None
    if not 0 < fraction <= 1:
        raise ValueError("fraction must be in (0, 1]")
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def build_report(
    *,
    since: str,
    until: str,
    started: Iterable[str],
    finished: Iterable[FlowRecord],
    steps: Iterable[StepRecord],
    covered_from: str | None = None,
    top: int = TOP_STEPS,
) -> Report:
    """Aggregate the window's records: ``started`` holds one flow name per start."""
    starts: dict[str, int] = {}
    for flow in started:
        starts[flow] = starts.get(flow, 0) + 1
    ends: dict[str, list[FlowRecord]] = {}
    for record in finished:
        ends.setdefault(record.flow, []).append(record)
    flows = tuple(
        _flow_summary(flow, starts.get(flow, 0), ends.get(flow, []))
        for flow in sorted(set(starts) | set(ends))
    )
    attempts: dict[tuple[str, str], list[StepRecord]] = {}
    for step in steps:
        attempts.setdefault((step.flow, step.step), []).append(step)
    summaries = [_step_summary(flow, step, records) for (flow, step), records in attempts.items()]
    slowest = sorted(
        (s for s in summaries if s.p95_seconds is not None),
        key=lambda s: (-(s.p95_seconds or 0.0), s.flow, s.step),
    )
    failing = sorted(
        (s for s in summaries if s.failures),
        key=lambda s: (-s.failures, -s.failure_rate, s.flow, s.step),
    )
    return Report(
        since=since,
        until=until,
        covered_from=covered_from,
        flows=flows,
        slowest_steps=tuple(slowest[:top]),
        most_failing_steps=tuple(failing[:top]),
    )


def _flow_summary(flow: str, started: int, ended: list[FlowRecord]) -> FlowSummary:
    counts = {status: 0 for status in ("succeeded", "failed", "cancelled")}
    for record in ended:
        counts[record.status] = counts.get(record.status, 0) + 1
    durations = [record.seconds for record in ended]
    return FlowSummary(
        flow=flow,
        started=started,
        finished=len(ended),
        succeeded=counts["succeeded"],
        failed=counts["failed"],
        cancelled=counts["cancelled"],
        success_rate=counts["succeeded"] / len(ended) if ended else None,
        p50_seconds=percentile(durations, 0.5),
        p95_seconds=percentile(durations, 0.95),
    )


def _step_summary(flow: str, step: str, records: list[StepRecord]) -> StepSummary:
    failed = [r for r in records if r.outcome in ("failed", "timed_out")]
    timed = [r.seconds for r in records if r.seconds is not None]
    errors: dict[str, int] = {}
    for record in failed:
        name = record.error or record.outcome
        errors[name] = errors.get(name, 0) + 1
    top_error = min(errors, key=lambda name: (-errors[name], name)) if errors else None
    return StepSummary(
        flow=flow,
        step=step,
        attempts=len(records),
        failures=len(failed),
        failure_rate=len(failed) / len(records),
        p50_seconds=percentile(timed, 0.5),
        p95_seconds=percentile(timed, 0.95),
        max_seconds=max(timed) if timed else None,
        top_error=top_error,
    )
