"""The Redis runner end to end: a real Worker (in threads) against a real server.

Every test runs against the embedded Valkey and Debian's redis-server (``runtime``), each
under a key prefix of its own. Activities live in ``tests/redis/activities.py`` and leave
traces in Redis (executions, spans) so the tests can see what ran, when and how often.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from rustyflower.adapters.redis.keys import PRIORITIES
from rustyflower.adapters.redis.limits import Limits
from rustyflower.adapters.redis.store import Placement
from rustyflower.core.builder import Catch, Flow, Retry, Steps, var, when
from tests.redis import activities
from tests.redis.activities import (
    check_instance,
    executions,
    max_overlap,
    running_worker,
    spans,
    wait_finished,
    wait_until,
)
from tests.redis.conftest import Runtime

pytestmark = pytest.mark.emulator


@pytest.fixture
def rt(runtime: Runtime) -> Iterator[Runtime]:
    """The runtime, with the test activities' traces going under its prefix."""
    activities.configure(runtime.server.url, runtime.keys.prefix)
    yield runtime


def worker(rt: Runtime, **options: Any) -> Any:
    return running_worker(rt.server.url, rt.keys, **options)


def finish(rt: Runtime, instance_id: str, timeout: float = 10.0) -> Any:
    """Wait for the end; check the history; the final snapshot."""
    wait_finished(rt.store, instance_id, timeout)
    check_instance(rt.store, instance_id)
    return rt.store.load(instance_id, fresh=True)


def succeeded(rt: Runtime, instance_id: str, timeout: float = 10.0) -> Any:
    snapshot = finish(rt, instance_id, timeout)
    assert snapshot.status == "succeeded", (snapshot.state.error, snapshot.state.cause)
    return snapshot.state.output


def kinds(rt: Runtime, instance_id: str) -> list[str]:
    return [entry["kind"] for entry in rt.store.history(instance_id)]


def stream_length(rt: Runtime) -> int:
    return sum(rt.client.xlen(rt.keys.stream(0, priority)) for priority in PRIORITIES)


def pending_messages(rt: Runtime) -> int:
    total = 0
    for priority in PRIORITIES:
        summary = rt.client.xpending(rt.keys.stream(0, priority), "workers")
        total += int(summary["pending"])
    return total


# --- flows complete ---------------------------------------------------------------------------


def test_chain(rt: Runtime) -> None:
    flow = (
        Flow("chain")
        .task("A", "add", parameters={"a.$": "$.x", "b": 1}, result_path="$.x")
        .task("B", "add", parameters={"a.$": "$.x", "b": 10}, result_path="$.x")
        .task("C", "echo")
        .build()
    )
    rt.store.register(flow)
    with worker(rt):
        instance = rt.conductor.start("chain", {"x": 1}).instance_id
        assert succeeded(rt, instance) == {"x": 12}
    assert kinds(rt, instance).count("TaskSucceeded") == 3


def test_async_activity(rt: Runtime) -> None:
    rt.store.register(Flow("asynchronous").task("A", "async_echo").build())
    with worker(rt):
        instance = rt.conductor.start("asynchronous", [1, 2]).instance_id
        assert succeeded(rt, instance) == {"async": True, "value": [1, 2]}


def test_retry_then_succeed(rt: Runtime) -> None:
    retry = Retry(errors=["Flaky"], interval_seconds=1, max_attempts=3, backoff_rate=1.0)
    flow = Flow("retrying").task("A", "fail_n_times", retry=[retry]).build()
    rt.store.register(flow)
    with worker(rt):
        began = time.monotonic()
        instance = rt.conductor.start("retrying", {"n": 1}).instance_id
        assert succeeded(rt, instance) == {"attempts": 2}
        assert time.monotonic() - began >= 0.9  # the retry waited its interval
    history = kinds(rt, instance)
    assert history.count("TaskFailed") == 1 and history.count("RetryStarted") == 1


def test_catch(rt: Runtime) -> None:
    flow = (
        Flow("catching")
        .task(
            "A",
            "fail_always",
            catch=[Catch(errors=["Boom"], next="Handled", result_path="$.error")],
            next="Unreached",
        )
        .pass_("Unreached", result="no", end=True)
        .pass_("Handled", parameters={"caught.$": "$.error.Error"})
        .build()
    )
    rt.store.register(flow)
    with worker(rt):
        instance = rt.conductor.start("catching", {"message": "bad"}).instance_id
        assert succeeded(rt, instance) == {"caught": "Boom"}


