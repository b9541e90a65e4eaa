"""Failover and failback while a worker holds the instance in its cache (issue 10, item 1).

The failover and failback are driven through the operations the continuity code uses
(``adapters/continuity/handover.py``): ``RedisStore.fence`` raises the epoch for the cloud,
then ``Conductor.resume(..., take_ownership=True)`` takes the cloud's snapshot back at the
next epoch. The cloud does nothing in between here, so the instance comes home at the
same seq it left with: exactly the case where a worker's cached snapshot (older epoch,
same seq) is refused by the store's epoch fence. A fenced answer must make the worker
reload and decide again; the instance must finish with the output of an uninterrupted run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from rustyflower.adapters.redis.conductor import Conductor, FencedError
from rustyflower.adapters.redis.messages import timer_member
from rustyflower.core.builder import Flow, Retry
from rustyflower.core.engine import ActivityCompleted, TimerFired
from rustyflower.core.model import FlowDefinition
from rustyflower.core.snapshot.document import encode_snapshot
from tests.redis import activities
from tests.redis.activities import check_instance, running_worker, wait_finished, wait_until
from tests.redis.conftest import Runtime

pytestmark = pytest.mark.emulator


@pytest.fixture
def rt(runtime: Runtime) -> Iterator[Runtime]:
    activities.configure(runtime.server.url, runtime.keys.prefix)
    yield runtime


def fail_over_and_back(rt: Runtime, instance_id: str) -> None:
    """Fence the instance for AWS, then resume AWS's (unchanged) snapshot at the next epoch."""
    info = rt.store.info(instance_id)
    assert rt.store.fence(instance_id, info.epoch + 1, "aws")
    in_the_cloud = replace(rt.store.load(instance_id, fresh=True), epoch=info.epoch + 1)
    rt.conductor.resume(encode_snapshot(in_the_cloud, rt.store.snapshot_keys), take_ownership=True)
    back = rt.store.info(instance_id)
    assert (back.owner, back.epoch, back.seq) == ("local", info.epoch + 2, info.seq)


def output_of(rt: Runtime, instance_id: str, timeout: float = 15.0) -> Any:
    wait_finished(rt.store, instance_id, timeout)
    check_instance(rt.store, instance_id)
    snapshot = rt.store.load(instance_id, fresh=True)
    assert snapshot.status == "succeeded", (snapshot.state.error, snapshot.state.cause)
    return snapshot.state.output


def at(rt: Runtime, instance_id: str, position: str) -> bool:
    return rt.store.load(instance_id, fresh=True).positions == [position]


def reference_output(rt: Runtime, flow: FlowDefinition, flow_input: Any) -> Any:
    with running_worker(rt.server.url, rt.keys):
        instance = rt.conductor.start(flow.name, flow_input).instance_id
        return output_of(rt, instance)


