"""Round trips of the worker's hot path, counted on a real server (issue 13: per-process speed).

A batch of commits is one round trip, however many commits it holds; a script the server
lost (restart, SCRIPT FLUSH) is loaded again and every commit applied exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from redis.connection import Connection

from rustyflower.adapters.redis.conductor import Applied, Conductor, PendingEvent
from rustyflower.adapters.redis.messages import WorkMessage
from rustyflower.adapters.redis.store import Placement
from rustyflower.core.builder import Flow
from rustyflower.core.engine import ActivityCompleted, RunActivity, advance, start
from tests.redis.conftest import Runtime

pytestmark = pytest.mark.emulator


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """Every packed send to Redis from this process: one per command or per pipeline."""
    sent: list[bytes] = []
    original = Connection.send_packed_command

    def counted(connection: Connection, command: Any, check_health: bool = True) -> None:
        data = command if isinstance(command, bytes | bytearray) else b"".join(command)
        sent.append(bytes(data[:60]))
        original(connection, command, check_health)

    monkeypatch.setattr(Connection, "send_packed_command", counted)
    yield sent


def _prepared_steps(runtime: Runtime, count: int) -> list[Any]:
    runtime.store.register(Flow("one", version="1").task("A", "a").build())
    definition = runtime.store.definition("one", "1")
    now = datetime.now(UTC)
    prepared = []
    for index in range(count):
        created = start(definition, index, f"rt-{index}", now)
        assert runtime.store.commit(None, created, Placement()) == "ok"
        command = created.commands[0]
        assert isinstance(command, RunActivity)
        step = advance(created.snapshot, ActivityCompleted(command.call_id, index + 1), now)
        prepared.append(runtime.store.prepare(created.snapshot, step, Placement()))
    return prepared


def test_a_batch_of_commits_is_one_round_trip(runtime: Runtime, sends: list[bytes]) -> None:
    prepared = _prepared_steps(runtime, 16)  # the script is loaded by now
    sends.clear()
    assert runtime.store.commit_many(prepared) == ["ok"] * 16
    # before: redis-py's pipelined Script sent SCRIPT EXISTS first, a second round trip
    assert len(sends) == 1, sends
    assert b"SCRIPT" not in sends[0]


def test_a_script_the_server_lost_is_loaded_again_and_each_commit_applied_once(
    runtime: Runtime, sends: list[bytes]
) -> None:
    prepared = _prepared_steps(runtime, 4)
    runtime.client.script_flush()
    sends.clear()
    assert runtime.store.commit_many(prepared) == ["ok"] * 4
    assert len(sends) == 3  # refused, SCRIPT LOAD, sent again
    for index in range(4):
        assert runtime.store.load(f"rt-{index}", fresh=True).status == "succeeded"
        kinds = [entry["kind"] for entry in runtime.store.history(f"rt-{index}")]
        assert kinds.count("TaskSucceeded") == 1
    # applied once: the same commits again lose the compare-and-set
    assert runtime.store.commit_many(prepared) == ["conflict"] * 4


def test_an_error_reply_in_a_batch_is_raised(runtime: Runtime) -> None:
    prepared = _prepared_steps(runtime, 2)
    runtime.client.set(prepared[1].keys[0], "not a hash")  # HMGET on a string: WRONGTYPE
    with pytest.raises(Exception, match="WRONGTYPE"):
        runtime.store.commit_many(prepared)
    assert runtime.store.load("rt-0", fresh=True).status == "succeeded"


def test_snapshots_another_process_advanced_are_fetched_with_the_batch(
    runtime: Runtime, sends: list[bytes]
) -> None:
    """Two worker processes take turns on instances' steps (each reads whichever message
    comes). A message carries the seq it was dispatched at, so a process whose cached
    snapshots are older fetches them in the batch's one preload and commits the batch in
    one pipeline: 2 round trips for 4 instances. Before, each stale instance failed on
    the cached copy and was applied on its own (read, commit): 8 round trips."""
    flow = Flow("three", version="1").task("A", "a").task("B", "b").task("C", "c").build()
    runtime.store.register(flow)
    first, second = runtime.store, runtime.fresh_store()
    one, two = Conductor(first), Conductor(second)

    def completion(snapshot: Any, output: int) -> PendingEvent:
        command = next(iter(snapshot.state.pending.values())).command
        event = ActivityCompleted(command.call_id, output)
        return PendingEvent(snapshot.instance_id, event, seen_seq=snapshot.seq)

    ids = [f"turns-{index}" for index in range(4)]
    created = [one.start("three", 0, instance_id=instance_id) for instance_id in ids]
    after_a = one.apply_many([completion(snapshot, 1) for snapshot in created])  # one caches
    after_b = two.apply_many(  # two advances them all: one's copies are stale now
        [completion(done.transition.snapshot, 2) for done in after_a]  # type: ignore[union-attr]
    )
    batch = [completion(done.transition.snapshot, 3) for done in after_b]  # type: ignore[union-attr]
    sends.clear()
    assert all(isinstance(done, Applied) for done in one.apply_many(batch))
    assert len(sends) == 2, sends  # the preload of the 4 stale snapshots, the 4 commits
    for instance_id in ids:
        final = first.load(instance_id, fresh=True)
        assert (final.status, final.state.output) == ("succeeded", 3)


def test_work_messages_carry_the_seq_they_were_dispatched_at(runtime: Runtime) -> None:
    runtime.store.register(Flow("one", version="1").task("A", "a").build())
    created = Conductor(runtime.store).start("one", 0)
    (entry,) = runtime.client.xrange(runtime.keys.stream(0, "normal"))
    assert WorkMessage.decode(entry[1][b"m"]).seq == created.seq
    with pytest.raises(ValueError, match="seq"):
        WorkMessage.decode('{"k":"cancel_child","i":"x","e":0,"s":"1"}')


def test_a_step_of_one_instance_costs_one_round_trip_with_the_read_riding_the_commit(
    runtime: Runtime, sends: list[bytes]
) -> None:
    """L's path: one instance, one step at a time. The worker's next read rides in the
    round trip of the step's commit (and claims the message that commit dispatched), so
    a step is one round trip; before, a read, then a commit: two."""
    from rustyflower.adapters.redis.worker import Worker, WorkerOptions  # noqa: PLC0415
    from tests.redis.activities import registry  # noqa: PLC0415

    flow = Flow("five", version="1")
    for index in range(5):
        flow.task(f"S{index}", "echo")
    runtime.store.register(flow.build())
    worker_store = runtime.fresh_store()
    worker = Worker(worker_store, registry, WorkerOptions(concurrency=1, block_ms=1, name="rt"))
    started = runtime.conductor.start("five", {"n": 1})
    worker._consume_round("rt-0", 0)  # reads the first message; its commit reads the next
    per_round = []
    for _ in range(4):
        sends.clear()
        worker._consume_round("rt-0", 0)
        per_round.append(len(sends))
    assert per_round == [1, 1, 1, 1], per_round
    worker.lanes.finish("rt-0")  # the last commit's reply (sent ahead: read later)
    final = runtime.store.load(started.instance_id, fresh=True)
    assert (final.status, final.state.output) == ("succeeded", {"n": 1})
    assert worker.lanes.read_ahead["rt-0"] == []  # the last commit's read found nothing


def test_messages_read_ahead_when_the_worker_stops_are_run_not_left_claimed(
    runtime: Runtime,
) -> None:
    """The stopping thread reads the reply of its commits in flight, then runs what that
    reply's read claimed, instead of leaving it to a reclaim."""
    from rustyflower.adapters.redis.keys import CONSUMER_GROUP, PRIORITIES  # noqa: PLC0415
    from rustyflower.adapters.redis.worker import Worker, WorkerOptions  # noqa: PLC0415
    from tests.redis.activities import registry  # noqa: PLC0415

    runtime.store.register(Flow("two", version="1").task("A", "echo").task("B", "echo").build())
    worker = Worker(
        runtime.fresh_store(), registry, WorkerOptions(concurrency=1, block_ms=1, name="st")
    )
    started = runtime.conductor.start("two", 7)
    worker._consume_round("st-0", 0)  # runs A; its commit (which claims B) is in flight
    assert "st-0" in worker.lanes.sent
    worker._finish_read_ahead("st-0", 0)  # what the thread does when it stops
    final = runtime.store.load(started.instance_id, fresh=True)
    assert (final.status, final.state.output) == ("succeeded", 7)
    for priority in PRIORITIES:
        summary = runtime.client.xpending(runtime.keys.stream(0, priority), CONSUMER_GROUP)
        assert summary["pending"] == 0