def test_parallel(rt: Runtime) -> None:
    flow = (
        Flow("fanout")
        .parallel("Both", [Steps().task("E", "echo"), Steps().task("A", "add")])
        .build()
    )
    rt.store.register(flow)
    with worker(rt):
        instance = rt.conductor.start("fanout", {"a": 1, "b": 2}).instance_id
        assert succeeded(rt, instance) == [{"a": 1, "b": 2}, 3]


def test_map_with_max_concurrency(rt: Runtime) -> None:
    iterator = Steps().task("Sleep", "sleep_ms", parameters={"ms": 150, "tag.$": "$"})
    flow = Flow("mapping").map("Each", iterator, items_path="$.items", max_concurrency=2).build()
    rt.store.register(flow)
    with worker(rt, concurrency=4):
        instance = rt.conductor.start("mapping", {"items": [1, 2, 3, 4, 5]}).instance_id
        assert succeeded(rt, instance) == [1, 2, 3, 4, 5]
    found = spans(rt.client, rt.keys.prefix)
    assert len(found) == 5
    assert max_overlap(found) <= 2


def test_wait(rt: Runtime) -> None:
    rt.store.register(Flow("waiting").wait("W", seconds=1).task("E", "echo").build())
    with worker(rt):
        began = time.monotonic()
        instance = rt.conductor.start("waiting", {"v": 1}).instance_id
        assert succeeded(rt, instance) == {"v": 1}
        assert time.monotonic() - began >= 0.95


def test_wait_for_event_answered_by_a_signal(rt: Runtime) -> None:
    flow = (
        Flow("approval")
        .wait_for_event("Approve", "approval", timeout_seconds=60, result_path="$.answer")
        .task("E", "echo")
        .build()
    )
    rt.store.register(flow)
    with worker(rt):
        instance = rt.conductor.start("approval", {"order": 7}).instance_id
        time.sleep(0.2)
        assert rt.store.info(instance).status == "running"
        rt.conductor.signal(instance, "approval", {"ok": True})
        assert succeeded(rt, instance) == {"order": 7, "answer": {"ok": True}}
    assert "EventReceived" in kinds(rt, instance)


def test_sub_flow(rt: Runtime) -> None:
    child = Flow("child").task("Add", "add").build()
    parent = Flow("parent").sub_flow("Call", "child", result_path="$.sum").task("E", "echo").build()
    rt.store.register(child)
    rt.store.register(parent)
    with worker(rt):
        instance = rt.conductor.start("parent", {"a": 2, "b": 3}).instance_id
        assert succeeded(rt, instance) == {"a": 2, "b": 3, "sum": 5}
    children = [i for i in rt.store.list_instances(flow="child")]
    assert len(children) == 1 and children[0].status == "succeeded"
    assert children[0].instance_id.startswith(f"{instance}/")
    check_instance(rt.store, children[0].instance_id)


def test_choice_loop(rt: Runtime) -> None:
    flow = (
        Flow("loop")
        .pass_("Init", result=0, result_path="$.i")
        .task("Inc", "add", parameters={"a.$": "$.i", "b": 1}, result_path="$.i", next="More")
        .choice("More", [when(var("$.i").lt(3), "Inc")], default="Done")
        .succeed("Done")
        .build()
    )
    rt.store.register(flow)
    with worker(rt):
        instance = rt.conductor.start("loop", {}).instance_id
        assert succeeded(rt, instance) == {"i": 3}
    assert kinds(rt, instance).count("TaskSucceeded") == 3


def test_result_path_none_discards_the_result(rt: Runtime) -> None:
    flow = Flow("discarding").task("A", "add", result_path=None).build()
    rt.store.register(flow)
    with worker(rt):
        instance = rt.conductor.start("discarding", {"a": 1, "b": 2}).instance_id
        assert succeeded(rt, instance) == {"a": 1, "b": 2}


# --- operator controls -----------------------------------------------------------------------


