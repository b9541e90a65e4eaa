"""Activities and helpers for the Redis runner tests (in-thread workers and worker processes).

The activities leave traces in Redis under the test's key prefix, so a test can see what
ran, in which order and when, even when the activity ran in another process:

* ``{prefix}:test:executions``: the idempotency key of every ``count`` call, pushed when
  the call starts (a call killed mid-way and run again appears twice, with the same key);
* ``{prefix}:test:spans``: one JSON object per finished ``sleep_ms`` call (start and end
  times, instance, idempotency key);
* ``{prefix}:test:gate``: while absent, ``gate`` fails; a test sets it to let it pass.

``configure(url, prefix)`` says where the traces go (a worker process is given them on
its command line; an in-thread worker shares this module with the test).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import redis

from rustyflower.adapters.redis.keys import Keyspace
from rustyflower.adapters.redis.store import RedisStore
from rustyflower.adapters.redis.worker import Worker, WorkerOptions
from rustyflower.core.activities import ActivityRegistry, current_call
from rustyflower.core.engine import FINISHED
from rustyflower.core.snapshot import SnapshotKeys

registry = ActivityRegistry()

_sink: dict[str, Any] = {"client": None, "prefix": None}


def configure(url: str, prefix: str) -> None:
    """Send traces to the Redis at ``url``, under ``prefix``."""
    old = _sink["client"]
    if old is not None:
        old.close()
    _sink["client"] = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    _sink["prefix"] = prefix


def _client() -> redis.Redis:
    client = _sink["client"]
    if client is None:
        raise RuntimeError("tests.redis.activities.configure() was not called")
    return client


def executions_key(prefix: str) -> str:
    return f"{prefix}:test:executions"


def spans_key(prefix: str) -> str:
    return f"{prefix}:test:spans"


def gate_key(prefix: str) -> str:
    return f"{prefix}:test:gate"


class Flaky(Exception):
    pass


class Boom(Exception):
    pass


class GateClosed(Exception):
    pass


class UpstreamError(ValueError):
    pass


# --- activities ------------------------------------------------------------------------------


@registry.activity
def echo(payload: Any) -> Any:
    return payload


@registry.activity
def add(payload: Any) -> Any:
    return payload["a"] + payload["b"]


@registry.activity
def fail_n_times(payload: Any) -> Any:
    """Fail with ``Flaky`` while the attempt is at most ``payload["n"]``."""
    attempt = current_call().attempt
    if attempt <= payload["n"]:
        raise Flaky(f"attempt {attempt} of {payload['n']} planned failures")
    return {"attempts": attempt}


@registry.activity
def fail_always(payload: Any) -> Any:
    raise Boom((payload or {}).get("message", "boom"))


@registry.activity
def sleep_ms(payload: Any) -> Any:
    """Sleep ``payload["ms"]``; record the span (start, end) of the call."""
    call = current_call()
    began = time.time()
    time.sleep(payload["ms"] / 1000)
    ended = time.time()
    span = {
        "instance": call.instance_id,
        "key": call.idempotency_key,
        "start": began,
        "end": ended,
        "tag": payload.get("tag"),
    }
    _client().rpush(spans_key(_sink["prefix"]), json.dumps(span))
    return payload.get("tag", payload["ms"])


@registry.activity
async def async_echo(payload: Any) -> Any:
    await asyncio.sleep(0.01)
    return {"async": True, "value": payload}


@registry.activity
def count(payload: Any) -> Any:
    """Push the idempotency key to the executions list, then sleep ``ms`` (default 0)."""
    call = current_call()
    _client().rpush(executions_key(_sink["prefix"]), call.idempotency_key)
    ms = (payload or {}).get("ms", 0) if isinstance(payload, dict) else 0
    if ms:
        time.sleep(ms / 1000)
    return payload


@registry.activity
def whoami(payload: Any) -> Any:
    call = current_call()
    return {
        "instance_id": call.instance_id,
        "call_id": call.call_id,
        "idempotency_key": call.idempotency_key,
        "attempt": call.attempt,
        "activity": call.activity,
    }


@registry.activity
def gate(payload: Any) -> Any:
    """Fail with ``GateClosed`` until the test opens the gate."""
    if not _client().exists(gate_key(_sink["prefix"])):
        raise GateClosed("the gate is closed")
    return {"passed": payload}


@registry.activity
def returns_a_set(payload: Any) -> Any:
    return {1, 2, 3}


@registry.activity
def returns_nan(payload: Any) -> Any:
    return {"value": float("nan")}


@registry.activity
def raises_json_value_error(payload: Any) -> Any:
    """An activity's own failure that happens to mention JSON (a bad upstream answer)."""
    raise UpstreamError("the upstream service answered with invalid JSON")


