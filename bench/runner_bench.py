"""RustyFlower's Redis runner against Celery, side by side in one run on one Redis server.

Run: `.venv/bin/python -m bench.runner_bench` (add `--json` for machine-readable output).
Needs the `bench` extra for Celery: `.venv/bin/pip install -e '.[bench]'`.

One fresh redis-server (append-only, fsync every second) serves the whole run; it is
flushed between systems and configurations. Each system gets ONE worker process, started
as a subprocess (RustyFlower: bench.runner_worker; Celery: `celery worker` with each pool
in --celery-pools). Workloads:

- W1: 200 instances of a 10-step sequential chain of trivial steps (input + 1): steps/s,
  total steps over the wall time from the first start to the last completion.
- W2: 2,000 single-step flows: flows/s, measured the same way.
- L:  one 10-step instance at a time, 20 runs: p50 and p99 end-to-end latency.
- RSS (RustyFlower only): worker VmRSS with 10,000 live instances waiting for an event.

Completion is polled (RustyFlower: SCARD of the status indexes; Celery: EXISTS on its
result keys) every --poll-ms for W1/W2 and every 1 ms for L. Every configuration runs
--rounds times; the table shows medians and ranges, and the ratios compare against
Celery's best configuration per workload. Targets (issue 3): W1 and W2 >= 3x Celery,
L p50 <= 0.5x Celery, RSS <= 150 MB. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

# The flows are built, registered and started through the public face. Keyspace is the
# one internal import, for instrumentation only: the probes read the store's keys (status
# indexes, streams, an instance's hash) directly, as the Celery side reads its result keys.
from rustyflower import Flow, FlowDefinition, SnapshotKeys
from rustyflower.adapters.redis.keys import Keyspace
from rustyflower.client import Client

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "rfbench"
CHAIN_STEPS = 10
W1_INSTANCES = 200
W2_FLOWS = 2_000
L_RUNS = 20
RSS_INSTANCES = 10_000
TARGETS = {"w1": 3.0, "w2": 3.0, "l_p50": 0.5, "rss_mb": 150.0}
REFERENCE = "Celery on this machine per the issue: ~650 steps/s (W1), ~19 ms p50 (L)"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def redis_server_binary() -> str:
    found = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.path.exists(found):
        sys.exit("redis-server not found: install Debian's redis-server (apt-get install redis)")
    return found


@dataclass
class RedisServer:
    """A fresh redis-server for the whole run: append-only, fsync every second."""

    binary: str
    data_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.data_dir),
                "--appendonly", "yes",
                "--appendfsync", "everysec",
                "--save", "",
                "--daemonize", "no",
                "--logfile", str(self.data_dir / "server.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    client.close()
                    return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def version(self) -> str:
        client = redis.Redis.from_url(self.url)
        try:
            return str(client.info("server")["redis_version"])
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=15)
            self.process = None


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it (prefork children run Celery's tasks)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def cpu_seconds(pid: int, tree: bool = True) -> float:
    """User + system CPU of a process (and its live children, reaped ones included)."""
    total = 0
    for member in descendants(pid) if tree else [pid]:
        try:
            with open(f"/proc/{member}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, cutime, cstime are fields 14-17 (1-based) of /proc/PID/stat
        total += sum(int(value) for value in fields[11:15])
    return total / CLK_TCK


def self_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def memory_mb(pid: int) -> dict[str, float]:
    values: dict[str, float] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = round(int(rest.split()[0]) / 1024, 1)
    return values


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(value) for value in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


@dataclass
class CpuMeter:
    """CPU spent by the server, the worker (tree) and this client during a workload.

    It also reports how busy the rest of the machine was meanwhile (other programs), as
    a percentage of all cores: figures taken on a busy machine are not comparable.
    """

    server_pid: int
    worker_pid: int
    start: tuple[float, ...] = ()

    def sample(self) -> tuple[float, ...]:
        return (
            cpu_seconds(self.server_pid, tree=False),
            cpu_seconds(self.worker_pid),
            self_cpu_seconds(),
            machine_busy_seconds(),
            time.perf_counter(),
        )

    def begin(self) -> None:
        self.start = self.sample()

    def end(self, units: int) -> dict[str, float]:
        """CPU per unit of work (step or flow) in microseconds, by process."""
        now = self.sample()
        spent = [after - before for after, before in zip(now, self.start, strict=True)]
        redis_s, worker_s, client_s, busy_s, wall_s = spent
        other = max(0.0, busy_s - redis_s - worker_s - client_s)
        return {
            "redis_us": round(redis_s * 1e6 / units, 1),
            "worker_us": round(worker_s * 1e6 / units, 1),
            "client_us": round(client_s * 1e6 / units, 1),
            "other_programs_pct": round(100 * other / (wall_s * (os.cpu_count() or 1)), 1),
        }


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    rank = fraction * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(samples_s: list[float]) -> dict[str, Any]:
    millis = [sample * 1000 for sample in samples_s]
    return {
        "p50_ms": round(statistics.median(millis), 2),
        "p99_ms": round(percentile(millis, 0.99), 2),
        "min_ms": round(min(millis), 2),
        "max_ms": round(max(millis), 2),
    }


# --- RustyFlower -----------------------------------------------------------------------------


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


class RustyFlowerBench:
    def __init__(
        self, server: RedisServer, concurrency: int, poll_s: float, bulk_w2: bool = True
    ) -> None:
        self.bulk_w2 = bulk_w2
        self.server = server
        self.concurrency = concurrency
        self.poll_s = poll_s
        self.client = redis.Redis.from_url(server.url)  # the probes' own connection
        self.keys = Keyspace(prefix=PREFIX)
        self.rf = Client.connect(server.url, prefix=PREFIX, keys=SnapshotKeys.none())
        self.worker: subprocess.Popen[str] | None = None
        self.last_start_loop_s = 0.0
        for definition in (
            chain_flow("chain10", CHAIN_STEPS),
            chain_flow("single", 1),
            waiting_flow("waiter", task_first=False),
            waiting_flow("prepared-waiter", task_first=True),
        ):
            self.rf.register(definition)

    @property
    def label(self) -> str:
        return f"1 worker process, concurrency={self.concurrency}"

    def start_worker(self) -> int:
        self.worker = subprocess.Popen(
            [
                sys.executable, "-m", "bench.runner_worker",
                "--url", self.server.url,
                "--prefix", PREFIX,
                "--concurrency", str(self.concurrency),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert self.worker.stdout is not None
        line = self.worker.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"the RustyFlower worker did not start: {line!r}")
        return self.worker.pid

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.terminate()
            self.worker.wait(timeout=30)
            self.worker = None

    def finished_count(self) -> int:
        shard_keys = [
            self.keys.status_index(shard, status)
            for shard in range(self.keys.shards)
            for status in ("succeeded", "failed", "cancelled")
        ]
        pipe = self.client.pipeline(transaction=False)
        for key in shard_keys:
            pipe.scard(key)
        return sum(pipe.execute())

    def failed_count(self) -> int:
        return sum(
            int(self.client.scard(self.keys.status_index(shard, status)))
            for shard in range(self.keys.shards)
            for status in ("failed", "cancelled")
        )

    def batch(self, flow: str, count: int, bulk: bool = False) -> tuple[float, list[str]]:
        """Start ``count`` instances; seconds from the first start to the last completion.

        ``bulk`` uses the bulk start API (``Client.start_many``, one round trip per
        chunk); otherwise ``Client.start`` one after another.
        """
        base = self.finished_count()
        began = time.perf_counter()
        if bulk:
            ids = [handle.id for handle in self.rf.start_many(flow, [0] * count, version="1")]
        else:
            ids = [self.rf.start(flow, 0, version="1").id for _ in range(count)]
        self.last_start_loop_s = time.perf_counter() - began
        while self.finished_count() < base + count:
            self.still_running(began)
            time.sleep(self.poll_s)
        return time.perf_counter() - began, ids

    def check(self, ids: list[str], expected: int) -> None:
        if self.failed_count():
            raise RuntimeError("some RustyFlower instances failed; the figures are void")
        for instance_id in (ids[0], ids[-1]):
            status = self.rf.status(instance_id)
            if status.status != "succeeded" or status.output != expected:
                raise RuntimeError(f"{instance_id}: {status.status} {status.output!r}")

    def one_latency(self) -> float:
        began = time.perf_counter()
        instance_id = self.rf.start("chain10", 0, version="1").id
        key = self.keys.instance(instance_id)
        while self.client.hget(key, "status") not in (b"succeeded", b"failed", b"cancelled"):
            self.still_running(began)
            time.sleep(0.001)
        elapsed = time.perf_counter() - began
        self.check([instance_id], CHAIN_STEPS)
        return elapsed

    def run(self) -> dict[str, Any]:
        try:
            worker_pid = self.start_worker()
            meter = CpuMeter(self.server.process.pid, worker_pid)  # type: ignore[union-attr]
            self.batch("chain10", 5)  # warm up: imports, caches, scripts loaded
            meter.begin()
            seconds, ids = self.batch("chain10", W1_INSTANCES)
            w1_cpu = meter.end(W1_INSTANCES * CHAIN_STEPS)
            w1_starts = self.last_start_loop_s
            self.check(ids, CHAIN_STEPS)
            meter.begin()
            w2_seconds, ids = self.batch("single", W2_FLOWS, bulk=self.bulk_w2)
            w2_cpu = meter.end(W2_FLOWS)
            w2_starts = self.last_start_loop_s
            self.check(ids, 1)
            latencies = [self.one_latency() for _ in range(L_RUNS)]
            worker_memory = memory_mb(worker_pid)
        finally:
            self.stop_worker()
        return {
            "configuration": self.label,
            "w1_steps_per_s": round(W1_INSTANCES * CHAIN_STEPS / seconds),
            "w1_seconds": round(seconds, 3),
            "w1_start_loop_seconds": round(w1_starts, 3),
            "w1_cpu_per_step": w1_cpu,
            "w2_flows_per_s": round(W2_FLOWS / w2_seconds),
            "w2_seconds": round(w2_seconds, 3),
            "w2_start_loop_seconds": round(w2_starts, 3),
            "w2_cpu_per_flow": w2_cpu,
            "latency": latency_summary(latencies),
            "worker_memory_mb_after": worker_memory,
        }

    def still_running(self, began: float, timeout: float = 600) -> None:
        """Fail instead of waiting forever when the worker died or nothing finishes."""
        if self.worker is None or self.worker.poll() is not None:
            raise RuntimeError("the RustyFlower worker process stopped during the bench")
        if time.perf_counter() - began > timeout:
            raise RuntimeError(f"RustyFlower did not finish within {timeout} s")

    def streams_drained(self) -> bool:
        """Every work message delivered to the worker and acknowledged by a commit."""
        for shard in range(self.keys.shards):
            for stream in self.keys.streams(shard):
                last = self.client.xinfo_stream(stream)["last-generated-id"]
                for group in self.client.xinfo_groups(stream):
                    if group["pending"] or group["last-delivered-id"] != last:
                        return False
        return True

    def rss(self, flow: str, progress: Callable[[str], None]) -> dict[str, Any]:
        """Worker memory with RSS_INSTANCES instances waiting for an event."""
        try:
            worker_pid = self.start_worker()
            time.sleep(1.0)
            baseline = memory_mb(worker_pid)
            running = self.keys.status_index(0, "running")
            began = time.perf_counter()
            for index in range(RSS_INSTANCES):
                self.rf.start(flow, index, version="1")
                if index and index % 2_500 == 0:
                    progress(f"  {flow}: {index:,} started")
            while int(self.client.scard(running)) < RSS_INSTANCES or not self.streams_drained():
                self.still_running(began)
                time.sleep(0.05)
            settle = time.perf_counter() - began
            time.sleep(2.0)  # a few maintenance rounds (timers, reclaim) on the full store
            memory = memory_mb(worker_pid)
            waiting = int(self.client.scard(running))
        finally:
            self.stop_worker()
        return {
            "flow": flow,
            "instances_waiting": waiting,
            "seconds_to_all_waiting": round(settle, 2),
            "baseline_rss_mb": baseline["VmRSS"],
            "rss_mb": memory["VmRSS"],
            "peak_rss_mb": memory["VmHWM"],
        }

    def close(self) -> None:
        self.stop_worker()
        self.rf.close()
        self.client.close()


# --- Celery ----------------------------------------------------------------------------------


def celery_missing() -> bool:
    return importlib.util.find_spec("celery") is None


class CeleryBench:
    """Celery with its Redis broker and result backend, measured like RustyFlower.

    Completion is read from the result backend's keys (``celery-task-meta-<id>``, where
    ``AsyncResult.get()`` reads it too) at the same polling interval as RustyFlower's
    status index. ``get()`` itself waits on a pub/sub subscription, and Celery 5.7's
    subscription handling hung one of our runs for good (see the Celery issues on
    ``AsyncResult.__del__`` and pub/sub deadlocks), so this client does not subscribe:
    that only removes work from Celery's side of the comparison.
    """

    def __init__(
        self, server: RedisServer, pool: str, concurrency: int, poll_s: float, bulk_w2: bool = True
    ) -> None:
        self.bulk_w2 = bulk_w2
        os.environ["BENCH_REDIS_URL"] = server.url
        from bench import celery_app  # noqa: PLC0415 - needs the URL in the environment

        self.server = server
        self.module = celery_app
        self.backend = celery_app.app.backend
        self.backend.on_task_call = lambda producer, task_id: None  # no pub/sub subscription
        self.client = redis.Redis.from_url(server.url)
        self.pool = pool
        self.concurrency = concurrency
        self.poll_s = poll_s
        self.worker: subprocess.Popen[bytes] | None = None
        # the worker's own output (warnings such as running as root) goes to the data dir
        self.log = open(server.data_dir / f"celery-{pool}.log", "ab")  # noqa: SIM115

    @property
    def label(self) -> str:
        return f"1 worker process, --pool={self.pool} --concurrency={self.concurrency}"

    def start_worker(self) -> int:
        self.worker = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker",
                f"--pool={self.pool}", f"--concurrency={self.concurrency}",
                "--loglevel=WARNING", f"--hostname=bench-{self.pool}@%h",
            ],
            cwd=ROOT,
            env={**os.environ, "BENCH_REDIS_URL": self.server.url},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        # ready when it has run a task
        try:
            answers = self.wait([self.module.step.delay(0).id], 0.05, timeout=120)
        except TimeoutError as error:
            raise RuntimeError(f"the Celery worker did not start; see {self.log.name}") from error
        if answers != [1]:
            raise RuntimeError(f"the Celery worker answered {answers!r} instead of [1]")
        return self.worker.pid

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.terminate()
            try:
                self.worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()
            self.worker = None

    def close(self) -> None:
        self.stop_worker()
        self.log.close()
        self.client.close()

    def wait(self, task_ids: list[str], poll_s: float, timeout: float = 600) -> list[Any]:
        """Wait until every task's result is stored; return the results in order."""
        keys = [self.backend.get_key_for_task(task_id) for task_id in task_ids]
        deadline = time.monotonic() + timeout
        done = 0
        while done < len(keys):
            pipe = self.client.pipeline(transaction=False)
            for key in keys[done : done + 256]:
                pipe.exists(key)
            for stored in pipe.execute():
                if not stored:
                    break
                done += 1
            else:
                continue  # the whole window was there: look further at once
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(keys) - done} Celery results still missing")
            time.sleep(poll_s)
        results = []
        for first in range(0, len(keys), 500):
            for raw in self.client.mget(keys[first : first + 500]):
                meta = self.backend.decode_result(raw)
                if meta["status"] != "SUCCESS":
                    raise RuntimeError(f"a Celery task ended {meta['status']}: {meta['result']}")
                results.append(meta["result"])
        return results

    def chain(self) -> Any:
        from celery import chain  # noqa: PLC0415

        step = self.module.step
        return chain(step.s(0), *(step.s() for _ in range(CHAIN_STEPS - 1)))

    def run(self) -> dict[str, Any]:
        step = self.module.step
        try:
            worker_pid = self.start_worker()
            meter = CpuMeter(self.server.process.pid, worker_pid)  # type: ignore[union-attr]
            self.wait([self.chain().apply_async().id for _ in range(5)], self.poll_s)  # warm up
            meter.begin()
            began = time.perf_counter()
            ids = [self.chain().apply_async().id for _ in range(W1_INSTANCES)]
            w1_starts = time.perf_counter() - began
            outputs = self.wait(ids, self.poll_s)
            seconds = time.perf_counter() - began
            w1_cpu = meter.end(W1_INSTANCES * CHAIN_STEPS)
            if set(outputs) != {CHAIN_STEPS}:
                raise RuntimeError(f"Celery chains returned {set(outputs)}")
            meter.begin()
            began = time.perf_counter()
            if self.bulk_w2:  # Celery's bulk submission: one group of W2_FLOWS tasks
                from celery import group  # noqa: PLC0415

                group_result = group(step.s(0) for _ in range(W2_FLOWS)).apply_async()
                ids = [result.id for result in group_result.results]
            else:
                ids = [step.delay(0).id for _ in range(W2_FLOWS)]
            w2_starts = time.perf_counter() - began
            outputs = self.wait(ids, self.poll_s)
            w2_seconds = time.perf_counter() - began
            w2_cpu = meter.end(W2_FLOWS)
            if set(outputs) != {1}:
                raise RuntimeError(f"Celery tasks returned {set(outputs)}")
            latencies = []
            for _ in range(L_RUNS):
                began = time.perf_counter()
                output = self.wait([self.chain().apply_async().id], 0.001, timeout=60)
                latencies.append(time.perf_counter() - began)
                if output != [CHAIN_STEPS]:
                    raise RuntimeError(f"a Celery chain returned {output!r}")
        finally:
            self.close()
        return {
            "configuration": self.label,
            "w1_steps_per_s": round(W1_INSTANCES * CHAIN_STEPS / seconds),
            "w1_seconds": round(seconds, 3),
            "w1_start_loop_seconds": round(w1_starts, 3),
            "w1_cpu_per_step": w1_cpu,
            "w2_flows_per_s": round(W2_FLOWS / w2_seconds),
            "w2_seconds": round(w2_seconds, 3),
            "w2_start_loop_seconds": round(w2_starts, 3),
            "w2_cpu_per_flow": w2_cpu,
            "latency": latency_summary(latencies),
        }


