"""Bad input and faults against a real server: the runner refuses, reports or survives."""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from rustyflower.adapters.redis.conductor import Conductor
from rustyflower.adapters.redis.connection import RedisUnavailableError, connect
from rustyflower.adapters.redis.keycheck import SigningKeyMismatchError
from rustyflower.adapters.redis.keys import CONSUMER_GROUP, PRIORITIES, Keyspace
from rustyflower.adapters.redis.store import RedisStore, UnknownFlowError
from rustyflower.core.builder import Catch, Flow
from rustyflower.core.errors import EpochConflictError, SignatureInvalidError, SignatureMissingError
from rustyflower.core.snapshot import SnapshotKeys, generate_signing_key
from tests.redis import activities
from tests.redis.activities import (
    check_instance,
    executions,
    running_worker,
    wait_finished,
    wait_until,
)
from tests.redis.conftest import Runtime
from tests.redis.servers import free_port

pytestmark = pytest.mark.emulator


@pytest.fixture
def rt(runtime: Runtime) -> Iterator[Runtime]:
    activities.configure(runtime.server.url, runtime.keys.prefix)
    yield runtime


def worker(rt: Runtime, **options: Any) -> Any:
    return running_worker(rt.server.url, rt.keys, **options)


def final(rt: Runtime, instance_id: str) -> Any:
    wait_finished(rt.store, instance_id)
    check_instance(rt.store, instance_id)
    return rt.store.load(instance_id, fresh=True)


def pending(rt: Runtime) -> int:
    return sum(
        int(rt.client.xpending(rt.keys.stream(0, p), CONSUMER_GROUP)["pending"]) for p in PRIORITIES
    )


def dead_letters(rt: Runtime) -> list[dict[str, str]]:
    entries = rt.client.xrange(f"{rt.keys.tag(0)}:dead")
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]


# --- unknown flow, unknown activity, bad output ------------------------------------------------


def test_start_of_an_unknown_flow_lists_the_registered_ones(rt: Runtime) -> None:
    with pytest.raises(UnknownFlowError, match="none registered yet"):
        rt.conductor.start("nope", {})
    rt.store.register(Flow("orders").task("A", "echo").build())
    rt.store.register(Flow("billing").task("A", "echo").build())
    with pytest.raises(
        UnknownFlowError, match=r"unknown flow 'nope' \(registered: billing, orders\)"
    ):
        rt.conductor.start("nope", {})
    assert rt.store.list_instances() == []


def test_unknown_activity_fails_the_task_when_set_to_fail_and_a_catch_handles_it(
    rt: Runtime,
) -> None:
    """Failing at once is a deliberate setting (the default routes the work, see below)."""
    caught = (
        Flow("caught")
        .task(
            "Missing",
            "no_such_activity",
            catch=[Catch(errors=["UnknownActivity"], next="Handled", result_path="$.error")],
        )
        .pass_("Handled", parameters={"error.$": "$.error.Error", "cause.$": "$.error.Cause"})
        .build()
    )
    uncaught = Flow("uncaught").task("Missing", "ech0").build()
    rt.store.register(caught)
    rt.store.register(uncaught)
    with worker(rt, unknown_activity="fail"):
        first = rt.conductor.start("caught", {}).instance_id
        second = rt.conductor.start("uncaught", {}).instance_id
        handled = final(rt, first)
        failed = final(rt, second)
    assert handled.status == "succeeded"
    assert handled.state.output["error"] == "UnknownActivity"
    assert "no_such_activity" in handled.state.output["cause"]
    assert (failed.status, failed.state.error) == ("failed", "UnknownActivity")
    assert "did you mean 'echo'" in failed.state.cause
    assert pending(rt) == 0


@pytest.mark.parametrize("activity", ["returns_a_set", "returns_nan"])
def test_non_json_output_fails_with_a_clear_error(rt: Runtime, activity: str) -> None:
    rt.store.register(Flow("badout").task("Out", activity).build())
    with worker(rt):
        instance = rt.conductor.start("badout", {}).instance_id
        snapshot = final(rt, instance)
    assert snapshot.status == "failed"
    assert snapshot.state.error == "InvalidActivityOutput"
    assert "JSON" in snapshot.state.cause


