"""Counters, duration histograms and event streams, written by the commit that earns them.

Each transition's observations (``core.observations``) become extra operations of the
commit script, so they are recorded exactly once, atomically with the transition: a
commit that loses its compare-and-set records nothing, and its retry records once.

Per shard (so every key stays in the instance's hash slot):

* ``Keyspace.stats``: a hash of counters. Each field is a JSON array naming the series,
  e.g. ``["started","order"]``, ``["finished","order","failed"]``,
  ``["step","order","Charge","succeeded"]``, and for the duration histograms a count per
  bucket (``["step_bucket","order","Charge",3]``, bucket 3 of ``DURATION_BUCKETS``, not
  cumulative) and the sum of the seconds (``["step_seconds","order","Charge"]``); the same
  with ``flow_bucket``/``flow_seconds`` for whole flows. JSON keeps any state name apart.
* ``Keyspace.flow_events`` and ``Keyspace.step_events``: streams of what started and
  finished, capped at about ``EVENTS_MAXLEN`` entries each, for reports and webhooks.
"""

from __future__ import annotations

import bisect
import functools
import json
from collections.abc import Sequence
from typing import Any

from rustyflower.adapters.redis.compact_json import compact
from rustyflower.adapters.redis.keys import Keyspace
from rustyflower.core.observations import FlowFinished, FlowStarted, Observation, StepFinished

DURATION_BUCKETS: tuple[float, ...] = (
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0,
)  # fmt: skip
"""Upper bounds (seconds) of the duration histograms; a last bucket holds the rest (+Inf).
Steps of a workflow last from milliseconds (a lookup) to a day (a human approval)."""

EVENTS_MAXLEN = 100_000
"""About this many entries are kept per event stream and shard (Redis trims approximately):
some 10-15 MB each. Reports over a window older than the oldest entry say so."""


@functools.lru_cache(maxsize=4096, typed=True)
def field(*parts: str | int) -> str:
    """A counter's field name (see the module's docstring); the same few series come back
    on every commit, so their names are encoded once (the cache is bounded)."""
    return json.dumps(list(parts), separators=(",", ":"))


def bucket_of(seconds: float) -> int:
    """The index of the histogram bucket ``seconds`` falls in (``le`` semantics)."""
    return bisect.bisect_left(DURATION_BUCKETS, seconds)


def observation_ops(
    observations: Sequence[Observation],
    keys: list[str],
    keyspace: Keyspace,
    shard: int,
    *,
    maxlen: int = EVENTS_MAXLEN,
    instance_id: str = "",
) -> list[str | bytes | int]:
    """The commit script's ops that record ``observations``; appends the keys they use to
    ``keys`` (the script's KEYS) and refers to them by position."""
    if not observations:
        return []
    keys += [keyspace.stats(shard), keyspace.flow_events(shard), keyspace.step_events(shard)]
    stats, flows, steps = len(keys) - 2, len(keys) - 1, len(keys)  # Lua counts from 1
    ops: list[str | bytes | int] = []

    def count(*parts: str | int) -> None:
        ops.extend(["c", stats, field(*parts), 1])

    def add_seconds(*parts: str | int, seconds: float) -> None:
        ops.extend(["f", stats, field(*parts), repr(seconds)])

    def event(stream: int, payload: dict[str, Any]) -> None:
        ops.extend(["e", stream, maxlen, compact(payload)])

    for seen in observations:
        if isinstance(seen, FlowStarted):
            count("started", seen.flow)
            event(flows, {"k": "started", "flow": seen.flow, "version": seen.version})
        elif isinstance(seen, FlowFinished):
            count("finished", seen.flow, seen.status)
            count("flow_bucket", seen.flow, bucket_of(seen.duration_seconds))
            add_seconds("flow_seconds", seen.flow, seconds=seen.duration_seconds)
            event(
                flows,
                {
                    "k": "finished",
                    "instance": instance_id,
                    "flow": seen.flow,
                    "version": seen.version,
                    "status": seen.status,
                    "error": seen.error,
                    "seconds": seen.duration_seconds,
                    "finished_at": seen.finished_at,
                },
            )
        elif isinstance(seen, StepFinished):
            count("step", seen.flow, seen.step, seen.outcome)
            if seen.duration_seconds is not None:
                count("step_bucket", seen.flow, seen.step, bucket_of(seen.duration_seconds))
                add_seconds("step_seconds", seen.flow, seen.step, seconds=seen.duration_seconds)
            event(
                steps,
                {
                    "flow": seen.flow,
                    "step": seen.step,
                    "kind": seen.kind,
                    "outcome": seen.outcome,
                    "error": seen.error,
                    "seconds": seen.duration_seconds,
                },
            )
    return ops
