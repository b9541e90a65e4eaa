"""An execution's Step Functions history, read: its events, their data, its states' places.

The failback (``adapters.aws.failback``) replays these events through the engine; this
module only reads them and needs nothing of the engine. It is apart because it changes
with what Step Functions records (``get_execution_history``'s events and their data) and
with the compiler's state names (adapters.aws.names), while the replay changes with the
engine.

States are placed by their ASL names (adapters.aws.names) and, inside map iterations, by
the scope their data carries. Data that cannot be read (truncated by Step Functions, or
not JSON: the history must be read with ``includeExecutionData``) raises
:class:`FailbackError` saying where; a state the compiler added, or whose ASL name was cut
to 80 characters (``...#hash``), has no position.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rustyflower.adapters.aws.contract import PayloadError, render_scope
from rustyflower.adapters.aws.names import user_state_of
from rustyflower.core.errors import RustyFlowerError

_COPY_SEGMENT = re.compile(r"(?P<owner>.+?)(?:~r)?\[(?P<index>\d+|\*)\]")


# Defined here rather than beside the replay: reading the history refuses with it too, and
# the replay (adapters.aws.failback) imports this module, never the other way round.
class FailbackError(RustyFlowerError, ValueError):
    """The execution cannot be turned into a snapshot (the message says which event)."""


# --- history events ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryEvent:
    id: int
    previous: int
    type: str
    timestamp: datetime
    details: Mapping[str, Any]


def history_events(raw: Iterable[Mapping[str, Any]]) -> list[HistoryEvent]:
    """``get_execution_history`` events (as boto3 returns them), in id order."""
    events: list[HistoryEvent] = []
    for item in raw:
        details: Mapping[str, Any] = {}
        for key, value in item.items():
            if key.endswith("EventDetails") and isinstance(value, Mapping):
                details = value
                break
        for key in ("inputDetails", "outputDetails"):
            if (details.get(key) or {}).get("truncated"):
                raise FailbackError(
                    f"history event {item.get('id')} ({item.get('type')}): its data was "
                    "truncated by Step Functions; the history cannot be replayed"
                )
        moment = item.get("timestamp")
        if isinstance(moment, str):
            moment = datetime.fromisoformat(moment)
        if not isinstance(moment, datetime):
            raise FailbackError(f"history event {item.get('id')} has no timestamp")
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        events.append(
            HistoryEvent(
                id=int(item["id"]),
                previous=int(item.get("previousEventId") or 0),
                type=str(item["type"]),
                timestamp=moment,
                details=details,
            )
        )
    events.sort(key=lambda event: event.id)
    return events


def read_history(stepfunctions: Any, execution_arn: str) -> list[dict[str, Any]]:
    """Every event of an execution, with its data (all pages)."""
    events: list[dict[str, Any]] = []
    paginator = stepfunctions.get_paginator("get_execution_history")
    for page in paginator.paginate(
        executionArn=execution_arn, includeExecutionData=True, reverseOrder=False
    ):
        events.extend(page.get("events", []))
    return events


def json_document(text: Any, where: str) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        raise FailbackError(f"{where} is not JSON (was the history read with its data?)") from None


def lambda_cause(cause: Any) -> str | None:
    """A Lambda error's ``errorMessage`` (its cause is the error document as JSON text)."""
    if not isinstance(cause, str):
        return None
    try:
        document = json.loads(cause)
    except ValueError:
        return cause
    if isinstance(document, Mapping) and isinstance(document.get("errorMessage"), str):
        return str(document["errorMessage"])
    return cause


def execution_document(execution: Mapping[str, Any], events: Sequence[HistoryEvent]) -> Any:
    """The execution's input document (``{"rf": ..., "input": ...}``)."""
    for event in events:
        if event.type == "ExecutionStarted":
            return json_document(event.details.get("input"), "the execution's input")
    return json_document(execution.get("input"), "the execution's input")


# --- placing ASL states ------------------------------------------------------------------------


def _scope_in(data: Any) -> Any:
    """The scope value a state's data carries inside map iterations (``rf.scope``), or in a
    sub-flow call (``call.scope``, or ``child.scope`` for a child named by its position);
    ``...`` when it carries none."""
    if isinstance(data, Mapping):
        for key in ("rf", "call", "child"):
            holder = data.get(key)
            if isinstance(holder, Mapping) and "scope" in holder:
                return holder["scope"]
    return ...


def position_of(asl_name: str, data: Any = None) -> str | None:
    """The engine position of a compiled state (``Fork~r[1]/Ship~resume`` ->
    ``Fork[1]/Ship``), or None for the compiler's own states. Inside a map iterator
    (``Items[*]/...``) the item index comes from the scope in ``data``."""
    if asl_name.startswith("RF:") or "#" in asl_name:
        return None
    *copies, last = asl_name.split("/")
    state = user_state_of(last)
    if not state:
        return None
    parts: list[str] = []
    dynamic = False
    for segment in copies:
        found = _COPY_SEGMENT.fullmatch(segment)
        if found is None:
            return None
        dynamic = dynamic or found["index"] == "*"
        parts.append(f"{found['owner']}[{found['index']}]/")
    if not dynamic:
        return "".join(parts) + state
    scope = _scope_in(data)
    if scope is ...:
        raise FailbackError(
            f"state {asl_name!r} runs in a map iteration but its data carries no scope"
        )
    try:
        return render_scope(scope) + state
    except PayloadError as problem:
        raise FailbackError(f"state {asl_name!r}: {problem}") from None


def ancestors(position: str) -> list[str]:
    """``A[0]/B[2]/C`` -> ``["A", "A[0]/B", "A[0]/B[2]/C"]``: owners outermost first."""
    found: list[str] = []
    for index, char in enumerate(position):
        if char == "[":
            found.append(position[:index])
    found.append(position)
    return found
