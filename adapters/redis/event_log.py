"""Reading the event streams ``observing`` writes: reports over a window of time.

A stream entry's id starts with the server's time in milliseconds, so a window is an
``XRANGE`` from its start to its end on every shard, read in pages.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import redis

from rustyflower.adapters.redis.keys import Keyspace
from rustyflower.core.reports import FlowRecord, Report, StepRecord, build_report
from rustyflower.core.timeutil import format_timestamp

PAGE = 5000


def read_report(client: redis.Redis, keys: Keyspace, since: datetime, until: datetime) -> Report:
    """The report of what started and finished between ``since`` and ``until``."""
    low, high = _millis(since), _millis(until)
    started: list[str] = []
    finished: list[FlowRecord] = []
    steps: list[StepRecord] = []
    covered: int | None = None
    for shard in range(keys.shards):
        for stream in (keys.flow_events(shard), keys.step_events(shard)):
            oldest = _oldest_kept(client, stream)
            if oldest is not None and oldest > low:
                covered = oldest if covered is None else max(covered, oldest)
        for event in _entries(client, keys.flow_events(shard), low, high):
            if event.get("k") == "started":
                started.append(str(event.get("flow")))
            elif event.get("k") == "finished":
                finished.append(
                    FlowRecord(
                        str(event.get("flow")),
                        str(event.get("status")),
                        float(event.get("seconds") or 0.0),
                    )
                )
        for event in _entries(client, keys.step_events(shard), low, high):
            seconds = event.get("seconds")
            steps.append(
                StepRecord(
                    flow=str(event.get("flow")),
                    step=str(event.get("step")),
                    outcome=str(event.get("outcome")),
                    error=event.get("error") if isinstance(event.get("error"), str) else None,
                    seconds=float(seconds) if isinstance(seconds, int | float) else None,
                )
            )
    return build_report(
        since=format_timestamp(since),
        until=format_timestamp(until),
        started=started,
        finished=finished,
        steps=steps,
        covered_from=_timestamp(covered) if covered is not None else None,
    )


def _entries(client: redis.Redis, stream: str, low: int, high: int) -> Iterator[dict[str, Any]]:
    start = f"{low}-0"
    while True:
        page: Any = client.xrange(stream, min=start, max=f"{high}-18446744073709551615", count=PAGE)
        if not page:
            return
        for _entry_id, fields in page:
            raw = fields.get(b"e") or fields.get("e")
            if raw is None:
                continue
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if isinstance(event, dict):
                yield event
        if len(page) < PAGE:
            return
        start = f"({_text(page[-1][0])}"


def _oldest_kept(client: redis.Redis, stream: str) -> int | None:
    """The time (ms) of the stream's first entry, if entries were trimmed off before it."""
    try:
        info: Any = client.xinfo_stream(stream)
    except redis.ResponseError:  # no stream: nothing recorded, nothing trimmed
        return None
    added = info.get("entries-added")
    if added is None or int(added) <= int(info.get("length") or 0):
        return None
    first = info.get("first-entry")
    if not first:
        return None
    return int(_text(first[0]).split("-")[0])


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _timestamp(millis: int) -> str:
    return format_timestamp(datetime.fromtimestamp(millis / 1000, UTC))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
