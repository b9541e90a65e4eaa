"""The conformance corpus through the Redis store.

* Cut and resume through the store: for every case and every cut point k, the virtual
  runtime runs the case up to transition k; the snapshot is resumed into a store (prefix
  A), exported, resumed into a fresh store (prefix B, a new RedisStore object), loaded
  back and continued by a brand-new virtual runtime: same final status and output as the
  uninterrupted run.
* End to end on the real worker: the cases that last at most a couple of seconds run on a
  Worker in real time, all at once, with the expected results.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from rustyflower.adapters.redis.conductor import Conductor
from rustyflower.adapters.redis.keys import Keyspace
from rustyflower.adapters.redis.store import RedisStore
from rustyflower.core.activities import ActivityRegistry
from rustyflower.core.engine import FINISHED, Snapshot
from rustyflower.core.snapshot import SnapshotKeys
from rustyflower.core.snapshot.document import encode_snapshot
from rustyflower.testing import RunResult
from tests.conformance import activities as conformance
from tests.conformance.corpus import Case, Expect
from tests.conformance.test_conformance import (
    CASES,
    FAILOVER,
    KEYS,
    baseline,
    params,
    problems,
    run_case,
    work_done,
)
from tests.redis.activities import check_instance, running_worker, wait_until
from tests.redis.conftest import Runtime

pytestmark = pytest.mark.emulator


# --- cut and resume through the store -----------------------------------------------------------


class StoreRoundTrip:
    """The cut's transfer: instead of an encode/decode, the snapshot goes through Redis."""

    def __init__(self, runtime: Runtime, keys: SnapshotKeys) -> None:
        self.runtime = runtime
        self.keys = keys
        self.trips = 0

    def store(self, prefix: str) -> RedisStore:
        client = redis.Redis.from_url(self.runtime.server.url)
        return RedisStore(client, Keyspace(prefix=prefix), self.keys)

    def __call__(self, snapshot: Snapshot, keys: SnapshotKeys) -> Snapshot:
        self.trips += 1
        base = f"{self.runtime.keys.prefix}:cut{self.trips}"
        first, second = self.store(f"{base}a"), self.store(f"{base}b")
        try:
            data = encode_snapshot(snapshot, keys)
            Conductor(first).resume(data)
            exported = Conductor(first).export(snapshot.instance_id)
            Conductor(second).resume(exported)
            fresh = self.store(f"{base}b")  # a store object that never saw the instance
            try:
                loaded = fresh.load(snapshot.instance_id, fresh=True)
            finally:
                fresh.client.close()
        finally:
            first.client.close()
            second.client.close()
        assert encode_snapshot(loaded, keys) == data, "the store changed the snapshot"
        return loaded


def cut_params() -> list[Any]:
    """The cases that have a cut point (more than one transition); refused flows fail."""
    return [
        param
        for param in params(FAILOVER)
        if param.values[0].flow is None or baseline(param.values[0].id).transitions > 1
    ]


@pytest.mark.parametrize("case", cut_params())
def test_cut_resume_through_the_store(case: Case, runtime: Runtime) -> None:
    reference = baseline(case.id)
    cut_points = list(range(1, reference.transitions))
    trip = StoreRoundTrip(runtime, KEYS)
    failures = []
    for k in cut_points:
        result = run_case(case, cut=lambda seq, k=k: seq == k, failover=True, transfer=trip)
        found = problems(case, result, elapsed=False)
        if result.failovers < 1:
            found.append("no failover happened")
        if (result.status, result.output, result.error) != (
            reference.status,
            reference.output,
            reference.error,
        ):
            found.append(f"ended {result.status} {result.output!r}, uninterrupted differs")
        if work_done(result) != work_done(reference):
            found.append(f"activity calls differ: {work_done(result)} vs {work_done(reference)}")
        if found:
            failures.append(f"cut after transition {k}: " + "; ".join(found))
    assert not failures, f"{case.id}:\n" + "\n".join(failures)
    assert trip.trips >= len(cut_points)


# --- end to end on the real worker ------------------------------------------------------------

MAX_SECONDS = 2.0


def real_time_registry() -> ActivityRegistry:
    """The conformance activities, with ``slow`` and ``slow_fail`` really taking their time."""
    found = ActivityRegistry()
    for activity in conformance.registry:
        if activity.name in conformance.VIRTUAL_DURATIONS:
            measure = conformance.VIRTUAL_DURATIONS[activity.name]

            def sleeping(payload: Any, _run: Any = activity.function, _m: Any = measure) -> Any:
                time.sleep(_m(payload))
                return _run(payload)

            found.register(sleeping, name=activity.name, retry=list(activity.retry))
        else:
            found.register(activity.function, name=activity.name, retry=list(activity.retry))
    return found


def real_time_cases() -> list[Case]:
    """The cases without scripted events that last at most MAX_SECONDS of virtual time."""
    chosen = []
    for case in CASES:
        if case.flow is None or case.events:
            continue
        result = baseline(case.id)
        if result.elapsed_seconds > MAX_SECONDS:
            continue
        chosen.append(case)
    return chosen


def meets(expect: Expect, snapshot: Snapshot) -> list[str]:
    state = snapshot.state
    result = RunResult(
        status=snapshot.status,
        output=state.output,
        error=state.error,
        cause=state.cause,
        transitions=snapshot.seq,
        snapshot=snapshot,
        elapsed_seconds=0,
        events_delivered=0,
        stale_events=0,
        unheard_events=0,
        cuts=0,
        failovers=0,
        calls=(),
    )
    case = Case("", "", None, (), expect, None)
    return problems(case, result, elapsed=False)


def test_corpus_cases_on_the_real_worker(runtime: Runtime) -> None:
    cases = real_time_cases()
    assert len(cases) >= 40, [case.id for case in cases]
    started: dict[str, Case] = {}
    for case in cases:
        for definition in (*case.subflows, case.flow):
            assert definition is not None
            runtime.store.register(definition)
    for case in cases:
        assert case.flow is not None
        instance_id = f"{case.file}.{case.name}"
        runtime.conductor.start(
            case.flow.name, case.input, version=case.flow.version, instance_id=instance_id
        )
        started[instance_id] = case
    with running_worker(runtime.server.url, runtime.keys, real_time_registry(), concurrency=12):

        def all_finished() -> bool:
            return all(runtime.store.info(i).status in FINISHED for i in started)

        wait_until(all_finished, 30, interval=0.05, what="every case to finish")
    failures = []
    for instance_id, case in started.items():
        snapshot = runtime.store.load(instance_id, fresh=True)
        found = meets(case.expect, snapshot)
        try:
            check_instance(runtime.store, instance_id)
        except AssertionError as error:
            found.append(f"history: {error}")
        if found:
            failures.append(f"{case.id}: " + "; ".join(found))
    assert not failures, "\n".join(failures)
