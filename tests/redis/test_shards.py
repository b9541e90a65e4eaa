"""A worker thread that serves several shards (issue 13: scale out).

Instances live in shards (hash tags; on a cluster, on different nodes). One executor
thread reads every shard it serves; an empty shard must not hold up a busy one.
"""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from rustyflower.adapters.redis.conductor import Conductor
from rustyflower.adapters.redis.keys import Keyspace
from rustyflower.adapters.redis.store import RedisStore
from rustyflower.core.activities import ActivityRegistry
from rustyflower.core.builder import Flow
from tests.redis.activities import running_worker, wait_finished
from tests.redis.conftest import Runtime

pytestmark = pytest.mark.emulator


def test_one_thread_serves_a_busy_shard_without_waiting_on_the_empty_ones(
    runtime: Runtime,
) -> None:
    keys = Keyspace(prefix=f"sh{uuid.uuid4().hex[:8]}", shards=4)
    store = RedisStore(redis.Redis.from_url(runtime.server.url), keys)
    store.ensure_groups()
    flow = Flow("chain5", version="1")
    for index in range(5):
        flow.task(f"S{index}", "step")
    store.register(flow.build())
    activities = ActivityRegistry()
    activities.register(lambda value: value + 1, name="step")
    with running_worker(runtime.server.url, keys, activities, concurrency=1, block_ms=500):
        time.sleep(0.3)  # the executor is idle, blocked on one of its four shards
        began = time.monotonic()
        instance_id = Conductor(store).start("chain5", 0).instance_id
        assert wait_finished(store, instance_id, timeout=20) == "succeeded"
        elapsed = time.monotonic() - began
    # before: after each step the thread blocked 500 ms on each of the three empty shards
    # (about 1.5 s a step, 7.5 s for the chain)
    assert elapsed < 2.5, f"{elapsed:.2f}s for five steps"
    assert store.load(instance_id, fresh=True).state.output == 5
    for key in store.client.scan_iter(match=f"{keys.prefix}:*"):
        store.client.delete(key)
    store.client.close()
