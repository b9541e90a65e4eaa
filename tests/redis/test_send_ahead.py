"""Commits sent ahead (adapters/redis/lanes.py): a worker thread sends a batch's commits and
works on its next batch while Redis runs them, reading their replies afterwards.

Each test drives a real worker's rounds against a real server and checks what is stored:
the same results as waiting for every reply, every step applied exactly once, nothing left
claimed; also when the replies are lost with the connection (the commits landed, or were
dropped unexecuted) and when the server lost its scripts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from rustyflower.adapters.redis.keys import CONSUMER_GROUP, PRIORITIES
from rustyflower.adapters.redis.worker import Worker, WorkerOptions
from rustyflower.core.activities import ActivityRegistry
from rustyflower.core.builder import Flow, Steps
from tests.redis.conftest import Runtime

pytestmark = pytest.mark.emulator

CONSUMER = "ahead-0"


def chain(steps: int) -> Any:
    flow = Flow("chain", version="1")
    for index in range(steps):
        flow.task(f"S{index}", "inc")
    return flow.build()


@pytest.fixture
def seen() -> list[bool]:
    """For each activity run: whether the thread had commits in flight meanwhile."""
    return []


def make_worker(
    runtime: Runtime, seen: list[bool], *, send_ahead: bool = True, batch_size: int = 16
) -> Worker:
    registry = ActivityRegistry()
    worker_box: list[Worker] = []

    @registry.activity
    def inc(payload: int) -> int:
        seen.append(bool(worker_box[0].lanes.sent))
        return payload + 1

    options = WorkerOptions(
        concurrency=1, block_ms=1, name="ahead", batch_size=batch_size, send_ahead=send_ahead
    )
    worker = Worker(runtime.fresh_store(), registry, options)
    worker_box.append(worker)
    return worker


def run_until_idle(worker: Worker, rounds: int = 500) -> None:
    """The thread's rounds until nothing is left in hand or in flight and the streams are
    empty, then what it does when it stops."""
    for _ in range(rounds):
        worker._consume_round(CONSUMER, 0)
        if not worker.lanes.busy(CONSUMER) and not _pending(worker):
            break
    worker._finish_read_ahead(CONSUMER, 0)


def _pending(worker: Worker) -> int:
    """Messages not yet acknowledged: claimed by a consumer, or not delivered yet."""
    total = 0
    for priority in PRIORITIES:
        stream = worker.keys.stream(0, priority)
        total += int(worker.client.xpending(stream, CONSUMER_GROUP)["pending"])
        (group,) = worker.client.xinfo_groups(stream)
        last = group["last-delivered-id"]
        last = last.decode() if isinstance(last, bytes) else last
        total += len(worker.client.xrange(stream, min=f"({last}", max="+"))
    return total


def assert_all_done(runtime: Runtime, ids: list[str], steps: int) -> None:
    for instance_id in ids:
        final = runtime.store.load(instance_id, fresh=True)
        assert (final.status, final.state.output) == ("succeeded", steps), instance_id
        kinds = [entry["kind"] for entry in runtime.store.history(instance_id)]
        assert kinds.count("TaskSucceeded") == steps, (instance_id, kinds)
    for priority in PRIORITIES:
        summary = runtime.client.xpending(runtime.keys.stream(0, priority), CONSUMER_GROUP)
        assert summary["pending"] == 0


@pytest.fixture
def chains(runtime: Runtime) -> Iterator[list[str]]:
    runtime.store.register(chain(5))
    ids = [runtime.conductor.start("chain", 0).instance_id for _ in range(40)]
    yield ids


def test_activities_run_while_the_last_batchs_commits_are_in_flight(
    runtime: Runtime, chains: list[str], seen: list[bool]
) -> None:
    worker = make_worker(runtime, seen)
    run_until_idle(worker)
    assert_all_done(runtime, chains, 5)
    assert len(seen) == 200
    # after the first batch every batch ran while the previous one's commits were unanswered
    assert sum(seen) >= 150, sum(seen)


def test_waiting_for_every_reply_stores_the_same_results(
    runtime: Runtime, chains: list[str], seen: list[bool]
) -> None:
    worker = make_worker(runtime, seen, send_ahead=False)
    run_until_idle(worker)
    assert_all_done(runtime, chains, 5)
    assert not any(seen)


def test_slow_activities_are_not_sent_ahead(
    runtime: Runtime, chains: list[str], seen: list[bool]
) -> None:
    """One message at a time (slow activities): a message must not wait in hand behind a
    long activity, where its visibility timeout runs out."""
    worker = make_worker(runtime, seen, batch_size=1)
    run_until_idle(worker, rounds=1000)
    assert_all_done(runtime, chains, 5)
    assert not any(seen)


def test_a_batch_touching_an_instance_in_flight_waits_for_its_commit(
    runtime: Runtime, seen: list[bool]
) -> None:
    """A Map's items finish in consecutive batches: the second is planned on the first's
    confirmed commit, so no commit loses its compare-and-set (and none is redone)."""
    flow = Flow("wide", version="1").map("Each", Steps().task("T", "inc")).build()
    runtime.store.register(flow)
    runtime.conductor.start("wide", list(range(12)), instance_id="w")
    worker = make_worker(runtime, seen, batch_size=4)
    results: list[str] = []
    settle = worker.store.settle

    def recorded(prepared: Any, reply: Any) -> Any:
        result = settle(prepared, reply)
        results.append(result)
        return result

    worker.store.settle = recorded  # type: ignore[method-assign]
    run_until_idle(worker)
    final = runtime.store.load("w", fresh=True)
    assert (final.status, final.state.output) == ("succeeded", list(range(1, 13)))
    assert results and set(results) == {"ok"}, results
    assert any(seen)  # items ran while the last batch's commit was in flight


@pytest.mark.parametrize("landed", [True, False], ids=["commits-landed", "commits-dropped"])
def test_commits_whose_replies_are_lost_are_applied_exactly_once(
    runtime: Runtime, chains: list[str], seen: list[bool], landed: bool
) -> None:
    """The connection holding a batch's unread replies breaks. Either the server ran the
    commits first (their events are then judged stale and their messages acknowledged)
    or it dropped them unexecuted (paused, then the connection killed): the thread applies
    the results again from the stored values, each exactly once. The messages the riding
    read had claimed (landed) are taken back at once, not after the visibility timeout."""
    worker = make_worker(runtime, seen)
    admin = redis.Redis.from_url(runtime.server.url)
    admin.client_setname("admin")
    try:
        worker._consume_round(CONSUMER, 0)  # a first batch: read, run, commits sent
        worker._consume_round(CONSUMER, 0)  # its reply; a second batch sent
        worker.lanes.finish(CONSUMER)  # its reply: nothing of the thread's is in flight
        assert worker.lanes.read_ahead[CONSUMER]
        if not landed:
            admin.client_pause(5000, all=False)  # writes (the commit script) wait
        worker._consume_round(CONSUMER, 0)  # a third batch, sent with the next read
        assert worker.lanes.sent.get(CONSUMER) is not None
        if landed:
            time.sleep(0.2)  # the server has run the commits and the read riding with them
            # the replies sit in this side's socket: the connection breaks here, unread
            for connection in list(worker.client.connection_pool._in_use_connections):
                connection.disconnect()
        else:
            admin.client_kill_filter(_type="normal", skipme=True)
            admin.client_unpause()
        run_until_idle(worker)
    finally:
        admin.client_unpause()
        admin.close()
    assert_all_done(runtime, chains, 5)


def test_after_a_failed_round_the_thread_takes_back_what_a_lost_read_claimed(
    runtime: Runtime, chains: list[str], seen: list[bool]
) -> None:
    """A round that failed on Redis may have lost the reply of a read that ran: its
    messages are this consumer's, pending, in nobody's hands. The next round takes them
    back instead of leaving them to the reclaim after the visibility timeout."""
    worker = make_worker(runtime, seen, send_ahead=False)
    streams = {stream: ">" for stream in runtime.keys.streams(0)}
    claimed = runtime.client.xreadgroup(CONSUMER_GROUP, CONSUMER, streams, count=40)
    assert sum(len(entries) for _, entries in claimed) == 40  # the lost reply
    worker.lanes.round_failed(CONSUMER, 0)
    run_until_idle(worker)
    assert_all_done(runtime, chains, 5)


def test_messages_waiting_in_hand_are_not_reclaimed_as_a_dead_workers(
    runtime: Runtime, chains: list[str], seen: list[bool]
) -> None:
    """Messages a thread read ahead count as in flight: past the visibility timeout the
    reclaimer leaves them (and the heartbeat keeps them claimed), as it does the batch
    being run. Before, a slow batch let the next one's messages be reclaimed and run twice.
    What a read riding unanswered commits claimed (the thread does not know it yet) is
    kept claimed by the heartbeat once the commits are older than its interval."""
    worker = make_worker(runtime, seen)
    worker.options.visibility_timeout = 0.2
    worker.options.heartbeat_interval = 0.05
    worker._consume_round(CONSUMER, 0)
    worker._consume_round(CONSUMER, 0)  # the first batch's reply: messages in hand
    held = worker.lanes.read_ahead[CONSUMER]
    assert held and CONSUMER in worker.lanes.sent  # the second batch's reply is unread
    time.sleep(0.3)  # every claimed message is idle past the visibility timeout
    worker.maintenance._heartbeat()
    worker.maintenance._reclaim()
    assert worker.reclaimed.qsize() == 0
    assert {message_id for _, message_id, _ in held} <= set(worker.in_flight)
    run_until_idle(worker)
    assert_all_done(runtime, chains, 5)
    assert not worker.in_flight  # each released once run


def test_work_taken_over_from_a_dead_worker_does_not_wait_for_a_lull(
    runtime: Runtime, chains: list[str], seen: list[bool]
) -> None:
    """Under steady load a thread always has messages in hand; a reclaimed message still
    runs in its next round, not when the load stops."""
    from rustyflower.adapters.redis.maintenance import Reclaimed  # noqa: PLC0415
    from rustyflower.adapters.redis.store import WorkAck  # noqa: PLC0415

    streams = {stream: ">" for stream in runtime.keys.streams(0)}
    ((stream, ((message_id, fields),)),) = runtime.client.xreadgroup(
        CONSUMER_GROUP, "dead-0", streams, count=1
    )
    worker = make_worker(runtime, seen)
    worker._consume_round(CONSUMER, 0)
    worker._consume_round(CONSUMER, 0)
    assert worker.lanes.busy(CONSUMER)
    priority = runtime.keys.streams(0).index(stream.decode())
    worker.reclaimed.put(Reclaimed(WorkAck(priority, message_id.decode(), 0), fields))
    worker._round(CONSUMER, [0], 0)
    assert worker.reclaimed.qsize() == 0
    assert len(seen) == 16 * 2 + 1 + 16  # two batches, the reclaimed message, a third batch
    run_until_idle(worker)
    assert_all_done(runtime, chains, 5)


def test_a_script_the_server_lost_is_loaded_again_for_commits_sent_ahead(
    runtime: Runtime, chains: list[str], seen: list[bool]
) -> None:
    worker = make_worker(runtime, seen)
    worker._consume_round(CONSUMER, 0)
    worker._consume_round(CONSUMER, 0)
    runtime.client.script_flush()  # the next commits are refused (NOSCRIPT), then sent again
    run_until_idle(worker)
    assert_all_done(runtime, chains, 5)


def test_a_cluster_client_waits_for_every_reply(runtime: Runtime) -> None:
    from redis.cluster import RedisCluster  # noqa: PLC0415

    from rustyflower.adapters.redis.store import RedisStore  # noqa: PLC0415

    cluster_like = RedisStore.__new__(RedisStore)
    cluster_like.client = RedisCluster.__new__(RedisCluster)
    assert not cluster_like.can_send_ahead
    assert runtime.store.can_send_ahead
