"""The Redis runner on a real Redis Cluster: 3 primaries with a replica each, on loopback.

The tests start the cluster themselves (``redis-server --cluster-enabled yes`` x6, then
``redis-cli --cluster create``; .ci/run installs both). What is checked (issue 13):

* a URL of any node gives a cluster client, and instances spread over every primary
  while each transition stays one script on one node (the keys of a transition share
  the shard's hash tag);
* the conformance corpus runs through the cluster on the real worker, which consumes
  every shard;
* timers, the scheduler's lease and the concurrency limits work there;
* a failover of a primary in the middle of a run (``CLUSTER FAILOVER`` on its replica)
  loses nothing and applies nothing twice.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from rustyflower.adapters.redis.conductor import Conductor
from rustyflower.adapters.redis.connection import connect
from rustyflower.adapters.redis.keys import Keyspace
from rustyflower.adapters.redis.limits import Limits
from rustyflower.adapters.redis.schedule_store import ScheduleStore
from rustyflower.adapters.redis.scheduler import Scheduler
from rustyflower.adapters.redis.store import RedisStore
from rustyflower.adapters.redis.worker import Worker, WorkerOptions
from rustyflower.core.activities import ActivityRegistry
from rustyflower.core.builder import Flow
from rustyflower.core.engine import FINISHED
from tests.redis.activities import check_instance, wait_until
from tests.redis.servers import ClusterProcesses, redis_binary, redis_cli_binary
from tests.redis.test_store_conformance import meets, real_time_cases, real_time_registry
from tests.tooling import missing_tool

pytestmark = [pytest.mark.emulator, pytest.mark.slow]

SHARDS = 12
"""Shards (hash tags) for the cluster tests: enough that every primary owns some."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterProcesses]:
    server, cli = redis_binary(), redis_cli_binary()
    if server is None or cli is None:
        missing_tool("redis-server and redis-cli are needed for the cluster tests (.ci/run)")
    assert server is not None and cli is not None
    nodes = ClusterProcesses(server, cli, tmp_path_factory.mktemp("cluster"), replicas=1)
    nodes.start()
    yield nodes
    nodes.stop()


@pytest.fixture
def store(cluster: ClusterProcesses) -> Iterator[RedisStore]:
    client = connect(cluster.url)
    keys = Keyspace(prefix=f"k{uuid.uuid4().hex[:8]}", shards=SHARDS)
    made = RedisStore(client, keys)
    made.ensure_groups()
    yield made
    for key in client.scan_iter(match=f"{keys.prefix}:*", count=1000):
        client.delete(key)
    client.close()


@contextlib.contextmanager
def cluster_worker(
    cluster: ClusterProcesses, keys: Keyspace, activities: ActivityRegistry, **options: Any
) -> Iterator[Worker]:
    """A worker with a cluster client of its own, as in another process."""
    settings = {
        "concurrency": 4,
        "visibility_timeout": 3.0,
        "heartbeat_interval": 0.5,
        "block_ms": 100,
        "name": f"cw-{uuid.uuid4().hex[:6]}",
        **options,
    }
    client = connect(cluster.url)
    worker = Worker(RedisStore(client, keys), activities, WorkerOptions(**settings))
    try:
        worker.start()
        yield worker
    finally:
        worker.stop(timeout=10)
        client.close()


def steps_registry() -> ActivityRegistry:
    found = ActivityRegistry()
    found.register(lambda value: value + 1, name="step")
    return found


def chain(name: str, steps: int, wait_seconds: int | None = None) -> Any:
    flow = Flow(name, version="1")
    for index in range(steps):
        flow.task(f"S{index}", "step")
        if wait_seconds is not None and index == 0:
            flow.wait("Pause", seconds=wait_seconds)
    return flow.build()


def primary_of(client: Any, key: str) -> str:
    return str(client.get_node_from_key(key).name)


def test_a_node_url_gives_a_cluster_client_and_instances_spread_over_every_primary(
    cluster: ClusterProcesses, store: RedisStore
) -> None:
    assert isinstance(store.client, RedisCluster)
    store.register(chain("spread", 2))
    conductor = Conductor(store)
    ids = [conductor.start("spread", 0).instance_id for _ in range(60)]
    owners = {primary_of(store.client, store.keys.instance(i)) for i in ids}
    assert len(owners) == 3, owners
    with cluster_worker(cluster, store.keys, steps_registry()):
        wait_until(
            lambda: all(store.info(i).status in FINISHED for i in ids), 30, what="all finished"
        )
    for instance_id in ids:
        final = store.load(instance_id, fresh=True)
        assert (final.status, final.state.output) == ("succeeded", 2)
        check_instance(store, instance_id)
    assert {item["name"] for item in store.flows()} == {"spread"}


