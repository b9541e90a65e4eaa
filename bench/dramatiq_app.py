"""The Dramatiq side of bench.runner_bench: Redis broker and Redis result backend.

The server comes from ``BENCH_REDIS_URL``; everything else is Dramatiq's defaults (JSON,
its default middleware) plus the Results middleware. The worker is started by the bench:

    dramatiq_worker_timeout=10 python -m dramatiq bench.dramatiq_app --processes 1 --threads 1

``step`` stores no result unless the message asks (``store_results=True``): the bench asks
for the last step of a chain and for single steps, which is all it reads.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

backend = RedisBackend(url=URL)
broker = RedisBroker(url=URL)
broker.add_middleware(Results(backend=backend))
dramatiq.set_broker(broker)


@dramatiq.actor(max_retries=0)
def step(value: int) -> int:
    return value + 1