# --- the run ---------------------------------------------------------------------------------


def parse_pools(text: str) -> list[tuple[str, int]]:
    pools = []
    for item in text.split(","):
        pool, _, concurrency = item.strip().partition(":")
        pools.append((pool, int(concurrency or 1)))
    return pools


@contextlib.contextmanager
def redis_server(keep: bool) -> Iterator[RedisServer]:
    directory = Path(tempfile.mkdtemp(prefix="rf-bench-redis-"))
    server = RedisServer(redis_server_binary(), directory)
    server.start()
    failed = True
    try:
        yield server
        failed = False
    finally:
        server.stop()
        if keep or failed:
            print(f"Redis data and worker logs kept in {directory}", file=sys.stderr)
        else:
            shutil.rmtree(directory, ignore_errors=True)


def flushall(server: RedisServer) -> None:
    client = redis.Redis.from_url(server.url)
    try:
        client.flushall()
    finally:
        client.close()


def run(args: argparse.Namespace, progress: Callable[[str], None]) -> dict[str, Any]:
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()}",
        "rounds": args.rounds,
        "workloads": {
            "w1": f"{W1_INSTANCES} instances x {CHAIN_STEPS}-step chain, steps/s",
            "w2": f"{W2_FLOWS} single-step flows, flows/s",
            "l": f"one {CHAIN_STEPS}-step instance at a time, {L_RUNS} runs",
            "rss": f"worker RSS with {RSS_INSTANCES:,} instances waiting for an event",
        },
    }
    rf_rows: list[dict[str, Any]] = []
    celery_rows: list[dict[str, Any]] = []
    with redis_server(args.keep_data) as server:
        report["redis"] = f"redis-server {server.version()} (appendonly yes, appendfsync everysec)"

        def run_rustyflower(round_index: int) -> None:
            for concurrency in args.rf_concurrency:
                flushall(server)
                progress(f"[round {round_index + 1}] RustyFlower, concurrency={concurrency} ...")
                bench = RustyFlowerBench(
                    server, concurrency, args.poll_ms / 1000, args.w2_start == "bulk"
                )
                try:
                    rf_rows.append({"round": round_index, **bench.run()})
                finally:
                    bench.close()

        def run_celery(round_index: int) -> None:
            for pool, concurrency in args.celery_pools:
                flushall(server)
                progress(
                    f"[round {round_index + 1}] Celery, --pool={pool} "
                    f"--concurrency={concurrency} ..."
                )
                row = CeleryBench(
                    server, pool, concurrency, args.poll_ms / 1000, args.w2_start == "bulk"
                ).run()
                celery_rows.append({"round": round_index, **row})

        for round_index in range(args.rounds):
            rf_first = args.order == "rf-first" or (
                args.order == "alternate" and round_index % 2 == 0
            )
            order = [run_rustyflower, run_celery] if rf_first else [run_celery, run_rustyflower]
            for system in order:
                if system is run_celery and args.skip_celery:
                    continue
                system(round_index)

        if not args.skip_rss:
            rss_rows = []
            for flow in ("waiter", "prepared-waiter"):
                flushall(server)
                progress(f"RustyFlower worker RSS, {RSS_INSTANCES:,} waiting ({flow}) ...")
                bench = RustyFlowerBench(server, args.rf_concurrency[0], args.poll_ms / 1000)
                try:
                    rss_rows.append(bench.rss(flow, progress))
                finally:
                    bench.close()
            report["rss"] = rss_rows

    report["rustyflower"] = aggregate(rf_rows)
    report["celery"] = aggregate(celery_rows)
    report["summary"] = summarise(rf_rows, celery_rows, report.get("rss", []))
    report["rustyflower_runs"] = rf_rows
    report["celery_runs"] = celery_rows
    return report


