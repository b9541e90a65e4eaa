"""What one step costs the worker, and one start the client: CPU time and Redis round trips.

Run: `.venv/bin/python -m bench.step_cost` (`--profile out.pstats` for a cProfile of the
batched steps, with `--profile-batch 1` of the steps one at a time;
`--json`). One fresh redis-server; everything else runs in this one process, without
threads, so the figures are this process's own CPU time (``time.process_time``), which
other programs on a shared machine disturb far less than wall time, and the round trips
are counted exactly (every packed send to Redis is one; a pipeline is one).

- start: ``Client.start`` of a 10-step chain, one after another (what W2 one-by-one costs
  the client per flow, and W1 per chain).
- step, batched: the worker's executor round (``_consume_round``) over 200 chains
  started in bulk, as W1 runs them: CPU and round trips per step.
- step, one at a time: the same with batches of one message, as L runs them.
- flow, start / finish: W2's path for one single-step flow, start to finish. ``start``:
  ``Client.start`` one after another. ``finish``: a worker with its own store and
  connection (as a worker process has: no snapshot the client left in a shared cache)
  runs each flow's step and finishes it, with batches of up to 16 (W2 queued ahead) and
  of one. Each row also gives redis-server's CPU per flow (``/proc/PID/stat``, so
  whole clock ticks: read it over many flows) and the commands the server ran per flow
  (``INFO commandstats``, scripts' inner calls included).

This looks inside the worker (it drives its executor round directly): the internal
imports below are labelled; bench/README.md lists them.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import time
from collections.abc import Callable
from typing import Any

import redis
from redis.connection import Connection

from bench.harness import cpu_seconds, load_average, redis_server
from bench.rf_system import PREFIX, chain_flow
from rustyflower import ActivityRegistry, SnapshotKeys

# internal: the worker's executor round itself is what is measured
from rustyflower.adapters.redis.connection import connect
from rustyflower.adapters.redis.store import RedisStore
from rustyflower.adapters.redis.worker import Worker, WorkerOptions
from rustyflower.client import Client

CHAINS = 200
STEPS = 10
STARTS = 1_000
FLOWS = 2_000


class RoundTrips:
    """Counts packed sends to Redis (one per command or per pipeline) in this process."""

    def __init__(self) -> None:
        self.count = 0
        self._original = Connection.send_packed_command

        def counted(connection: Connection, command: Any, check_health: bool = True) -> None:
            self.count += 1
            self._original(connection, command, check_health)

        Connection.send_packed_command = counted  # type: ignore[method-assign]


def step(value: int) -> int:
    return value + 1


def measure(action: Callable[[], Any], trips: RoundTrips) -> tuple[float, int]:
    cpu, sent = time.process_time(), trips.count
    action()
    return time.process_time() - cpu, trips.count - sent


class ServerMeter:
    """redis-server's CPU (its /proc ticks) and the commands it ran, between two reads."""

    def __init__(self, pid: int, probe: redis.Redis) -> None:
        self.pid = pid
        self.probe = probe
        self._cpu = 0.0
        self._calls: dict[str, int] = {}

    def _commands(self) -> dict[str, int]:
        stats: dict[str, Any] = self.probe.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()}

    def begin(self) -> None:
        self._calls = self._commands()
        self._cpu = cpu_seconds(self.pid, tree=False)

    def end(self, units: int) -> dict[str, Any]:
        cpu = cpu_seconds(self.pid, tree=False) - self._cpu
        calls = self._commands()
        # the meter's own INFO calls are not the workload's
        ran = {
            name: round((count - self._calls.get(name, 0)) / units, 2)
            for name, count in sorted(calls.items())
            if name != "info" and count > self._calls.get(name, 0)
        }
        return {"redis_cpu_us": round(cpu * 1e6 / units, 1), "redis_commands": ran}