def test_an_activity_error_mentioning_json_keeps_its_name(rt: Runtime) -> None:
    rt.store.register(Flow("upstream").task("Call", "raises_json_value_error").build())
    with worker(rt):
        instance = rt.conductor.start("upstream", {}).instance_id
        snapshot = final(rt, instance)
    assert (snapshot.status, snapshot.state.error) == ("failed", "UpstreamError")


# --- malformed messages ----------------------------------------------------------------------


def test_a_malformed_message_goes_to_the_dead_letter_stream(rt: Runtime) -> None:
    rt.store.register(Flow("after").task("A", "count").build())
    stream = rt.keys.stream(0, "normal")
    rt.client.xadd(stream, {"m": "this is not json"})
    rt.client.xadd(stream, {"other": "no m field"})
    rt.client.xadd(stream, {"m": json.dumps({"k": "activity"})})  # no instance
    with worker(rt, concurrency=1):
        instance = rt.conductor.start("after", {}).instance_id
        assert final(rt, instance).status == "succeeded"  # the worker kept going
        wait_until(lambda: len(dead_letters(rt)) == 3, 5, what="three dead letters")
        wait_until(lambda: pending(rt) == 0, 5, what="every message acknowledged")
    dead = dead_letters(rt)
    expected = ["this is not json", "(no 'm' field)", '{"k": "activity"}']
    assert [entry["m"] for entry in dead] == expected
    assert all(entry["reason"].startswith("malformed work message") for entry in dead)


def test_json_that_is_not_an_object_is_dead_lettered(rt: Runtime) -> None:
    rt.client.xadd(rt.keys.stream(0, "normal"), {"m": json.dumps([1, 2])})
    with worker(rt, concurrency=1) as running:
        wait_until(lambda: len(dead_letters(rt)) == 1, 1, what="a dead letter")
        assert all(thread.is_alive() for thread in running._threads)


def test_a_message_of_an_unknown_kind_is_dead_lettered(rt: Runtime) -> None:
    rt.client.xadd(
        rt.keys.stream(0, "normal"), {"m": json.dumps({"k": "explode", "i": "x", "e": 0})}
    )
    with worker(rt, concurrency=1):
        wait_until(lambda: len(dead_letters(rt)) == 1, 1, what="a dead letter")
        assert pending(rt) == 0


def test_an_activity_message_without_a_command_is_dead_lettered(rt: Runtime) -> None:
    rt.client.xadd(
        rt.keys.stream(0, "normal"), {"m": json.dumps({"k": "activity", "i": "x", "e": 0})}
    )
    with worker(rt, concurrency=1) as running:
        wait_until(lambda: len(dead_letters(rt)) == 1, 1, what="a dead letter")
        assert all(thread.is_alive() for thread in running._threads)


# --- fencing and resuming ----------------------------------------------------------------------