def _w1(row: dict[str, Any]) -> float:
    return float(row["w1_steps_per_s"])


def _w2(row: dict[str, Any]) -> float:
    return float(row["w2_flows_per_s"])


def _l50(row: dict[str, Any]) -> float:
    return float(row["latency"]["p50_ms"])


def _l99(row: dict[str, Any]) -> float:
    return float(row["latency"]["p99_ms"])


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per configuration: the median over the rounds, with the lowest and highest."""
    result = []
    for configuration in dict.fromkeys(row["configuration"] for row in rows):
        mine = [row for row in rows if row["configuration"] == configuration]
        entry: dict[str, Any] = {"configuration": configuration, "rounds": len(mine)}
        for name, span, metric in (
            ("w1_steps_per_s", "w1_range", _w1),
            ("w2_flows_per_s", "w2_range", _w2),
        ):
            values = [metric(row) for row in mine]
            entry[name] = round(statistics.median(values))
            entry[span] = [round(min(values)), round(max(values))]
        for name, span, metric in (
            ("l_p50_ms", "l_p50_range", _l50),
            ("l_p99_ms", "l_p99_range", _l99),
        ):
            values = [metric(row) for row in mine]
            entry[name] = round(statistics.median(values), 2)
            entry[span] = [min(values), max(values)]
        for name in ("w1_cpu_per_step", "w2_cpu_per_flow"):
            entry[name] = {
                key: round(statistics.median(row[name][key] for row in mine), 1)
                for key in mine[0][name]
            }
        entry["w2_start_loop_share"] = round(
            statistics.median(row["w2_start_loop_seconds"] / row["w2_seconds"] for row in mine), 2
        )
        result.append(entry)
    return result


def _best(rows: list[dict[str, Any]], key: str, high: bool) -> dict[str, Any]:
    return (max if high else min)(rows, key=lambda row: row[key])


def summarise(
    rf_rows: list[dict[str, Any]], celery_rows: list[dict[str, Any]], rss: list[dict[str, Any]]
) -> dict[str, Any]:
    """Each system's best configuration per workload (by median), the ratios, the targets.

    The ratios are taken against Celery's best configuration for each workload, the
    hardest comparison for RustyFlower. The per-round ratios show the spread.
    """

    def pick(rows: list[dict[str, Any]]) -> dict[str, Any]:
        table = aggregate(rows)
        if not table:
            return {}
        w1 = _best(table, "w1_steps_per_s", high=True)
        w2 = _best(table, "w2_flows_per_s", high=True)
        lat = _best(table, "l_p50_ms", high=False)
        return {
            "w1_steps_per_s": w1["w1_steps_per_s"],
            "w1_configuration": w1["configuration"],
            "w2_flows_per_s": w2["w2_flows_per_s"],
            "w2_configuration": w2["configuration"],
            "l_p50_ms": lat["l_p50_ms"],
            "l_p99_ms": lat["l_p99_ms"],
            "l_configuration": lat["configuration"],
        }

    rf, celery = pick(rf_rows), pick(celery_rows)
    summary: dict[str, Any] = {"rustyflower": rf, "celery": celery, "targets_met": {}}
    if rf and celery:
        ratios = {
            "w1": round(rf["w1_steps_per_s"] / celery["w1_steps_per_s"], 2),
            "w2": round(rf["w2_flows_per_s"] / celery["w2_flows_per_s"], 2),
            "l_p50": round(rf["l_p50_ms"] / celery["l_p50_ms"], 2),
        }
        summary["ratios"] = ratios
        per_round: dict[str, list[float]] = {"w1": [], "w2": [], "l_p50": []}
        for round_index in sorted({row["round"] for row in rf_rows}):
            mine = [row for row in rf_rows if row["round"] == round_index]
            theirs = [row for row in celery_rows if row["round"] == round_index]
            if not mine or not theirs:
                continue
            per_round["w1"].append(round(max(map(_w1, mine)) / max(map(_w1, theirs)), 2))
            per_round["w2"].append(round(max(map(_w2, mine)) / max(map(_w2, theirs)), 2))
            per_round["l_p50"].append(round(min(map(_l50, mine)) / min(map(_l50, theirs)), 2))
        summary["ratios_per_round"] = per_round
        summary["targets_met"] = {
            "w1": ratios["w1"] >= TARGETS["w1"],
            "w2": ratios["w2"] >= TARGETS["w2"],
            "l_p50": ratios["l_p50"] <= TARGETS["l_p50"],
        }
    if rss:
        worst = max(row["rss_mb"] for row in rss)
        summary["rss_mb"] = worst
        summary["targets_met"]["rss"] = worst <= TARGETS["rss_mb"]
    return summary


def _span(low: float, high: float, digits: int = 0) -> str:
    return f"{low:,.{digits}f}-{high:,.{digits}f}"


def print_report(report: dict[str, Any]) -> None:
    load = ", ".join(str(value) for value in report["load_average_at_start"])
    print(f"{report['date']} · {report['machine']} · load average at start {load}")
    print(f"{report['redis']} · median of {report['rounds']} round(s), [lowest-highest]")
    systems = (("RustyFlower", report["rustyflower"]), ("Celery", report["celery"]))
    width = 56
    header = (
        f"{'system: configuration':<{width}} {'W1 steps/s':>20} {'W2 flows/s':>20} "
        f"{'L p50 ms':>18} {'L p99 ms':>9}"
    )
    print(header)
    print("-" * len(header))
    for system, table in systems:
        for row in table:
            w1 = f"{row['w1_steps_per_s']:,} [{_span(*row['w1_range'])}]"
            w2 = f"{row['w2_flows_per_s']:,} [{_span(*row['w2_range'])}]"
            l50 = f"{row['l_p50_ms']:.1f} [{_span(*row['l_p50_range'], digits=1)}]"
            print(
                f"{system + ': ' + row['configuration']:<{width}} {w1:>20} {w2:>20} "
                f"{l50:>18} {row['l_p99_ms']:>9.1f}"
            )
    print()
    print("CPU per step (W1) and per flow (W2), microseconds: redis-server / worker / client;")
    print("'other' is how busy other programs kept the machine meanwhile (% of all cores):")
    for system, table in systems:
        for row in table:
            w1, w2 = row["w1_cpu_per_step"], row["w2_cpu_per_flow"]
            print(
                f"  {system + ': ' + row['configuration']:<{width}} "
                f"W1 {w1['redis_us']:>4.0f} / {w1['worker_us']:>5.0f} / {w1['client_us']:>4.0f} "
                f"other {w1['other_programs_pct']:>3.0f}%   "
                f"W2 {w2['redis_us']:>4.0f} / {w2['worker_us']:>5.0f} / {w2['client_us']:>4.0f} "
                f"other {w2['other_programs_pct']:>3.0f}%   "
                f"W2 starting: {100 * row['w2_start_loop_share']:.0f}% of the wall time"
            )
    summary = report["summary"]
    if "ratios" in summary:
        ratios, met, celery = summary["ratios"], summary["targets_met"], summary["celery"]
        spread = summary["ratios_per_round"]
        print()
        print("Ratios against Celery's best configuration for each workload (medians):")
        for key, label, target, relation in (
            ("w1", "W1 RF/Celery   ", TARGETS["w1"], ">="),
            ("w2", "W2 RF/Celery   ", TARGETS["w2"], ">="),
            ("l_p50", "L p50 RF/Celery", TARGETS["l_p50"], "<="),
        ):
            where = celery[f"{key.split('_')[0]}_configuration"]
            rounds = ", ".join(f"{value:.2f}" for value in spread[key])
            print(
                f"  {label} {ratios[key]:>5.2f}x  target {relation} {target}x: "
                f"{'met' if met[key] else 'MISSED'}  (per round: {rounds}; Celery: {where})"
            )
        print(f"  ({REFERENCE})")
    if report.get("rss"):
        print()
        print(f"RustyFlower worker RSS with {RSS_INSTANCES:,} waiting instances:")
        for row in report["rss"]:
            print(
                f"  flow {row['flow']:<16} {row['instances_waiting']:>6,} waiting: "
                f"VmRSS {row['rss_mb']:.1f} MB (peak {row['peak_rss_mb']:.1f} MB, "
                f"idle before {row['baseline_rss_mb']:.1f} MB)"
            )
        met = summary["targets_met"]["rss"]
        print(f"  target <= {TARGETS['rss_mb']:.0f} MB: {'met' if met else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--rounds", type=int, default=3, help="run every configuration this many times (3)"
    )
    parser.add_argument(
        "--rf-concurrency",
        type=lambda text: [int(item) for item in text.split(",")],
        default=[1],
        help="RustyFlower worker executor threads; a comma list runs each (default 1)",
    )
    parser.add_argument(
        "--celery-pools",
        type=parse_pools,
        default=parse_pools("solo:1,prefork:1,threads:4"),
        help="Celery pool:concurrency list, each run in turn (default solo:1,prefork:1,threads:4)",
    )
    parser.add_argument(
        "--poll-ms", type=float, default=10.0, help="completion polling for W1 and W2 (10)"
    )
    parser.add_argument(
        "--w2-start",
        choices=("bulk", "one-by-one"),
        default="bulk",
        help="W2 submission: each system's bulk API (RustyFlower start_many, a Celery group; "
        "default) or one start call per flow on both sides",
    )
    parser.add_argument(
        "--order",
        choices=["alternate", "rf-first", "celery-first"],
        default="alternate",
        help="which system runs first in each round (default: alternate between rounds)",
    )
    parser.add_argument("--skip-celery", action="store_true", help="RustyFlower only")
    parser.add_argument("--skip-rss", action="store_true", help="leave out the RSS measure")
    parser.add_argument("--keep-data", action="store_true", help="keep the Redis data directory")
    args = parser.parse_args()
    if not args.skip_celery and celery_missing():
        sys.exit(
            "celery is not installed: `.venv/bin/pip install -e '.[bench]'` "
            "(or pass --skip-celery to measure RustyFlower alone)"
        )

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    report = run(args, progress)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)


if __name__ == "__main__":
    main()