def test_failover_and_failback_while_waiting(rt: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    # The first task makes the worker commit (and cache) the instance before it waits.
    flow = (
        Flow("resting")
        .task("Prepare", "add", parameters={"a.$": "$.x", "b": 1}, result_path="$.x")
        .wait("Rest", seconds=2)
        .task("Finish", "echo")
        .build()
    )
    rt.store.register(flow)
    expected = reference_output(rt, flow, {"x": 1})
    caplog.set_level(logging.INFO, logger="rustyflower.worker")
    with running_worker(rt.server.url, rt.keys):
        instance = rt.conductor.start("resting", {"x": 1}).instance_id
        wait_until(lambda: at(rt, instance, "Rest"), 5, what="the instance to rest")
        fail_over_and_back(rt, instance)
        assert output_of(rt, instance) == expected == {"x": 2}
    assert not [r for r in caplog.records if "dropping timer" in r.getMessage()]


def test_failover_and_failback_while_a_retry_is_scheduled(rt: Runtime) -> None:
    retry = Retry(errors=["Flaky"], interval_seconds=2, max_attempts=3, backoff_rate=1.0)
    flow = (
        Flow("retrying")
        .task("Prepare", "echo", result_path="$.prepared")
        .task("Call", "fail_n_times", parameters={"n": 1}, retry=[retry], result_path="$.call")
        .build()
    )
    rt.store.register(flow)
    expected = reference_output(rt, flow, {"order": 7})

    def retry_scheduled(instance_id: str) -> bool:
        kinds = [entry["kind"] for entry in rt.store.history(instance_id)]
        return "RetryStarted" in kinds or "TaskFailed" in kinds

    with running_worker(rt.server.url, rt.keys):
        instance = rt.conductor.start("retrying", {"order": 7}).instance_id
        wait_until(lambda: retry_scheduled(instance), 5, what="the first attempt to fail")
        fail_over_and_back(rt, instance)
        assert output_of(rt, instance) == expected
    assert expected["call"] == {"attempts": 2}


def test_failover_and_failback_while_a_task_is_in_flight(rt: Runtime) -> None:
    flow = (
        Flow("busy")
        .task("Prepare", "echo", result_path="$.prepared")
        .task("Slow", "sleep_ms", parameters={"ms": 2500, "tag": "slow"}, result_path="$.slow")
        .task("Finish", "echo")
        .build()
    )
    rt.store.register(flow)
    expected = reference_output(rt, flow, {"order": 8})
    finished_before = len(activities.spans(rt.client, rt.keys.prefix))
    with running_worker(rt.server.url, rt.keys, concurrency=1):
        instance = rt.conductor.start("busy", {"order": 8}).instance_id
        wait_until(lambda: at(rt, instance, "Slow"), 5, what="the slow task to be dispatched")
        time.sleep(0.3)  # the worker is inside the 2.5 s activity now
        fail_over_and_back(rt, instance)
        assert len(activities.spans(rt.client, rt.keys.prefix)) == finished_before
        assert output_of(rt, instance) == expected


def test_a_stale_cache_is_reloaded_when_the_store_answers_fenced(rt: Runtime) -> None:
    """The rule itself: a fenced commit means reload and decide again (no worker needed)."""
    flow = Flow("cached").task("Prepare", "echo").wait("Rest", seconds=60).build()
    rt.store.register(flow)
    instance = rt.conductor.start("cached", {}).instance_id
    call = next(iter(rt.store.load(instance).state.pending.values()))
    rt.conductor.apply(instance, ActivityCompleted(call.id, {"done": True}))
    worker_side = Conductor(rt.fresh_store())
    worker_side.store.load(instance)  # the worker's cache now holds epoch 0
    fail_over_and_back(rt, instance)
    (timer,) = rt.store.load(instance, fresh=True).state.pending.values()
    worker_side.apply(instance, TimerFired(timer.id), fired_timer=timer.id)
    assert rt.store.load(instance, fresh=True).status == "succeeded"


def test_a_fenced_instance_still_drops_its_timer_and_keeps_it_after_failback(
    rt: Runtime,
) -> None:
    """Really owned elsewhere (no failback yet): the timer goes; failback puts it back."""
    flow = Flow("away").wait("Rest", seconds=60).task("Finish", "echo").build()
    rt.store.register(flow)
    instance = rt.conductor.start("away", {}).instance_id
    (timer,) = rt.store.load(instance).state.pending.values()
    member = timer_member(instance, timer.id)
    rt.store.fence(instance, 1, "aws")
    with pytest.raises(FencedError):
        Conductor(rt.fresh_store()).apply(instance, TimerFired(timer.id), fired_timer=timer.id)
    assert rt.client.zscore(rt.keys.timers(0), member) is None
    in_the_cloud = replace(rt.store.load(instance, fresh=True), epoch=1)
    rt.conductor.resume(encode_snapshot(in_the_cloud, rt.store.snapshot_keys), take_ownership=True)
    assert rt.client.zscore(rt.keys.timers(0), member) is not None


def test_the_fence_and_the_resume_write_their_history_entries_once(rt: Runtime) -> None:
    """FailedOver comes from the fence script, FailedBack from the resume's commit: an entry
    exactly when the owner changed, never twice, and the time the owner changed."""
    flow = Flow("moving").wait("Rest", seconds=60).task("Finish", "echo").build()
    rt.store.register(flow)
    instance = rt.conductor.start("moving", {}).instance_id
    assert rt.store.info(instance).owner_since == ""  # never moved
    seq = rt.store.info(instance).seq
    assert rt.store.fence(instance, 1, "aws", {"why": "drill"})
    assert not rt.store.fence(instance, 1, "aws")  # not again: no second entry
    assert not rt.store.fence(instance, 1, "azure")
    moved = [entry for entry in rt.store.history(instance) if entry["kind"] == "FailedOver"]
    assert moved == [
        {
            "seq": seq,
            "at": moved[0]["at"],
            "kind": "FailedOver",
            "position": "",
            "detail": {"cloud": "aws", "epoch": 1, "why": "drill"},
        }
    ]
    since = rt.store.info(instance).owner_since
    assert since == moved[0]["at"]
    in_the_cloud = replace(rt.store.load(instance, fresh=True), epoch=1)
    rt.conductor.resume(encode_snapshot(in_the_cloud, rt.store.snapshot_keys), take_ownership=True)
    last = rt.store.history(instance)[-1]
    assert (last["kind"], last["seq"], last["detail"]) == (
        "FailedBack",
        seq,
        {"cloud": "aws", "epoch": 2},
    )
    info = rt.store.info(instance)
    assert (info.owner, info.epoch, info.owner_since) == ("local", 2, last["at"])
    # a resume of a local instance is no failback: no entry, the owner's time stays
    rt.conductor.resume(
        encode_snapshot(rt.store.load(instance, fresh=True), rt.store.snapshot_keys),
        take_ownership=True,
    )
    kinds = [entry["kind"] for entry in rt.store.history(instance)]
    assert (kinds.count("FailedOver"), kinds.count("FailedBack")) == (1, 1)
    assert rt.store.info(instance).owner_since == last["at"]


# --- end to end: fail over to AWS (moto's Step Functions executor) and back -----------------

REST_SECONDS = 5


@pytest.fixture
def aws_site(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    """The continuity tests' site and moto world, with a flow that rests after a task."""
    from tests.aws.test_lambda_kit import KEYS, lambda_world, set_environment  # noqa: PLC0415
    from tests.continuity.kit import Site  # noqa: PLC0415

    set_environment(monkeypatch)
    with lambda_world() as world:
        world.deploy(RESTING_FLOW)
        site = Site(runtime, KEYS)
        site.store.register(RESTING_FLOW)
        site.settle_environment(monkeypatch)
        with site.worker():
            yield site, world


RESTING_FLOW = (
    Flow("resting-e2e", version="1")
    .task("Prepare", "add", parameters={"a.$": "$.amount", "b": 1}, result_path="$.total")
    .wait("Rest", seconds=REST_SECONDS)
    .task("Finish", "concat", parameters={"left": "rested", "right": "!"}, result_path="$.note")
    .build()
)


def test_failover_to_aws_and_failback_while_waiting_end_to_end(aws_site: tuple[Any, Any]) -> None:
    """The issue's report: fail over while the instance rests, fail back before the wait ends."""
    site, world = aws_site
    expected = {"amount": 41, "total": 42, "note": "rested!"}
    site.conductor.start(RESTING_FLOW.name, {"amount": 41}, instance_id="rest-1")
    site.wait_at("rest-1", "Rest")  # the worker committed Prepare: its cache holds epoch 0
    site.cli("failover", "--to", "aws", "rest-1")
    assert site.store.info("rest-1").owner == "aws"
    (row,) = site.cli_json("failback", "--from", "aws", "rest-1")
    assert (row["result"], row["epoch"]) == ("resumed", 2)
    back = site.store.load("rest-1", fresh=True)
    assert back.positions == ["Rest"]
    finished = site.wait_finished("rest-1", timeout=REST_SECONDS + 15)
    assert (finished.status, finished.state.output) == ("succeeded", expected)
    world.stop_all()
