"""The Celery side of bench.runner_bench: Redis broker and Redis result backend.

The server comes from ``BENCH_REDIS_URL``; everything else is Celery's defaults (JSON,
acks on receipt, results stored in the backend). The worker is started by the bench:

    celery -A bench.celery_app worker --pool=solo --concurrency=1
"""

from __future__ import annotations

import os

from celery import Celery

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

app = Celery("bench", broker=URL, backend=URL)
app.conf.update(
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.step")
def step(value: int) -> int:
    return value + 1