def test_the_conformance_corpus_runs_through_the_cluster(
    cluster: ClusterProcesses, store: RedisStore
) -> None:
    cases = real_time_cases()
    assert len(cases) >= 40
    conductor = Conductor(store)
    for case in cases:
        for definition in (*case.subflows, case.flow):
            assert definition is not None
            store.register(definition)
    started = {}
    for case in cases:
        assert case.flow is not None
        instance_id = f"{case.file}.{case.name}"
        conductor.start(
            case.flow.name, case.input, version=case.flow.version, instance_id=instance_id
        )
        started[instance_id] = case
    with cluster_worker(cluster, store.keys, real_time_registry(), concurrency=12):
        wait_until(
            lambda: all(store.info(i).status in FINISHED for i in started),
            60,
            interval=0.05,
            what="every case to finish",
        )
    failures = []
    for instance_id, case in started.items():
        found = meets(case.expect, store.load(instance_id, fresh=True))
        try:
            check_instance(store, instance_id)
        except AssertionError as error:
            found.append(f"history: {error}")
        if found:
            failures.append(f"{case.id}: " + "; ".join(found))
    assert not failures, "\n".join(failures)


def test_the_scheduler_lease_and_the_limits_work_on_the_cluster(store: RedisStore) -> None:
    schedules = ScheduleStore(store.client, store.keys)
    one = Scheduler(store, Conductor(store), schedules, holder="one", lease_seconds=5)
    two = Scheduler(store, Conductor(store), schedules, holder="two", lease_seconds=5)
    assert one.renew() is True
    assert two.renew() is False
    one.release()
    assert two.renew() is True

    limits = Limits(store.client, store.keys)
    limits.set_flow_concurrency("capped", 1)
    assert limits.admit("a|1", "capped", None, "step") == 0
    assert limits.admit("b|1", "capped", None, "step") > 0  # the one slot is taken
    limits.release("a|1", "capped", None)
    assert limits.admit("b|1", "capped", None, "step") == 0


def test_a_primary_failing_over_mid_run_loses_nothing(
    cluster: ClusterProcesses, store: RedisStore
) -> None:
    """CLUSTER FAILOVER on a replica: clients are paused on the old primary until the
    replica has caught up, then it takes the slots; the runner's commands are redirected
    (MOVED) or retried, and every instance ends with a history that has each transition
    exactly once. Timers (a short wait in every flow) run through the failover too."""
    store.register(chain("failover", 6, wait_seconds=1))
    conductor = Conductor(store)
    ids = [conductor.start("failover", 0).instance_id for _ in range(150)]
    victim = primary_of(store.client, store.keys.instance(ids[0]))
    failed_over = threading.Event()
    unfinished_after: list[int] = []

    def fail_over() -> None:
        time.sleep(1.0)  # the run is under way
        replica = next(
            node for node in cluster.nodes if _role(node.url) == ("slave", victim.rsplit(":", 1)[1])
        )
        client = redis.Redis.from_url(replica.url)
        try:
            client.execute_command("CLUSTER", "FAILOVER")
        finally:
            client.close()
        wait_until(lambda: _role(replica.url)[0] == "master", 30, what="the replica to take over")
        unfinished_after.append(sum(store.info(i).status not in FINISHED for i in ids))
        failed_over.set()

    with cluster_worker(cluster, store.keys, steps_registry()) as worker:
        thread = threading.Thread(target=fail_over)
        thread.start()
        try:
            wait_until(
                lambda: all(store.info(i).status in FINISHED for i in ids),
                90,
                interval=0.1,
                what="every instance to finish",
            )
        finally:
            thread.join(timeout=60)
        assert worker.healthy()
    assert failed_over.is_set()
    assert unfinished_after[0] > 0, "the run was over before the failover: it proves nothing"
    cluster.wait_ok()
    for instance_id in ids:
        final = store.load(instance_id, fresh=True)
        assert (final.status, final.state.output) == ("succeeded", 6), instance_id
        check_instance(store, instance_id)


def _role(url: str) -> tuple[str, str]:
    """('master', '') or ('slave', the primary's port) of the node at ``url``."""
    client = redis.Redis.from_url(url)
    try:
        info = client.info("replication")
    finally:
        client.close()
    return str(info["role"]), str(info.get("master_port", ""))