def test_a_fenced_instance_is_no_longer_advanced(
    rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    flow = (
        Flow("fenced")
        .task("A", "count", parameters={"ms": 400})
        .task("B", "count", parameters={"ms": 0})
        .build()
    )
    rt.store.register(flow)
    caplog.set_level(logging.WARNING, logger="rustyflower.worker")
    with worker(rt):
        instance = rt.conductor.start("fenced", {}).instance_id
        wait_until(lambda: executions(rt.client, rt.keys.prefix), 5, what="A to start")
        seq = rt.store.info(instance).seq
        assert rt.store.fence(instance, 1, "aws") is True
        wait_until(lambda: pending(rt) == 0, 5, what="A's message to be dropped")
        time.sleep(0.3)
    info = rt.store.info(instance)
    assert (info.seq, info.epoch, info.status, info.owner) == (seq, 1, "running", "aws")
    assert len(executions(rt.client, rt.keys.prefix)) == 1  # B never ran
    assert "TaskSucceeded" not in [entry["kind"] for entry in rt.store.history(instance)]
    assert any("newer epoch" in record.getMessage() for record in caplog.records)
    assert rt.store.fence(instance, 1, "aws") is False  # not again, not lower


def signing_store(rt: Runtime, key_id: str = "site") -> RedisStore:
    keys = SnapshotKeys.signing_only(generate_signing_key(key_id))
    return RedisStore(rt.client, rt.keys, keys)


def test_resume_of_a_tampered_snapshot_is_refused(rt: Runtime) -> None:
    store = signing_store(rt)
    store.register(Flow("signed").wait_for_event("W", "go").build())
    conductor = Conductor(store)
    instance = conductor.start("signed", {"amount": 10}).instance_id
    data = conductor.export(instance)
    document = json.loads(data)
    assert document["signature"]["alg"] == "HMAC-SHA256"
    document["state"]["input"]["amount"] = 1_000_000
    tampered = json.dumps(document).encode()
    other = signing_store_with(rt, store.snapshot_keys, "b")
    with pytest.raises(SignatureInvalidError):
        Conductor(other).resume(tampered)
    unsigned = {k: v for k, v in json.loads(data).items() if k != "signature"}
    with pytest.raises(SignatureMissingError):
        Conductor(other).resume(json.dumps(unsigned).encode())
    foreign = signing_store(rt, "site")  # the same key id, another secret
    with pytest.raises(SignatureInvalidError):
        Conductor(foreign).resume(data)
    assert not other.exists(instance)
    Conductor(other).resume(data)  # the untouched snapshot is accepted
    assert other.load(instance, fresh=True).state.input == {"amount": 10}


def signing_store_with(rt: Runtime, keys: SnapshotKeys, suffix: str) -> RedisStore:
    return RedisStore(rt.client, Keyspace(prefix=f"{rt.keys.prefix}:{suffix}"), keys)


def test_resume_of_an_older_epoch_is_refused(rt: Runtime) -> None:
    rt.store.register(Flow("owned").wait_for_event("W", "go").build())
    instance = rt.conductor.start("owned", {}).instance_id
    old = rt.conductor.export(instance)
    # failover and back: the instance comes home under a newer epoch
    taken = rt.conductor.resume(old, take_ownership=True)
    assert taken.epoch == 1 and rt.store.info(instance).epoch == 1
    with pytest.raises(EpochConflictError, match="owned by epoch 1"):
        rt.conductor.resume(old)
    # and the same epoch, not further along, is refused too
    with pytest.raises(EpochConflictError, match="already here"):
        rt.conductor.resume(rt.conductor.export(instance))
    # a signal still works: the instance is intact
    rt.conductor.signal(instance, "go", 1)
    assert rt.store.info(instance).status == "succeeded"


def queued(rt: Runtime) -> int:
    return sum(int(rt.client.xlen(rt.keys.stream(0, p))) for p in PRIORITIES)


def test_take_ownership_refuses_an_older_seq_even_of_a_finished_instance(rt: Runtime) -> None:
    """Issue 10, item 2: the staleness check is made before the epoch is raised, so an
    older snapshot never rolls back newer state (its activity would run twice)."""
    rt.store.register(Flow("once").task("Charge", "add").build())
    instance = rt.conductor.start("once", {"a": 1, "b": 2}).instance_id
    old = rt.conductor.export(instance)  # seq 1: the activity is dispatched
    with worker(rt):
        finished = final(rt, instance)
    assert finished.status == "succeeded"
    before = (rt.store.info(instance), queued(rt), rt.store.history(instance))
    with pytest.raises(EpochConflictError, match=f"seq {finished.seq}"):
        rt.conductor.resume(old, take_ownership=True)
    assert (rt.store.info(instance), queued(rt), rt.store.history(instance)) == before
    # the same point, a new owner: still allowed (failback and give-back rely on it)
    rt.conductor.resume(rt.conductor.export(instance), take_ownership=True)
    assert rt.store.info(instance).epoch == 1

    rolled = rt.conductor.resume(old, take_ownership=True, discard_newer_state=True)
    info = rt.store.info(instance)
    assert (info.status, info.epoch, info.seq) == ("running", 2, finished.seq + 1)
    assert rolled.seq == info.seq and rolled.positions == ["Charge"]
    note = rt.store.history(instance)[-1]
    assert note["kind"] == "NewerStateDiscarded" and note["seq"] == info.seq
    assert note["detail"]["discarded_status"] == "succeeded"
    with pytest.raises(ValueError, match="take_ownership"):
        rt.conductor.resume(old, discard_newer_state=True)


# --- Redis unreachable -------------------------------------------------------------------------


def test_unreachable_redis_is_reported_without_the_password() -> None:
    url = f"redis://app:s3cr3t-pw@127.0.0.1:{free_port()}/0"
    with pytest.raises(RedisUnavailableError) as raised:
        connect(url)
    message = str(raised.value)
    assert "s3cr3t-pw" not in message
    assert "redis://app:***@127.0.0.1" in message
    assert message.startswith("cannot reach Redis")
    with pytest.raises(RedisUnavailableError, match="not a Redis URL"):
        connect("http://127.0.0.1:6379")


def test_wrong_credentials_are_reported_without_the_password(rt: Runtime) -> None:
    user = f"u{uuid.uuid4().hex[:8]}"
    rt.client.acl_setuser(user, enabled=True, passwords=["+right-pw"], commands=["+@all"])
    try:
        port = rt.server.port
        good = connect(f"redis://{user}:right-pw@127.0.0.1:{port}/0")
        assert good.ping()
        good.close()
        with pytest.raises(RedisUnavailableError, match="refused the credentials") as raised:
            connect(f"redis://{user}:wrong-pw@127.0.0.1:{port}/0")
        assert "wrong-pw" not in str(raised.value)
        assert f"redis://{user}:***@" in str(raised.value)
    finally:
        rt.client.acl_deluser(user)


def test_a_password_in_the_query_string_is_redacted_too() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0?password=s3cr3t-pw"
    with pytest.raises(RedisUnavailableError) as raised:
        connect(url)
    assert "s3cr3t-pw" not in str(raised.value)


def test_the_worker_survives_redis_errors_in_a_connection_of_its_own(rt: Runtime) -> None:
    """A client killed under the worker (CLIENT KILL) is reconnected; work goes on."""
    rt.store.register(Flow("steady").task("A", "count").task("B", "count").build())
    with worker(rt):
        first = rt.conductor.start("steady", {}).instance_id
        assert final(rt, first).status == "succeeded"
        rt.client.client_kill_filter(_type="normal", skipme=True)
        second = rt.conductor.start("steady", {}).instance_id
        assert final(rt, second).status == "succeeded"


# --- the fault suite: each fault ends with every instance finished, nothing lost, no thread dead


def fault_flow() -> Any:
    """Tasks and a timer, none of which writes to Redis itself (it may refuse writes)."""
    return (
        Flow("faulty")
        .task("A", "add", parameters={"a.$": "$.n", "b": 1}, result_path="$.a")
        .wait("W", seconds=1)
        .task("B", "add", parameters={"a.$": "$.a", "b": 1}, result_path="$.b")
        .task("C", "echo")
        .build()
    )


def all_finished_intact(rt: Runtime, ids: list[str], store: RedisStore | None = None) -> None:
    """Every instance succeeded with the output of an undisturbed run; no history gap."""
    reader = store or rt.store
    for n, instance_id in enumerate(ids):
        wait_finished(reader, instance_id, timeout=30)
        check_instance(reader, instance_id)
        snapshot = reader.load(instance_id, fresh=True)
        assert snapshot.status == "succeeded", (snapshot.state.error, snapshot.state.cause)
        assert snapshot.state.output == {"n": n, "a": n + 1, "b": n + 2}


def no_thread_dead(running: Any) -> None:
    assert running._threads and all(thread.is_alive() for thread in running._threads)
    assert all(entry.restarts == 0 for entry in running.health.threads().values())
    wait_until(running.healthy, 10, what=f"worker {running.options.name} healthy again")


@contextlib.contextmanager
def out_of_memory(client: Any) -> Iterator[None]:
    """Every write is refused (maxmemory 1 byte with noeviction) until the block ends."""
    policy = client.config_get("maxmemory-policy")["maxmemory-policy"]
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)
    try:
        yield
    finally:
        client.config_set("maxmemory", 0)
        client.config_set("maxmemory-policy", policy)


