"""One store shared by threads (a worker's executors, the asyncio client's pool).

Regression: the snapshot cache was an OrderedDict reordered without a lock, so two
threads loading and remembering snapshots at once raised ``KeyError`` from
``move_to_end`` after the other thread had evicted the entry.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest

from rustyflower.adapters.redis.store import RedisStore
from rustyflower.core.builder import Flow
from tests.redis.conftest import Runtime

pytestmark = pytest.mark.emulator


@pytest.fixture
def eager_switching() -> Iterator[None]:
    """Switch threads as often as CPython allows, so a race shows in a short run."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def test_threads_sharing_a_small_cache_never_trip_over_each_other(
    runtime: Runtime, eager_switching: None
) -> None:
    runtime.store.register(Flow("one", version="1").task("A", "a").build())
    ids = [runtime.conductor.start("one", {}).instance_id for _ in range(8)]
    snapshots = [runtime.store.load(instance_id, fresh=True) for instance_id in ids]
    shared = RedisStore(runtime.client, runtime.keys, cache_size=4)
    errors: list[BaseException] = []

    def hammer(offset: int) -> None:
        try:
            for round_ in range(5000):
                snapshot = snapshots[(round_ * 7 + offset) % len(snapshots)]
                shared._remember(snapshot)  # what every commit does once it applied
                shared.load(snapshot.instance_id)  # a hit, unless another thread evicted it
        except BaseException as error:  # the test reports whatever escaped
            errors.append(error)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