def two_counts(name: str, first_ms: int = 400) -> Any:
    return (
        Flow(name)
        .task("A", "count", parameters={"ms": first_ms})
        .task("B", "count", parameters={"ms": 0})
        .build()
    )


def test_hold_stops_dispatch_until_released(rt: Runtime) -> None:
    rt.store.register(two_counts("held"))
    with worker(rt):
        instance = rt.conductor.start("held", {}).instance_id
        wait_until(lambda: executions(rt.client, rt.keys.prefix), 5, what="A to start")
        rt.conductor.hold(instance, "checking")
        assert rt.store.info(instance).held
        # A finishes while held: its result is applied, but B is not dispatched
        wait_until(lambda: "TaskSucceeded" in kinds(rt, instance), 5, what="A to finish")
        time.sleep(0.4)
        assert stream_length(rt) == 1, "a message was dispatched while held"
        assert len(executions(rt.client, rt.keys.prefix)) == 1
        info = rt.store.info(instance)
        assert info.status == "running" and info.held
        rt.conductor.release(instance)
        assert succeeded(rt, instance) == {"ms": 0}
    assert len(executions(rt.client, rt.keys.prefix)) == 2
    assert stream_length(rt) == 2
    history = kinds(rt, instance)
    assert history.index("Held") < history.index("TaskSucceeded") < history.index("Released")


def test_cancel(rt: Runtime) -> None:
    rt.store.register(two_counts("cancelling"))
    with worker(rt):
        instance = rt.conductor.start("cancelling", {}).instance_id
        wait_until(lambda: executions(rt.client, rt.keys.prefix), 5, what="A to start")
        rt.conductor.cancel(instance, "not needed")
        assert rt.store.info(instance).status == "cancelled"
        # the running call reports back: its result is refused and its message dropped
        wait_until(lambda: pending_messages(rt) == 0, 5, what="A's message to be acked")
        time.sleep(0.2)
    snapshot = finish(rt, instance)
    assert snapshot.status == "cancelled"
    assert snapshot.state.cause == "not needed"
    assert len(executions(rt.client, rt.keys.prefix)) == 1  # B never ran
    history = kinds(rt, instance)
    assert history[-1] == "FlowCancelled" and "TaskSucceeded" not in history


def test_retry_a_failed_instance(rt: Runtime) -> None:
    flow = (
        Flow("gated")
        .task("First", "count", result_path="$.first")
        .task("Gate", "gate", result_path="$.gate")
        .task("After", "count", result_path="$.after")
        .build()
    )
    rt.store.register(flow)
    with worker(rt):
        instance = rt.conductor.start("gated", {"n": 1}).instance_id
        snapshot = finish(rt, instance)
        assert (snapshot.status, snapshot.state.error) == ("failed", "GateClosed")
        rt.client.set(activities.gate_key(rt.keys.prefix), "1")
        rt.conductor.retry_failed(instance)
        output = succeeded(rt, instance)
    assert output["gate"] == {"passed": {"n": 1, "first": {"n": 1}}}
    ran = executions(rt.client, rt.keys.prefix)
    assert [key.split(":")[1] for key in ran] == ["First", "After"]  # First is not run again
    assert "FlowRetried" in kinds(rt, instance)


def test_versions_live_side_by_side(rt: Runtime) -> None:
    def version(label: str) -> Any:
        return (
            Flow("versioned", version=label)
            .task("Slow", "sleep_ms", parameters={"ms": 300}, result_path="$.slept")
            .pass_("Tag", result=f"v{label}", result_path="$.version")
            .build()
        )

    rt.store.register(version("1"))
    with worker(rt):
        first = rt.conductor.start("versioned", {}).instance_id
        rt.store.register(version("2"))  # while the first instance runs
        second = rt.conductor.start("versioned", {}).instance_id
        assert succeeded(rt, first) == {"slept": 300, "version": "v1"}
        assert succeeded(rt, second) == {"slept": 300, "version": "v2"}
    assert rt.store.info(first).version == "1"
    assert rt.store.info(second).version == "2"


