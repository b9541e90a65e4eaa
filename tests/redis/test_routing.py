"""Work for an activity a worker lacks waits for a worker that has it (issue 10, item 9).

A worker without the activity used to fail the task at once with ``UnknownActivity``.
Now it routes the message to the activity's own stream, which only workers that have the
activity read; the work waits there, visibly (``rustyflower workers``), until one runs
it. Failing at once is the setting ``unknown_activity="fail"`` (tests/redis/test_faults.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from rustyflower.adapters.cli.main import app
from rustyflower.adapters.redis.fleet import fleet_report
from rustyflower.adapters.redis.keys import CONSUMER_GROUP
from rustyflower.core.activities import ActivityRegistry
from rustyflower.core.builder import Flow
from tests.redis import activities
from tests.redis.activities import check_instance, running_worker, wait_finished, wait_until
from tests.redis.conftest import Runtime

pytestmark = pytest.mark.emulator


def general() -> ActivityRegistry:
    """The activities most workers have."""
    registry = ActivityRegistry()
    registry.register(lambda payload: payload, name="echo")
    return registry


def specialised(tag: str) -> ActivityRegistry:
    """A worker that also has ``special`` (it says who ran it)."""
    registry = general()
    registry.register(lambda payload: {"by": tag, "n": payload["n"]}, name="special")
    return registry


@pytest.fixture
def rt(runtime: Runtime) -> Iterator[Runtime]:
    activities.configure(runtime.server.url, runtime.keys.prefix)
    runtime.store.register(
        Flow("mixed")
        .task("Before", "echo")
        .task("Special", "special", result_path="$.special")
        .task("After", "echo")
        .build()
    )
    yield runtime


def worker(rt: Runtime, registry: ActivityRegistry, **options: Any) -> Any:
    return running_worker(rt.server.url, rt.keys, activities=registry, **options)


def test_work_for_a_missing_activity_waits_for_a_worker_that_has_it(
    rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: the task failed at once with UnknownActivity."""
    caplog.set_level(logging.WARNING, logger="rustyflower.worker")
    with worker(rt, general(), name="plain", heartbeat_interval=0.2) as plain:
        instance = rt.conductor.start("mixed", {"n": 1}).instance_id
        wait_until(lambda: plain.stats.routed == 1, 5, what="the special work to be routed")
        assert rt.store.info(instance).status == "running"
        assert rt.store.load(instance, fresh=True).positions == ["Special"]
        report = fleet_report(rt.client, rt.keys)
        assert report["waiting"] == [{"activity": "special", "messages": 1, "workers": []}]
        assert any("no activity 'special' in this worker" in r.getMessage() for r in caplog.records)
        with worker(rt, specialised("expert"), name="expert"):
            assert wait_finished(rt.store, instance) == "succeeded"
        check_instance(rt.store, instance)
        snapshot = rt.store.load(instance, fresh=True)
        assert snapshot.state.output["special"] == {"by": "expert", "n": 1}
        assert fleet_report(rt.client, rt.keys)["waiting"] == []


def test_every_special_task_runs_where_the_activity_is(rt: Runtime) -> None:
    with worker(rt, general(), name="plain"), worker(rt, specialised("expert"), name="expert"):
        started = rt.conductor.start_many("mixed", [{"n": n} for n in range(30)])
        for snapshot in started:
            assert wait_finished(rt.store, snapshot.instance_id, timeout=20) == "succeeded"
    outputs = [rt.store.load(s.instance_id, fresh=True).state.output for s in started]
    assert [output["special"] for output in outputs] == [
        {"by": "expert", "n": n} for n in range(30)
    ]


def test_routed_work_of_a_dead_worker_is_reclaimed(rt: Runtime) -> None:
    with worker(rt, general()) as plain:
        instance = rt.conductor.start("mixed", {"n": 2}).instance_id
        wait_until(lambda: plain.stats.routed == 1, 5, what="the special work to be routed")
    stream = rt.keys.activity_stream(0, "special")
    taken = rt.client.xreadgroup(CONSUMER_GROUP, "died-while-running-it", {stream: ">"})
    assert len(taken[0][1]) == 1  # read by a worker that then died: pending, never acked
    with worker(rt, specialised("rescuer"), visibility_timeout=1.0) as rescuer:
        assert wait_finished(rt.store, instance) == "succeeded"
        assert rescuer.stats.reclaimed == 1
    assert rt.client.xpending(stream, CONSUMER_GROUP)["pending"] == 0


def test_rustyflower_workers_shows_the_waiting_work(rt: Runtime) -> None:
    env = {"RUSTYFLOWER_REDIS_URL": rt.server.url, "RUSTYFLOWER_PREFIX": rt.keys.prefix}
    with worker(rt, general(), name="plain", heartbeat_interval=0.2) as plain:
        rt.conductor.start("mixed", {"n": 3})
        wait_until(lambda: plain.stats.routed == 1, 5, what="the special work to be routed")
        wait_until(
            lambda: fleet_report(rt.client, rt.keys)["workers"][0]["routed_away"], 5, what="beat"
        )
        result = CliRunner().invoke(app, ["workers"], env=env)
    assert result.exit_code == 0, result.output
    assert (
        "plain" in result.stdout and "healthy" in result.stdout and "special (1)" in result.stdout
    )
    assert "1 message(s) wait for activity special: no running worker has it" in result.stderr