@pytest.mark.slow
def test_fault_redis_out_of_memory_for_four_seconds(rt: Runtime) -> None:
    """Regression: an OOM reply ended every executor and the maintenance thread."""
    rt.store.register(fault_flow())
    with worker(rt, concurrency=2) as running:
        ids = [rt.conductor.start("faulty", {"n": n}).instance_id for n in range(20)]
        with out_of_memory(rt.client):
            time.sleep(4)
            refused = running.stats.redis_errors
        all_finished_intact(rt, ids)
        no_thread_dead(running)
    assert refused > 0  # the worker did meet the fault


@pytest.mark.slow
def test_fault_client_kill_of_the_workers_connections(rt: Runtime) -> None:
    rt.store.register(fault_flow())
    with worker(rt, concurrency=2) as running:
        ids = [rt.conductor.start("faulty", {"n": n}).instance_id for n in range(20)]
        deadline = time.monotonic() + 3
        kills = 0
        while time.monotonic() < deadline:
            kills += int(rt.client.client_kill_filter(_type="normal", skipme=True))
            time.sleep(0.1)
        all_finished_intact(rt, ids)
        no_thread_dead(running)
    assert kills > 0


def test_fault_a_worker_with_a_wrong_signing_key_is_refused(rt: Runtime) -> None:
    """Before, it started anyway: no snapshot verified, so its executor threads died one
    after the other (and work it had reclaimed was dead-lettered). Now it is refused."""
    right = SnapshotKeys.signing_only(generate_signing_key("site"))
    wrong = SnapshotKeys.signing_only(generate_signing_key("site"))  # same id, other secret
    store = RedisStore(rt.client, rt.keys, right)
    store.register(fault_flow())
    conductor = Conductor(store)
    with worker(rt, snapshot_keys=right, name="right") as good:
        ids = [conductor.start("faulty", {"n": n}).instance_id for n in range(10)]
        with (
            pytest.raises(SigningKeyMismatchError, match="signing key 'site'"),
            worker(rt, snapshot_keys=wrong, name="wrong"),
        ):
            pass
        all_finished_intact(rt, ids, store)
        no_thread_dead(good)
    assert dead_letters(rt) == []


@pytest.mark.slow
def test_fault_a_worker_lacking_the_signing_key_leaves_the_work_to_others(rt: Runtime) -> None:
    """A key id it does not have: it cannot verify a snapshot, so it leaves the message
    (reclaimed by a worker that can) and turns unhealthy instead of dead-lettering."""
    right = SnapshotKeys.signing_only(generate_signing_key("site"))
    other = SnapshotKeys.signing_only(generate_signing_key("elsewhere"))
    store = RedisStore(rt.client, rt.keys, right)
    store.register(fault_flow())
    conductor = Conductor(store)
    settings = {"visibility_timeout": 1.0, "failure_limit": 2.0}
    with (
        worker(rt, snapshot_keys=right, name="right", **settings) as good,
        worker(rt, snapshot_keys=other, name="lost", **settings) as lost,
    ):
        ids = [conductor.start("faulty", {"n": n}).instance_id for n in range(10)]
        all_finished_intact(rt, ids, store)
        assert all(thread.is_alive() for thread in lost._threads)  # failing, not dead
        failures = sum(entry.failures for entry in lost.health.threads().values())
        no_thread_dead(good)
    assert failures > 0
    assert dead_letters(rt) == []
