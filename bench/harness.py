"""What every bench here shares: a fresh redis-server, CPU and memory meters, percentiles.

Nothing here knows a workflow system: bench/runner_bench.py and its peers (bench/peer_*.py)
measure through these, so every system is measured the same way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
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
    persistence: bool = True

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
                "--appendonly", "yes" if self.persistence else "no",
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
    """CPU spent by the server(s), the worker processes (trees) and this client meanwhile.

    It also reports how busy the rest of the machine was meanwhile (other programs), as
    a percentage of all cores: figures taken on a busy machine are not comparable.
    """

    server_pids: list[int]
    worker_pids: list[int]
    start: tuple[float, ...] = ()

    def sample(self) -> tuple[float, ...]:
        return (
            sum(cpu_seconds(pid, tree=False) for pid in self.server_pids),
            sum(cpu_seconds(pid) for pid in self.worker_pids),
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


@contextlib.contextmanager
def redis_server(keep: bool, persistence: bool = True) -> Iterator[RedisServer]:
    """One fresh redis-server for a whole run; its directory goes unless ``keep`` or failure.

    ``persistence`` False: no append-only file (for benches that measure memory).
    """
    directory = Path(tempfile.mkdtemp(prefix="rf-bench-redis-"))
    server = RedisServer(redis_server_binary(), directory, persistence=persistence)
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


def flushall(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.flushall()
    finally:
        client.close()


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]