# --- helpers for the tests -------------------------------------------------------------------


def wait_until(predicate: Any, timeout: float, interval: float = 0.02, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def wait_finished(store: RedisStore, instance_id: str, timeout: float = 10.0) -> str:
    """Wait until the instance finished; its final status."""

    def finished() -> str | None:
        status = store.info(instance_id).status
        return status if status in FINISHED else None

    return str(wait_until(finished, timeout, what=f"instance {instance_id} to finish"))


def check_history(history: list[dict[str, Any]], final_seq: int) -> None:
    """No transition lost or applied twice, and each activity call ends at most once.

    Every transition records at least one entry, tagged with its seq: the seqs run from 1
    to the instance's seq, never decreasing and never skipping one. A call (TaskScheduled at
    a position) ends at most once (TaskSucceeded or TaskFailed); a call that was cancelled
    (a timeout, a failing sibling branch) is replaced by the next TaskScheduled there.
    """
    seqs = [entry["seq"] for entry in history]
    assert seqs, "empty history"
    assert seqs[0] == 1, f"history starts at seq {seqs[0]}"
    for before, after in itertools.pairwise(seqs):
        assert after in (before, before + 1), f"history seq goes from {before} to {after}: {seqs}"
    assert seqs[-1] == final_seq, f"history ends at seq {seqs[-1]}, the instance is at {final_seq}"
    open_calls: dict[str, bool] = {}
    for entry in history:
        position = entry["position"]
        if entry["kind"] == "TaskScheduled":
            open_calls[position] = True
        elif entry["kind"] in ("TaskSucceeded", "TaskFailed"):
            assert open_calls.get(position), (
                f"{entry['kind']} at {position} without a call in progress: {history}"
            )
            open_calls[position] = False


def check_instance(store: RedisStore, instance_id: str) -> list[dict[str, Any]]:
    history = store.history(instance_id)
    check_history(history, store.info(instance_id).seq)
    return history


def executions(client: redis.Redis, prefix: str) -> list[str]:
    return [item.decode() for item in client.lrange(executions_key(prefix), 0, -1)]


def spans(client: redis.Redis, prefix: str) -> list[dict[str, Any]]:
    return [json.loads(item) for item in client.lrange(spans_key(prefix), 0, -1)]


def max_overlap(found: list[dict[str, Any]]) -> int:
    """The most spans running at one instant."""
    edges = sorted(
        [(span["start"], 1) for span in found] + [(span["end"], -1) for span in found],
        key=lambda edge: (edge[0], edge[1]),  # an end before a start at the same instant
    )
    running = best = 0
    for _, step in edges:
        running += step
        best = max(best, running)
    return best


TEST_OPTIONS = {"concurrency": 2, "visibility_timeout": 2.0, "heartbeat_interval": 0.5}


@contextlib.contextmanager
def running_worker(
    url: str,
    keys: Keyspace,
    activities: ActivityRegistry | None = None,
    snapshot_keys: SnapshotKeys | None = None,
    **options: Any,
) -> Iterator[Worker]:
    """A Worker running in this process (in threads of its own) until the block ends.

    It has a client and a store of its own, as a worker in another process would.
    """
    settings = {**TEST_OPTIONS, "block_ms": 100, **options}
    client = redis.Redis.from_url(url)
    store = RedisStore(client, keys, snapshot_keys)
    worker = Worker(store, activities or registry, WorkerOptions(**settings))
    try:
        worker.start()
        yield worker
    finally:
        worker.stop(timeout=10)
        client.close()
