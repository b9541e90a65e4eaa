"""arq as a peer of bench.runner_bench: arq's worker (asyncio) polling its queue every 10 ms.

The worker is ``python -m bench.arq_app`` (``max_jobs`` jobs at once). arq is asyncio
only: this client drives ``ArqRedis.enqueue_job`` on an event loop of its own. A chain is
a job that enqueues its next step (arq has no chain primitive); its last step's job id is
known in advance, so completion is the existence of that job's result key. arq has no
bulk enqueue either: its "bulk" row enqueues concurrently (``asyncio.gather``, at most
``BULK_IN_FLIGHT`` at once: each enqueue holds a connection for its WATCH transaction).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import redis

from bench.harness import ROOT
from bench.workloads import SystemBench, wait_for_keys

BULK_IN_FLIGHT = 32


def available() -> bool:
    return importlib.util.find_spec("arq") is not None


class ArqBench(SystemBench):
    system = "arq"

    def __init__(self, url: str, server_pids: list[int], poll_s: float, max_jobs: int) -> None:
        super().__init__(url, server_pids, poll_s)
        os.environ["BENCH_REDIS_URL"] = url
        from arq import create_pool  # noqa: PLC0415
        from arq.connections import RedisSettings  # noqa: PLC0415

        from bench import arq_app  # noqa: PLC0415 - needs the URL in the environment

        self.module = arq_app
        self.loop = asyncio.new_event_loop()
        self.pool = self.loop.run_until_complete(
            create_pool(
                RedisSettings.from_dsn(url),
                job_serializer=arq_app.serialize,
                job_deserializer=arq_app.deserialize,
            )
        )
        self.client = redis.Redis.from_url(url)
        self.max_jobs = max_jobs
        self.worker: subprocess.Popen[bytes] | None = None
        self.log_path = f"/tmp/rf-bench-arq-{max_jobs}-{os.getpid()}.log"

    @property
    def label(self) -> str:
        return f"1 worker process, max_jobs={self.max_jobs}, poll 10 ms"

    def start_workers(self) -> list[int]:
        with open(self.log_path, "ab") as log:
            self.worker = subprocess.Popen(
                [sys.executable, "-m", "bench.arq_app"],
                cwd=ROOT,
                env={
                    **os.environ,
                    "BENCH_REDIS_URL": self.url,
                    "BENCH_ARQ_MAX_JOBS": str(self.max_jobs),
                },
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self.wait(self.submit(1, 1, False), 0.05, 1, time.monotonic() + 120)
        except (TimeoutError, RuntimeError) as error:
            raise RuntimeError(f"the arq worker did not start; see {self.log_path}") from error
        return [self.worker.pid]

    def stop_workers(self) -> None:
        if self.worker is not None:
            self.worker.terminate()
            try:
                self.worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()
            self.worker = None

    def workers_alive(self) -> bool:
        return self.worker is not None and self.worker.poll() is None

    def close(self) -> None:
        super().close()
        self.loop.run_until_complete(self.pool.aclose())
        self.loop.close()
        self.client.close()

    def submit(self, count: int, steps: int, bulk: bool) -> list[str]:
        chains = [uuid.uuid4().hex for _ in range(count)]
        first = self.module.job_id

        def enqueue(chain: str) -> Any:
            return self.pool.enqueue_job("step", 0, steps, chain, _job_id=first(chain, steps))

        if bulk:

            async def all_at_once() -> None:
                room = asyncio.Semaphore(BULK_IN_FLIGHT)

                async def one(chain: str) -> None:
                    async with room:
                        await enqueue(chain)

                await asyncio.gather(*(one(chain) for chain in chains))

            self.loop.run_until_complete(all_at_once())
        else:
            for chain in chains:
                self.loop.run_until_complete(enqueue(chain))
        return [first(chain, 1) for chain in chains]

    def wait(self, submitted: list[str], poll_s: float, expected: int, deadline: float) -> None:
        from arq.constants import result_key_prefix  # noqa: PLC0415

        keys = [result_key_prefix + job for job in submitted]
        wait_for_keys(self.client, keys, poll_s, deadline, self.check_alive)
        for first in range(0, len(keys), 500):
            for raw in self.client.mget(keys[first : first + 500]):
                document = self.module.deserialize(raw)
                if not document.get("s") or document.get("r") != expected:
                    raise RuntimeError(f"an arq job ended {document.get('r')!r}")
