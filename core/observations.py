"""What a transition tells an operator: a flow started or finished, a step ended, and when.

A runtime that applies transitions exactly once (the Redis runner's commit) records these
with the transition, so counters and durations derived from them are exact: a transition
retried after losing a race is observed once, when it is finally applied. The values are
read from the snapshots alone (their history entries and times), never from a clock, so
any runtime can derive the same observations from the same transitions.

A *step* is a task (from ``TaskScheduled`` to its result) or a sub-flow call (from
``SubFlowStarted`` to ``SubFlowFinished``), one observation per attempt. Its duration is
measured from the scheduling entry in the instance's bounded history; when that entry has
already been dropped (a very long flow), the step is still counted, without a duration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from rustyflower.core.contract import ReservedError
from rustyflower.core.engine import HistoryEntry, Snapshot
from rustyflower.core.timeutil import parse_timestamp

StepOutcome = Literal["succeeded", "failed", "timed_out", "cancelled"]

StepKind = Literal["task", "sub_flow"]

_STEP_STARTS: dict[str, StepKind] = {"TaskScheduled": "task", "SubFlowStarted": "sub_flow"}
_FLOW_ENDS = frozenset({"FlowSucceeded", "FlowFailed", "FlowCancelled"})
_ITEM_INDEX = re.compile(r"\[\d+\]")


@dataclass(frozen=True, slots=True)
class FlowStarted:
    flow: str
    version: str
    at: str


@dataclass(frozen=True, slots=True)
class FlowFinished:
    flow: str
    version: str
    status: str
    error: str | None
    started_at: str
    finished_at: str
    duration_seconds: float


@dataclass(frozen=True, slots=True)
class StepFinished:
    flow: str
    step: str
    """The state's path without branch or item numbers (``Ship/Pack``, not ``Ship[3]/Pack``),
    so one map state is one step however many items it has."""
    kind: StepKind
    outcome: StepOutcome
    error: str | None
    at: str
    duration_seconds: float | None


Observation = FlowStarted | FlowFinished | StepFinished


def step_name(position: str) -> str:
    """A position without its branch and item numbers: a bounded label for metrics."""
    return _ITEM_INDEX.sub("", position)


def observe(previous: Snapshot | None, snapshot: Snapshot) -> list[Observation]:
    """What the transition from ``previous`` (None: a new instance) to ``snapshot`` did.

    Only an engine transition is observed: one that takes the instance exactly one
    ``seq`` further. A snapshot brought in from elsewhere (a resume) says nothing new here.
    """
    before = previous.seq if previous is not None else 0
    if snapshot.seq != before + 1:
        return []
    earlier = previous.state.history if previous is not None else ()
    made = [entry for entry in snapshot.state.history if entry.seq == snapshot.seq]
    definition = snapshot.definition
    found: list[Observation] = []
    for index, entry in enumerate(made):
        if entry.kind == "FlowStarted":
            found.append(FlowStarted(definition.name, definition.version, entry.at))
        elif entry.kind in _FLOW_ENDS:
            found.append(_flow_finished(snapshot, entry))
        else:
            step = _step_finished(entry, (*earlier, *made[:index]), definition.name)
            if step is not None:
                found.append(step)
    return found


def _flow_finished(snapshot: Snapshot, entry: HistoryEntry) -> FlowFinished:
    state = snapshot.state
    finished_at = state.finished_at or entry.at
    return FlowFinished(
        flow=snapshot.definition.name,
        version=snapshot.definition.version,
        status=snapshot.status,
        error=state.error,
        started_at=state.started_at,
        finished_at=finished_at,
        duration_seconds=_seconds_between(state.started_at, finished_at) or 0.0,
    )


def _step_finished(
    entry: HistoryEntry, before: tuple[HistoryEntry, ...], flow: str
) -> StepFinished | None:
    kind = entry.kind
    detail = entry.detail if isinstance(entry.detail, dict) else {}
    outcome: StepOutcome
    error: str | None = None
    if kind == "TaskSucceeded":
        outcome = "succeeded"
    elif kind == "TaskFailed":
        outcome, error = "failed", _text(detail.get("error"))
    elif kind == "TimedOut":
        outcome, error = "timed_out", ReservedError.TIMEOUT
    elif kind == "SubFlowFinished":
        status = detail.get("status")
        outcome = status if status in ("succeeded", "failed", "cancelled") else "failed"
    else:
        return None
    start = _last_start(before, entry.position)
    if start is not None:
        step_kind = _STEP_STARTS[start.kind]
    else:  # the scheduling entry fell out of the bounded history: counted, untimed
        step_kind = "sub_flow" if kind == "SubFlowFinished" else "task"
    return StepFinished(
        flow=flow,
        step=step_name(entry.position),
        kind=step_kind,
        outcome=outcome,
        error=error,
        at=entry.at,
        duration_seconds=_seconds_between(start.at, entry.at) if start is not None else None,
    )


def _last_start(entries: tuple[HistoryEntry, ...], position: str) -> HistoryEntry | None:
    for entry in reversed(entries):
        if entry.position == position and entry.kind in _STEP_STARTS:
            return entry
    return None


def _seconds_between(first: str, last: str) -> float | None:
    began, ended = parse_timestamp(first), parse_timestamp(last)
    if began is None or ended is None:
        return None
    return max(0.0, (ended - began).total_seconds())


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
