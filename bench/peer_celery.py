"""Celery as a peer of bench.runner_bench: Redis broker and Redis result backend.

The worker is ``celery -A bench.celery_app worker`` with one pool configuration per
``CeleryBench``. Chains are ``chain(step.s(0), step.s(), ...)``; bulk submission is a
``group`` (of chains for W1, of single tasks for W2), Celery's bulk API.

Completion is read from the result backend's keys (``celery-task-meta-<id>``, where
``AsyncResult.get()`` reads it too). ``get()`` itself waits on a pub/sub subscription,
and Celery 5.7's subscription handling hung one of our runs for good (see the Celery
issues on ``AsyncResult.__del__`` and pub/sub deadlocks), so this client does not
subscribe: that only removes work from Celery's side of the comparison.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from typing import Any

import redis

from bench.harness import ROOT
from bench.workloads import CHAIN_STEPS, SystemBench, wait_for_keys


def available() -> bool:
    return importlib.util.find_spec("celery") is not None


class CeleryBench(SystemBench):
    system = "Celery"

    def __init__(
        self, url: str, server_pids: list[int], poll_s: float, pool: str, concurrency: int
    ) -> None:
        super().__init__(url, server_pids, poll_s)
        os.environ["BENCH_REDIS_URL"] = url
        from bench import celery_app  # noqa: PLC0415 - needs the URL in the environment

        self.module = celery_app
        self.backend = celery_app.app.backend
        self.backend.on_task_call = lambda producer, task_id: None  # no pub/sub subscription
        self.client = redis.Redis.from_url(url)
        self.pool = pool
        self.concurrency = concurrency
        self.worker: subprocess.Popen[bytes] | None = None
        self.log_path = f"/tmp/rf-bench-celery-{pool}-{os.getpid()}.log"

    @property
    def label(self) -> str:
        return f"1 worker process, --pool={self.pool} --concurrency={self.concurrency}"

    def start_workers(self) -> list[int]:
        with open(self.log_path, "ab") as log:
            self.worker = subprocess.Popen(
                [
                    sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker",
                    f"--pool={self.pool}", f"--concurrency={self.concurrency}",
                    "--loglevel=WARNING", f"--hostname=bench-{self.pool}@%h",
                ],
                cwd=ROOT,
                env={**os.environ, "BENCH_REDIS_URL": self.url},
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        # ready when it has run a task
        try:
            self.wait([self.module.step.delay(0).id], 0.05, 1, time.monotonic() + 120)
        except (TimeoutError, RuntimeError) as error:
            raise RuntimeError(f"the Celery worker did not start; see {self.log_path}") from error
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
        self.client.close()

    def _chain(self) -> Any:
        from celery import chain  # noqa: PLC0415

        step = self.module.step
        return chain(step.s(0), *(step.s() for _ in range(CHAIN_STEPS - 1)))

    def submit(self, count: int, steps: int, bulk: bool) -> list[str]:
        step = self.module.step
        make = self._chain if steps == CHAIN_STEPS else lambda: step.s(0)
        if bulk:
            from celery import group  # noqa: PLC0415

            result = group(make() for _ in range(count)).apply_async()
            return [child.id for child in result.results]
        return [make().apply_async().id for _ in range(count)]

    def wait(self, submitted: list[str], poll_s: float, expected: int, deadline: float) -> None:
        keys = [self.backend.get_key_for_task(task_id) for task_id in submitted]
        wait_for_keys(self.client, keys, poll_s, deadline, self.check_alive)
        for first in range(0, len(keys), 500):
            for raw in self.client.mget(keys[first : first + 500]):
                meta = self.backend.decode_result(raw)
                if meta["status"] != "SUCCESS" or meta["result"] != expected:
                    raise RuntimeError(f"a Celery task ended {meta['status']}: {meta['result']}")
