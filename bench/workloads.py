"""The three workloads, run the same way on every system (RustyFlower and its peers).

A system under test is a ``SystemBench``: it starts and stops its worker process(es),
submits chains of ``CHAIN_STEPS`` trivial steps or single steps, one call per
instance ("one-by-one") or through its bulk API ("bulk"), and waits for their results.
``SystemBench.run`` does the rest identically for all of them:

- W1: ``W1_INSTANCES`` chains, steps/s over the wall time from the first start to the
  last completion; once with one-by-one starts (the headline), once in bulk.
- W2: ``W2_FLOWS`` single-step flows, flows/s, measured the same way.
- L:  one chain at a time, ``L_RUNS`` runs, polled every 1 ms: p50 and p99.

The activity is ``step(x) = x + 1`` everywhere; each system checks the outputs (10 after
a chain, 1 after a single step) so that a figure never counts lost or failed work.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from typing import Any

from bench.harness import CpuMeter, latency_summary, memory_mb

CHAIN_STEPS = 10
W1_INSTANCES = 200
W2_FLOWS = 2_000
L_RUNS = 20
MODES = ("one-by-one", "bulk")
TIMEOUT_S = 600.0


class SystemBench(abc.ABC):
    """One configuration of one system, measured on ``server_pids``'s Redis."""

    system: str = ""

    def __init__(self, url: str, server_pids: list[int], poll_s: float) -> None:
        self.url = url
        self.server_pids = server_pids
        self.poll_s = poll_s

    @property
    @abc.abstractmethod
    def label(self) -> str:
        """The configuration, as the report shows it."""

    @abc.abstractmethod
    def start_workers(self) -> list[int]:
        """Start the worker process(es); their PIDs once they take work."""

    @abc.abstractmethod
    def stop_workers(self) -> None: ...

    @abc.abstractmethod
    def workers_alive(self) -> bool: ...

    @abc.abstractmethod
    def submit(self, count: int, steps: int, bulk: bool) -> Any:
        """Start ``count`` instances of a ``steps``-step chain (``steps`` is 1 or
        CHAIN_STEPS); returns what ``wait`` needs to find their results."""

    @abc.abstractmethod
    def wait(self, submitted: Any, poll_s: float, expected: int, deadline: float) -> None:
        """Poll until every submitted instance finished; raise unless each gave
        ``expected`` (or raise TimeoutError past ``deadline``, a ``time.monotonic``)."""

    def close(self) -> None:
        self.stop_workers()

    def check_alive(self) -> None:
        if not self.workers_alive():
            raise RuntimeError(f"a {self.system} worker process stopped during the bench")

    # --- the run ------------------------------------------------------------------------

    def run(self, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        try:
            worker_pids = self.start_workers()
            meter = CpuMeter(self.server_pids, worker_pids)
            self._finish(self.submit(5, CHAIN_STEPS, False), CHAIN_STEPS, self.poll_s)  # warm-up
            row: dict[str, Any] = {"system": self.system, "configuration": self.label}
            for mode in MODES:
                bulk = mode == "bulk"
                row[f"w1_{mode}"] = self._throughput(meter, W1_INSTANCES, CHAIN_STEPS, bulk)
                row[f"w2_{mode}"] = self._throughput(meter, W2_FLOWS, 1, bulk)
            latencies = []
            for _ in range(L_RUNS):
                began = time.perf_counter()
                self._finish(self.submit(1, CHAIN_STEPS, False), CHAIN_STEPS, 0.001)
                latencies.append(time.perf_counter() - began)
            row["latency"] = latency_summary(latencies)
            row["worker_memory_mb_after"] = [memory_mb(pid) for pid in worker_pids]
            return row
        finally:
            self.close()

    def _throughput(self, meter: CpuMeter, count: int, steps: int, bulk: bool) -> dict[str, Any]:
        meter.begin()
        began = time.perf_counter()
        submitted = self.submit(count, steps, bulk)
        start_loop = time.perf_counter() - began
        self._finish(submitted, steps, self.poll_s)
        seconds = time.perf_counter() - began
        units = count * steps
        return {
            "per_s": round(units / seconds),
            "seconds": round(seconds, 3),
            "start_loop_seconds": round(start_loop, 3),
            "cpu_per_unit": meter.end(units),
        }

    def _finish(self, submitted: Any, expected: int, poll_s: float) -> None:
        self.check_alive()
        self.wait(submitted, poll_s, expected, time.monotonic() + TIMEOUT_S)


def wait_for_keys(
    client: Any, keys: list[str], poll_s: float, deadline: float, check: Callable[[], None]
) -> None:
    """Poll until every key exists: EXISTS pipelined over a window of 256 keys at a time.

    How the peers' results are awaited (each writes one result key per task or job):
    the same cost for all of them, and no pub/sub subscription that could hang.
    """
    done = 0
    while done < len(keys):
        pipe = client.pipeline(transaction=False)
        for key in keys[done : done + 256]:
            pipe.exists(key)
        for stored in pipe.execute():
            if not stored:
                break
            done += 1
        else:
            continue  # the whole window was there: look further at once
        check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(keys) - done} results still missing")
        time.sleep(poll_s)