def single_step_flow(
    client: Client,
    url: str,
    activities: ActivityRegistry,
    trips: RoundTrips,
    server: ServerMeter,
) -> dict[str, Any]:
    """W2's path for single-step flows: the client's starts, then the worker's finishes."""
    client.register(chain_flow("single", 1))
    store = RedisStore(connect(url), client._store.keys, client._store.snapshot_keys)
    worker = Worker(store, activities, WorkerOptions(concurrency=1, block_ms=1, name="flow-cost"))
    probe = server.probe
    succeeded = worker.keys.status_index(0, "succeeded")
    report: dict[str, Any] = {}

    def starts() -> None:
        for _ in range(FLOWS):
            client.start("single", 0, version="1")

    server.begin()
    cpu, sent = measure(starts, trips)
    report["flow_start"] = {
        "cpu_us": round(cpu * 1e6 / FLOWS, 1),
        "round_trips": sent / FLOWS,
        **server.end(FLOWS),
    }
    for label, batch in (("flow_finish_batched", 16), ("flow_finish_one_at_a_time", 1)):
        if label != "flow_finish_batched":
            starts()  # the first batch of flows was started (and measured) above
        worker.options.batch_size = batch
        target = int(probe.scard(succeeded)) + FLOWS
        total_cpu, total_trips = 0.0, 0
        server.begin()
        while int(probe.scard(succeeded)) < target:
            cpu, sent = measure(lambda: worker._consume_round("flow-cost-0", 0), trips)
            total_cpu += cpu
            total_trips += sent
        server_side = server.end(FLOWS)
        # the probe's SCARD after each round is the bench's, not the worker's (its few
        # microseconds stay in redis-server's CPU)
        server_side["redis_commands"].pop("scard", None)
        report[label] = {
            "cpu_us": round(total_cpu * 1e6 / FLOWS, 1),
            "round_trips": round(total_trips / FLOWS, 3),
            **server_side,
        }
    store.client.close()
    return report


def run(args: argparse.Namespace) -> dict[str, Any]:
    trips = RoundTrips()
    profile = cProfile.Profile() if args.profile else None
    report: dict[str, Any] = {"load_average_at_start": load_average()}
    with redis_server(keep=False) as server:
        client = Client.connect(server.url, prefix=PREFIX, keys=SnapshotKeys.none())
        client.register(chain_flow("chain10", STEPS))
        probe = redis.Redis.from_url(server.url)
        activities = ActivityRegistry()
        activities.register(step, name="step")
        worker = Worker(
            client._store,  # internal: the store the public client holds
            activities,
            WorkerOptions(concurrency=1, block_ms=1, name="step-cost"),
        )
        worker.store.ensure_groups()
        keys = worker.keys

        def finished() -> int:
            return int(probe.scard(keys.status_index(0, "succeeded")))

        def starts() -> None:
            for _ in range(STARTS):
                client.start("chain10", 0, version="1")

        cpu, sent = measure(starts, trips)
        report["start"] = {"cpu_us": round(cpu * 1e6 / STARTS, 1), "round_trips": sent / STARTS}
        probe.flushall()
        worker.store.ensure_groups()

        for label, batch in (("step_batched", 16), ("step_one_at_a_time", 1)):
            worker.options.batch_size = batch
            client.start_many("chain10", [0] * CHAINS, version="1")
            target = finished() + CHAINS
            total_cpu, total_trips = 0.0, 0
            if profile is not None and batch == args.profile_batch:
                profile.enable()
            while True:
                cpu, sent = measure(lambda: worker._consume_round("step-cost-0", 0), trips)
                total_cpu += cpu
                total_trips += sent
                if finished() >= target:
                    break
            if profile is not None and batch == args.profile_batch:
                profile.disable()
            steps = CHAINS * STEPS
            report[label] = {
                "cpu_us": round(total_cpu * 1e6 / steps, 1),
                "round_trips": round(total_trips / steps, 3),
            }
        probe.flushall()
        worker.store.ensure_groups()
        assert server.process is not None
        report.update(
            single_step_flow(
                client, server.url, activities, trips, ServerMeter(server.process.pid, probe)
            )
        )
        probe.close()
        client.close()
    report["load_average_at_end"] = load_average()
    if profile is not None:
        profile.dump_stats(args.profile)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--profile", help="write a cProfile of the batched steps here")
    parser.add_argument(
        "--profile-batch",
        type=int,
        choices=(16, 1),
        default=16,
        help="profile the steps taken 16 at a time (W1) or one at a time (L)",
    )
    args = parser.parse_args()
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"load average {report['load_average_at_start']} -> {report['load_average_at_end']}")
    for label in ROWS:
        row = report[label]
        line = f"  {label:<26} {row['cpu_us']:>7.1f} us CPU  {row['round_trips']:>6.3f} round trips"
        if "redis_cpu_us" in row:
            ran = row["redis_commands"].items()
            commands = ", ".join(f"{name} {count:g}" for name, count in ran)
            line += f"  redis-server {row['redis_cpu_us']:>6.1f} us ({commands})"
        print(line)


ROWS = (
    "start",
    "step_batched",
    "step_one_at_a_time",
    "flow_start",
    "flow_finish_batched",
    "flow_finish_one_at_a_time",
)


if __name__ == "__main__":
    main()
