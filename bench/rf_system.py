"""RustyFlower as a system under bench.runner_bench: its worker process(es) on the bench's Redis.

The worker process is ``python -m bench.runner_worker`` (``rustyflower.worker.Worker``),
or, for the process-scaling rows, ``rustyflower worker --processes N`` (the product's
supervisor and its N worker processes). Instances start with ``Client.start`` one after
another, or ``Client.start_many`` (bulk). Completion: ``SCARD`` of the finished status
indexes of every shard, polled like the peers' result keys.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import ROOT, memory_mb
from bench.workloads import CHAIN_STEPS, SystemBench

# The flows are built, registered and started through the public face. Keyspace and
# connect are the internal imports, for instrumentation only: the probes read the store's
# keys (status indexes, streams, an instance's hash) directly, as the peers' side reads
# result keys, over the same kind of connection (a cluster client on a cluster).
from rustyflower import Flow, FlowDefinition, SnapshotKeys
from rustyflower.adapters.redis.connection import connect
from rustyflower.adapters.redis.keys import Keyspace
from rustyflower.client import Client

PREFIX = "rfbench"
RSS_INSTANCES = 10_000
FINISHED = ("succeeded", "failed", "cancelled")


def chain_flow(name: str, steps: int) -> FlowDefinition:
    flow = Flow(name, version="1")
    for index in range(steps):
        flow.task(f"Step {index + 1}", "step")
    return flow.build()


def waiting_flow(name: str, task_first: bool) -> FlowDefinition:
    flow = Flow(name, version="1")
    if task_first:
        flow.task("Prepare", "step")
    flow.wait_for_event("Approval", "approval")
    flow.task("Finish", "step")
    return flow.build()


def probe_client(url: str) -> Any:
    """The probes' own connection (a cluster client when ``url`` is a cluster node's)."""
    return connect(url)


class RustyFlowerBench(SystemBench):
    system = "RustyFlower"

    def __init__(
        self,
        url: str,
        server_pids: list[int],
        poll_s: float,
        concurrency: int = 1,
        processes: int | None = None,
        shards: int = 1,
        label_extra: str = "",
    ) -> None:
        super().__init__(url, server_pids, poll_s)
        self.concurrency = concurrency
        self.processes = processes
        self.shards = shards
        self.label_extra = label_extra
        self.client = probe_client(url)
        self.keys = Keyspace(prefix=PREFIX, shards=shards)
        self.rf = Client.connect(url, prefix=PREFIX, keys=SnapshotKeys.none(), shards=shards)
        self.workers: list[subprocess.Popen[str]] = []
        for definition in (
            chain_flow("chain10", CHAIN_STEPS),
            chain_flow("single", 1),
            waiting_flow("waiter", task_first=False),
            waiting_flow("prepared-waiter", task_first=True),
        ):
            self.rf.register(definition)

    @property
    def label(self) -> str:
        if self.processes is None:
            return f"1 worker process, concurrency={self.concurrency}{self.label_extra}"
        return (
            f"rustyflower worker --processes {self.processes} "
            f"--concurrency {self.concurrency}{self.label_extra}"
        )

    # --- workers ------------------------------------------------------------------------

    def start_workers(self) -> list[int]:
        if self.processes is not None:
            return [self._start_supervisor(self.processes)]
        worker = subprocess.Popen(
            [
                sys.executable, "-m", "bench.runner_worker",
                "--url", self.url,
                "--prefix", PREFIX,
                "--concurrency", str(self.concurrency),
                "--shards", str(self.shards),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self.workers.append(worker)
        assert worker.stdout is not None
        line = worker.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"the RustyFlower worker did not start: {line!r}")
        return [worker.pid]

    def _start_supervisor(self, processes: int) -> int:
        """``rustyflower worker --processes N``; ready once its N workers report health."""
        command = str(Path(sys.executable).parent / "rustyflower")
        worker = subprocess.Popen(
            [
                command, "worker",
                "--activities", "bench.rf_activities",
                "--processes", str(processes),
                "--concurrency", str(self.concurrency),
                "--no-scheduler",
            ],
            cwd=ROOT,
            env={
                **os.environ,
                "RUSTYFLOWER_REDIS_URL": self.url,
                "RUSTYFLOWER_PREFIX": PREFIX,
                "RUSTYFLOWER_SHARDS": str(self.shards),
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.workers.append(worker)
        deadline = time.monotonic() + 120
        while len(list(self.client.scan_iter(self.keys.worker_health_pattern()))) < processes:
            self._waited(deadline, 0.1)
        return worker.pid

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.terminate()
        for worker in self.workers:
            worker.wait(timeout=30)
        self.workers = []

    def workers_alive(self) -> bool:
        return bool(self.workers) and all(worker.poll() is None for worker in self.workers)

    def close(self) -> None:
        super().close()
        self.rf.close()
        self.client.close()

    # --- workloads ----------------------------------------------------------------------

    def finished_count(self, statuses: tuple[str, ...] = FINISHED) -> int:
        pipe = self.client.pipeline(transaction=False)
        for shard in range(self.keys.shards):
            for status in statuses:
                pipe.scard(self.keys.status_index(shard, status))
        return sum(pipe.execute())

    def submit(self, count: int, steps: int, bulk: bool) -> tuple[int, list[str]]:
        flow = "chain10" if steps == CHAIN_STEPS else "single"
        base = self.finished_count()
        if bulk:
            ids = [handle.id for handle in self.rf.start_many(flow, [0] * count, version="1")]
        else:
            ids = [self.rf.start(flow, 0, version="1").id for _ in range(count)]
        return base, ids

    def wait(
        self, submitted: tuple[int, list[str]], poll_s: float, expected: int, deadline: float
    ) -> None:
        base, ids = submitted
        if len(ids) == 1:  # one instance (L): its own status, as a client would look
            key = self.keys.instance(ids[0])
            while self.client.hget(key, "status") not in (b"succeeded", b"failed", b"cancelled"):
                self._waited(deadline, poll_s)
        else:
            while self.finished_count() < base + len(ids):
                self._waited(deadline, poll_s)
        if self.finished_count(("failed", "cancelled")):
            raise RuntimeError("some RustyFlower instances failed; the figures are void")
        for instance_id in (ids[0], ids[-1]):
            status = self.rf.status(instance_id)
            if status.status != "succeeded" or status.output != expected:
                raise RuntimeError(f"{instance_id}: {status.status} {status.output!r}")

    def _waited(self, deadline: float, poll_s: float) -> None:
        self.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError("RustyFlower instances still unfinished")
        time.sleep(poll_s)

    # --- worker memory with many waiting instances --------------------------------------

    def streams_drained(self) -> bool:
        """Every work message delivered to the worker and acknowledged by a commit."""
        for shard in range(self.keys.shards):
            for stream in self.keys.streams(shard):
                last = self.client.xinfo_stream(stream)["last-generated-id"]
                for group in self.client.xinfo_groups(stream):
                    if group["pending"] or group["last-delivered-id"] != last:
                        return False
        return True

    def running_count(self) -> int:
        return self.finished_count(("running",))

    def rss(
        self, flow: str, progress: Callable[[str], None], instances: int = RSS_INSTANCES
    ) -> dict[str, Any]:
        """Worker memory with ``instances`` instances waiting for an event."""
        try:
            worker_pid = self.start_workers()[0]
            time.sleep(1.0)
            baseline = memory_mb(worker_pid)
            began = time.perf_counter()
            for offset in range(0, instances, 2_500):
                chunk = min(2_500, instances - offset)
                self.rf.start_many(flow, list(range(offset, offset + chunk)), version="1")
                progress(f"  {flow}: {offset + chunk:,} started")
            deadline = time.monotonic() + 600
            while self.running_count() < instances or not self.streams_drained():
                self._waited(deadline, 0.05)
            settle = time.perf_counter() - began
            time.sleep(2.0)  # a few maintenance rounds (timers, reclaim) on the full store
            memory = memory_mb(worker_pid)
            waiting = self.running_count()
        finally:
            self.stop_workers()
        return {
            "flow": flow,
            "instances_waiting": waiting,
            "seconds_to_all_waiting": round(settle, 2),
            "baseline_rss_mb": baseline["VmRSS"],
            "rss_mb": memory["VmRSS"],
            "peak_rss_mb": memory["VmHWM"],
        }
