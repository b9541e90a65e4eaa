"""Redis stays bounded: acknowledged stream entries are trimmed, finished instances expire.

Issue 10, item 5: acknowledged stream entries were never trimmed (20,002 entries after
5,000 flows) and finished instances and their histories never expired. Workers now trim
what every consumer group has acknowledged and delete instances that finished more than
``retention_seconds`` ago; ``rustyflower purge --older-than`` does the latter on demand.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from rustyflower.adapters.cli.main import app
from rustyflower.adapters.redis.conductor import Conductor
from rustyflower.adapters.redis.keys import CONSUMER_GROUP, PRIORITIES
from rustyflower.core.builder import Flow
from rustyflower.core.engine import ActivityCompleted, ActivityFailed
from tests.redis import activities
from tests.redis.activities import running_worker, wait_until
from tests.redis.conftest import Runtime

pytestmark = pytest.mark.emulator

BASE = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def rt(runtime: Runtime) -> Iterator[Runtime]:
    activities.configure(runtime.server.url, runtime.keys.prefix)
    yield runtime


def stream_entries(rt: Runtime) -> int:
    return sum(int(rt.client.xlen(rt.keys.stream(0, p))) for p in PRIORITIES)


def instance_keys(rt: Runtime, instance_id: str) -> list[str]:
    return [rt.keys.instance(instance_id), rt.keys.history(instance_id), rt.keys.steps(instance_id)]


def indexed(rt: Runtime, instance_id: str) -> list[str]:
    """The index keys that still mention ``instance_id``."""
    found = []
    for status in ("running", "succeeded", "failed", "cancelled"):
        if rt.client.sismember(rt.keys.status_index(0, status), instance_id):
            found.append(f"status:{status}")
    for flow in ("one", "waits", "f"):
        if rt.client.sismember(rt.keys.flow_index(0, flow), instance_id):
            found.append(f"flow:{flow}")
    for key in (rt.keys.started_index(0), rt.keys.finished_index(0)):
        if rt.client.zscore(key, instance_id) is not None:
            found.append(key.rsplit(":", 1)[1])
    return found


# --- trimming ----------------------------------------------------------------------------------


def test_acknowledged_work_is_trimmed(rt: Runtime) -> None:
    """Regression: every flow left its stream entries behind for good."""
    rt.store.register(Flow("one").task("A", "echo").build())
    with running_worker(rt.server.url, rt.keys, trim_interval=0.2) as worker:
        started = rt.conductor.start_many("one", [{"n": n} for n in range(300)])
        for snapshot in started:
            wait_until(
                lambda i=snapshot.instance_id: rt.store.info(i).status == "succeeded",
                30,
                what="every flow to finish",
            )
        wait_until(lambda: stream_entries(rt) == 0, 5, what="the streams to be trimmed")
        assert worker.stats.trimmed >= 300


def test_trimming_keeps_whatever_a_consumer_group_still_needs(rt: Runtime) -> None:
    stream = rt.keys.stream(0, "normal")
    ids = [rt.client.xadd(stream, {"m": str(n)}).decode() for n in range(10)]
    rt.client.xgroup_create(stream, "audit", id="0")
    # workers: read 7, acknowledged 0-4, entries 5 and 6 still pending
    read = rt.client.xreadgroup(CONSUMER_GROUP, "c", {stream: ">"}, count=7)
    assert len(read[0][1]) == 7
    rt.client.xack(stream, CONSUMER_GROUP, *ids[:5])
    # audit: read and acknowledged 0-7
    rt.client.xreadgroup("audit", "c", {stream: ">"}, count=8)
    rt.client.xack(stream, "audit", *ids[:8])
    assert rt.store.trim_acknowledged([stream]) == 5
    assert [e[0].decode() for e in rt.client.xrange(stream)] == ids[5:]
    rt.client.xack(stream, CONSUMER_GROUP, *ids[5:7])  # pending gone; 7 read, 8-9 unread
    assert rt.store.trim_acknowledged([stream]) == 2
    assert [e[0].decode() for e in rt.client.xrange(stream)] == ids[7:]
    rt.client.xreadgroup(CONSUMER_GROUP, "c", {stream: ">"})
    rt.client.xack(stream, CONSUMER_GROUP, *ids[7:])
    assert rt.store.trim_acknowledged([stream]) == 1  # audit has not read entry 8 and 9
    assert [e[0].decode() for e in rt.client.xrange(stream)] == ids[8:]
    assert rt.store.trim_acknowledged([stream, rt.keys.stream(0, "low") + ":none"]) == 0


# --- retention of finished instances -----------------------------------------------------------


def test_finished_instances_are_deleted_after_the_retention_with_history_steps_and_ledger(
    rt: Runtime,
) -> None:
    rt.store.register(Flow("one").task("A", "echo").build())
    rt.store.register(Flow("waits").wait_for_event("W", "go").build())
    waiting = rt.conductor.start("waits", {}).instance_id
    options = {"retention_seconds": 1.0, "retention_interval": 0.2}
    with running_worker(rt.server.url, rt.keys, **options) as worker:
        done = [rt.conductor.start("one", {"n": n}).instance_id for n in range(5)]
        wait_until(
            lambda: all(rt.store.info(i).status == "succeeded" for i in done), 10, what="done"
        )
        assert rt.client.exists(*instance_keys(rt, done[0])) == 3
        rt.store.record_ledger(done[0], {"cloud": "aws", "epoch": "2"})  # failed over once
        wait_until(lambda: not any(rt.store.exists(i) for i in done), 5, what="the purge")
        assert worker.stats.purged == 5
    for instance_id in done:
        assert rt.client.exists(*instance_keys(rt, instance_id)) == 0
        assert indexed(rt, instance_id) == []
    assert not rt.client.exists(rt.keys.ledger(done[0]))
    assert rt.store.info(waiting).status == "running"
    assert indexed(rt, waiting) == ["status:running", "flow:waits", "started"]
    assert [info.instance_id for info in rt.store.list_instances()] == [waiting]


def ticking(start: datetime) -> Callable[[], datetime]:
    moments = (start + timedelta(minutes=n) for n in range(1_000_000))
    return lambda: next(moments)


def test_a_purge_leaves_running_recent_and_retried_instances_alone(rt: Runtime) -> None:
    rt.store.register(Flow("f").task("A", "echo").build())
    conductor = Conductor(rt.store, clock=ticking(BASE))  # every call: one minute later

    def finished(instance_id: str, ok: bool = True) -> None:
        (call,) = rt.store.load(instance_id, fresh=True).state.pending.values()
        if ok:
            conductor.apply(instance_id, ActivityCompleted(call.id, {}))
        else:
            conductor.apply(instance_id, ActivityFailed(call.id, "Boom", "boom"))

    old_ok = conductor.start("f", {}, instance_id="old-ok").instance_id
    finished(old_ok)
    old_failed = conductor.start("f", {}, instance_id="old-failed").instance_id
    finished(old_failed, ok=False)
    retried = conductor.start("f", {}, instance_id="retried").instance_id
    finished(retried, ok=False)
    conductor.retry_failed(retried)  # running again: no longer finished
    running = conductor.start("f", {}, instance_id="running").instance_id
    recent = conductor.start("f", {}, instance_id="recent").instance_id
    finished(recent)  # finished at BASE + 9 minutes, the others at + 1, + 3 and + 5
    cutoff = BASE + timedelta(minutes=8)
    assert rt.store.count_finished(cutoff) == 2
    assert rt.store.purge_finished(cutoff, limit=1) == 1  # a batch at a time
    assert rt.store.purge_finished(cutoff) == 1
    assert rt.store.purge_finished(cutoff) == 0
    assert not rt.store.exists(old_ok) and not rt.store.exists(old_failed)
    assert {i.instance_id for i in rt.store.list_instances()} == {retried, running, recent}
    assert rt.store.info(retried).status == "running"
    assert rt.store.purge_finished(BASE + timedelta(days=1)) == 1  # only `recent` was finished
    assert {i.instance_id for i in rt.store.list_instances()} == {retried, running}


def test_cli_purge_older_than(rt: Runtime) -> None:
    rt.store.register(Flow("one").task("A", "echo").build())
    with running_worker(rt.server.url, rt.keys):
        done = [rt.conductor.start("one", {}).instance_id for _ in range(3)]
        wait_until(
            lambda: all(rt.store.info(i).status == "succeeded" for i in done), 10, what="done"
        )
    env = {"RUSTYFLOWER_REDIS_URL": rt.server.url, "RUSTYFLOWER_PREFIX": rt.keys.prefix}

    def purge(*args: str) -> dict[str, object]:
        result = CliRunner().invoke(app, ["purge", *args, "--json"], env=env)
        assert result.exit_code == 0, result.output
        parsed: dict[str, object] = json.loads(result.stdout)
        return parsed

    assert purge("--older-than", "1h")["deleted"] == 0
    dry = purge("--older-than", "0s", "--dry-run")
    assert (dry["deleted"], dry["matched"]) == (0, 3)
    assert datetime.fromisoformat(str(dry["finished_before"])) <= datetime.now(UTC)
    assert all(rt.store.exists(i) for i in done)
    assert purge("--older-than", "0s")["deleted"] == 3
    assert not any(rt.store.exists(i) for i in done)
    plain = CliRunner().invoke(app, ["purge", "--older-than", "2d"], env=env)
    assert plain.exit_code == 0 and "deleted 0 instance(s) that finished before" in plain.stderr
    bad = CliRunner().invoke(app, ["purge", "--older-than", "soon"], env=env)
    assert bad.exit_code == 2 and "not a duration" in bad.stderr