def test_priority_high_runs_before_low(rt: Runtime) -> None:
    rt.store.register(Flow("prio").task("C", "count").build())
    low = [
        rt.conductor.start("prio", {}, placement=Placement(priority="low")).instance_id
        for _ in range(3)
    ]
    high = [
        rt.conductor.start("prio", {}, placement=Placement(priority="high")).instance_id
        for _ in range(3)
    ]
    with worker(rt, concurrency=1):
        for instance in low + high:
            wait_finished(rt.store, instance)
    order = [key.split(":")[0] for key in executions(rt.client, rt.keys.prefix)]
    assert set(order[:3]) == set(high), f"high {high}, low {low}, ran {order}"
    assert order[3:] == low  # FIFO within a priority


def test_flow_concurrency_limit_shared_by_two_workers(rt: Runtime) -> None:
    rt.store.register(Flow("limited").task("S", "sleep_ms", parameters={"ms": 150}).build())
    Limits(rt.client, rt.keys).set_flow_concurrency("limited", 1)
    instances = [rt.conductor.start("limited", {}).instance_id for _ in range(4)]
    with worker(rt, name="w1"), worker(rt, name="w2"):
        for instance in instances:
            succeeded(rt, instance)
    found = spans(rt.client, rt.keys.prefix)
    assert len(found) == 4
    assert max_overlap(found) == 1, found


def test_rate_limit_per_activity_spaces_calls(rt: Runtime) -> None:
    """5/s: beyond the first burst, calls start a fifth of a second apart."""
    rt.store.register(Flow("rated").task("S", "sleep_ms", parameters={"ms": 1}).build())
    Limits(rt.client, rt.keys).set_rate("sleep_ms", "5/s")
    instances = [rt.conductor.start("rated", {}).instance_id for _ in range(10)]
    with worker(rt, concurrency=4):
        for instance in instances:
            succeeded(rt, instance)
    starts = sorted(span["start"] for span in spans(rt.client, rt.keys.prefix))
    assert len(starts) == 10
    assert starts[-1] - starts[0] >= 0.9  # 10 calls at 5/s: at least 5 waited their turn


def test_rate_limit_never_exceeds_the_rate_in_a_second(rt: Runtime) -> None:
    rt.store.register(Flow("rated").task("S", "sleep_ms", parameters={"ms": 1}).build())
    Limits(rt.client, rt.keys).set_rate("sleep_ms", "5/s")
    instances = [rt.conductor.start("rated", {}).instance_id for _ in range(10)]
    with worker(rt, concurrency=4):
        for instance in instances:
            succeeded(rt, instance)
    starts = sorted(span["start"] for span in spans(rt.client, rt.keys.prefix))
    assert starts[-1] - starts[0] >= 1.6  # 10 calls at 5/s take about 1.8 s


def test_idempotency_key_is_visible_to_the_activity(rt: Runtime) -> None:
    rt.store.register(Flow("keyed").task("Who", "whoami").build())
    with worker(rt):
        instance = rt.conductor.start("keyed", {}).instance_id
        output = succeeded(rt, instance)
    assert output["instance_id"] == instance
    assert output["attempt"] == 1 and output["activity"] == "whoami"
    # instance, position, attempt: a state entered once needs nothing else
    assert output["idempotency_key"] == f"{instance}:Who:1"
    scheduled = rt.store.load(instance, fresh=True).state.history
    assert any(entry.kind == "TaskScheduled" and entry.position == "Who" for entry in scheduled)


def test_exactly_once_with_two_workers(rt: Runtime) -> None:
    flow = (
        Flow("counted")
        .task("A", "count", parameters={"ms": 5})
        .task("B", "count", parameters={"ms": 5})
        .task("C", "count", parameters={"ms": 5})
        .build()
    )
    rt.store.register(flow)
    instances = [rt.conductor.start("counted", {}).instance_id for _ in range(12)]
    with worker(rt, name="w1"), worker(rt, name="w2"):
        for instance in instances:
            succeeded(rt, instance)
    ran = executions(rt.client, rt.keys.prefix)
    assert len(ran) == 36 and len(set(ran)) == 36  # every call ran once
    for instance in instances:
        history = rt.store.history(instance)
        succeeded_at = [entry["position"] for entry in history if entry["kind"] == "TaskSucceeded"]
        assert succeeded_at == ["A", "B", "C"]
