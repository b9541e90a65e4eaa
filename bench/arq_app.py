"""The arq side of bench.runner_bench: arq's worker on the bench's Redis, polling every 10 ms.

    BENCH_REDIS_URL=redis://127.0.0.1:6379/0 BENCH_ARQ_MAX_JOBS=10 python -m bench.arq_app

(``arq bench.arq_app.WorkerSettings`` does the same but logs every job at INFO level,
which costs arq time the other systems do not spend: this runs it with warnings only.)

arq has no chain primitive: a job enqueues the next step itself (``remaining`` steps to
go), under a job id derived from the chain's, so the bench knows where the last step's
result will be. Jobs and results are JSON (arq's default would be pickle).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from arq import run_worker
from arq.connections import RedisSettings

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
POLL_DELAY_S = 0.01
MAX_JOBS = int(os.environ.get("BENCH_ARQ_MAX_JOBS", "10"))


def serialize(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def deserialize(data: bytes) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(data)
    return document


def job_id(chain: str, remaining: int) -> str:
    """The id of a chain's job with ``remaining`` steps to go (1: the last step)."""
    return f"{chain}.{remaining}"


async def step(ctx: dict[str, Any], value: int, remaining: int = 1, chain: str = "") -> int:
    if remaining > 1:
        await ctx["redis"].enqueue_job(
            "step", value + 1, remaining - 1, chain, _job_id=job_id(chain, remaining - 1)
        )
    return value + 1


class WorkerSettings:
    functions = [step]  # noqa: RUF012 - arq reads class attributes
    redis_settings = RedisSettings.from_dsn(URL)
    poll_delay = POLL_DELAY_S
    job_serializer = staticmethod(serialize)
    job_deserializer = staticmethod(deserialize)
    max_tries = 1
    max_jobs = MAX_JOBS


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    run_worker(WorkerSettings)  # type: ignore[arg-type]
