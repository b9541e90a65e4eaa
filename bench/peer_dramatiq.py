"""Dramatiq as a peer of bench.runner_bench: Redis broker, Redis result backend.

The worker is ``python -m dramatiq bench.dramatiq_app --processes 1 --threads N``; its
idle poll backs off up to ``dramatiq_worker_timeout``, set to 10 ms (as arq's poll) instead
of the default 1 s, so that a quiet queue costs Dramatiq no more latency than arq.
Chains are ``dramatiq.pipeline`` (each message carries the next one); only the last
message of a chain, and single steps, store a result. Dramatiq has no bulk enqueue:
``group(...).run()`` (its "bulk" row) enqueues one message after another.
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

WORKER_TIMEOUT_MS = 10


def available() -> bool:
    return importlib.util.find_spec("dramatiq") is not None


class DramatiqBench(SystemBench):
    system = "Dramatiq"

    def __init__(self, url: str, server_pids: list[int], poll_s: float, threads: int) -> None:
        super().__init__(url, server_pids, poll_s)
        os.environ["BENCH_REDIS_URL"] = url
        from bench import dramatiq_app  # noqa: PLC0415 - needs the URL in the environment

        self.module = dramatiq_app
        self.client = redis.Redis.from_url(url)
        self.threads = threads
        self.worker: subprocess.Popen[bytes] | None = None
        self.log_path = f"/tmp/rf-bench-dramatiq-{threads}-{os.getpid()}.log"

    @property
    def label(self) -> str:
        return f"1 worker process, --processes 1 --threads {self.threads}"

    def start_workers(self) -> list[int]:
        with open(self.log_path, "ab") as log:
            self.worker = subprocess.Popen(
                [
                    sys.executable, "-m", "dramatiq", "bench.dramatiq_app",
                    "--processes", "1", "--threads", str(self.threads),
                ],
                cwd=ROOT,
                env={
                    **os.environ,
                    "BENCH_REDIS_URL": self.url,
                    "dramatiq_worker_timeout": str(WORKER_TIMEOUT_MS),
                },
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            self.wait(self.submit(1, 1, False), 0.05, 1, time.monotonic() + 120)
        except (TimeoutError, RuntimeError) as error:
            raise RuntimeError(f"the Dramatiq worker did not start; see {self.log_path}") from error
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
        import dramatiq  # noqa: PLC0415

        step = self.module.step
        messages = [step.message(0), *(step.message() for _ in range(CHAIN_STEPS - 2))]
        messages.append(step.message_with_options(store_results=True))
        return dramatiq.pipeline(messages)

    def submit(self, count: int, steps: int, bulk: bool) -> list[Any]:
        import dramatiq  # noqa: PLC0415

        step = self.module.step
        if steps == CHAIN_STEPS:
            chains = [self._chain() for _ in range(count)]
            if bulk:
                dramatiq.group(chains).run()
            else:
                for chain in chains:
                    chain.run()
            return [chain.messages[-1] for chain in chains]
        if not bulk:
            return [step.send_with_options(args=(0,), store_results=True) for _ in range(count)]
        messages = [step.message_with_options(args=(0,), store_results=True) for _ in range(count)]
        dramatiq.group(messages).run()
        return messages

    def wait(self, submitted: list[Any], poll_s: float, expected: int, deadline: float) -> None:
        backend = self.module.backend
        keys = [backend.build_message_key(message) for message in submitted]
        wait_for_keys(self.client, keys, poll_s, deadline, self.check_alive)
        for first in range(0, len(keys), 500):
            pipe = self.client.pipeline(transaction=False)
            for key in keys[first : first + 500]:
                pipe.lindex(key, 0)
            for raw in pipe.execute():
                result = backend.unwrap_result(backend.encoder.decode(raw))
                if result != expected:
                    raise RuntimeError(f"a Dramatiq message returned {result!r}, not {expected}")
