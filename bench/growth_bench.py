"""How the cost of one transition grows with the work: history, data size, Map width, and
what many live instances cost (issue 13, "cost as work grows").

Run: `.venv/bin/python -m bench.growth_bench` (`--json`; `--live 10000,100000,1000000`
for the live-instance rows, `--skip-live`, `--map-widths 100,10000`).

One fresh redis-server (no persistence: memory is measured). The transitions are driven
in this process through the store's own path (``Conductor.apply``: load, advance,
encode, sign, one compare-and-set commit), feeding each pending activity its result, so
the figures are the runner's cost per transition without a worker's reads: this
process's CPU (``time.process_time``) and the server's CPU per transition, the snapshot's
size and the server's memory.

- history: one instance loops (a Choice back-edge around one task) 10,000 times; cost
  per transition in windows at 100, 1,000 and 10,000 stored history entries.
- data: a 10-step chain whose document carries a 1 KB, 100 KB or 1 MB string.
- Map width: a Map over 100 or 10,000 items (one task each), all at once and with
  ``max_concurrency`` 40; the cost of the transition that starts them and of each item's
  completion (the first 200 of a wide Map one at a time; of a second instance, sixteen
  at a time as a worker's batch applies them: one chained commit).
- live: N instances waiting for an event (started in bulk): Redis memory per instance and
  the RSS of a worker process (bench.runner_worker) over them.

The one internal import is the conductor, which drives transitions without a worker.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import redis

from bench.harness import cpu_seconds, load_average, redis_server
from bench.rf_system import PREFIX, RustyFlowerBench
from rustyflower import Flow, SnapshotKeys, Steps, var, when

# internal: transitions driven without a worker
from rustyflower.adapters.redis.conductor import Conductor
from rustyflower.client import Client

MB = 1024 * 1024
WINDOW = 300


class Driver:
    """Applies the results of an instance's pending activities, one transition each."""

    def __init__(self, client: Client, server_pid: int, probe: redis.Redis) -> None:
        self.client = client
        self.store = client._store  # internal: the public client's store
        self.conductor = Conductor(self.store)
        self.server_pid = server_pid
        self.probe = probe

    def pending(self, instance_id: str) -> list[Any]:
        state = self.store.load(instance_id).state
        return [entry.command for entry in state.pending.values()]

    def complete(self, instance_id: str, command: Any) -> None:
        from rustyflower.core.engine import ActivityCompleted  # noqa: PLC0415

        value = command.input
        output = value["v"] + 1 if command.activity == "inc" else value
        self.conductor.apply(instance_id, ActivityCompleted(command.call_id, output))

    def window(self, action: Callable[[], int]) -> dict[str, float]:
        """Run ``action`` (returns the transitions it made); cost per transition."""
        cpu, server, wall = time.process_time(), cpu_seconds(self.server_pid, False), time.time()
        count = action()
        return {
            "transitions": count,
            "client_cpu_us": round((time.process_time() - cpu) * 1e6 / count, 1),
            "redis_cpu_us": round((cpu_seconds(self.server_pid, False) - server) * 1e6 / count, 1),
            "wall_us": round((time.time() - wall) * 1e6 / count, 1),
        }

    def steps(self, instance_id: str, count: int) -> int:
        done = 0
        while done < count:
            commands = self.pending(instance_id)
            if not commands:
                break
            self.complete(instance_id, commands[0])
            done += 1
        return done

    def batched_steps(self, instance_id: str, count: int, batch: int = 16) -> int:
        """Complete ``count`` activities ``batch`` at a time, as a worker's batch does: one
        ``apply_many``, whose events of one instance are committed as one chain."""
        from rustyflower.adapters.redis.conductor import PendingEvent  # noqa: PLC0415
        from rustyflower.core.engine import ActivityCompleted  # noqa: PLC0415

        done = 0
        while done < count:
            commands = self.pending(instance_id)[: min(batch, count - done)]
            if not commands:
                break
            self.conductor.apply_many(
                [PendingEvent(instance_id, ActivityCompleted(c.call_id, c.input)) for c in commands]
            )
            done += len(commands)
        return done

    def sizes(self, instance_id: str) -> dict[str, int]:
        keys = self.store.keys
        return {
            "snapshot_bytes": len(self.store.raw_snapshot(instance_id)),
            "history_entries": int(self.probe.llen(keys.history(instance_id))),
            "instance_memory_bytes": sum(
                int(self.probe.memory_usage(key, samples=0) or 0)
                for key in (keys.instance(instance_id), keys.history(instance_id))
            ),
        }


def history_rows(driver: Driver) -> list[dict[str, Any]]:
    loop = (
        Flow("loop", version="1")
        .pass_("Init", result=0, result_path="$.i")
        .task("Inc", "inc", parameters={"v.$": "$.i"}, result_path="$.i", next="More")
        .choice("More", [when(var("$.i").lt(1_000_000), "Inc")], default="Done")
        .succeed("Done")
        .build()
    )
    driver.client.register(loop)
    instance_id = driver.client.start("loop", {}, version="1").id
    rows = []
    done = 0
    for target in (100, 1_000, 10_000):
        driver.steps(instance_id, max(0, target // 2 - done))  # about 2 entries a transition
        done = max(done, target // 2)
        cost = driver.window(lambda: driver.steps(instance_id, WINDOW))
        done += WINDOW
        rows.append({"at_history_entries": target, **cost, **driver.sizes(instance_id)})
    return rows


def data_rows(driver: Driver) -> list[dict[str, Any]]:
    chain = Flow("carry", version="1")
    for index in range(10):
        chain.task(f"S{index}", "echo", parameters={"n": index}, result_path=None)
    driver.client.register(chain.build())
    rows = []
    for size in (1024, 100 * 1024, MB):
        instance_id = driver.client.start("carry", {"blob": "x" * size}, version="1").id
        cost = driver.window(lambda i=instance_id: driver.steps(i, 10))
        rows.append({"data_bytes": size, **cost, **driver.sizes(instance_id)})
    return rows


def map_rows(driver: Driver, widths: list[int]) -> list[dict[str, Any]]:
    rows = []
    for concurrency in (0, 40):
        name = f"wide{concurrency}"
        flow = Flow(name, version="1")
        flow.map("Each", Steps().task("T", "echo"), max_concurrency=concurrency)
        driver.client.register(flow.build())
        for width in widths:
            began = time.process_time()
            instance_id = driver.client.start(name, list(range(width)), version="1").id
            start_cpu = time.process_time() - began
            sample = min(width, 200)
            commands = driver.pending(instance_id)
            first = driver.window(lambda i=instance_id, n=sample: driver.steps(i, n))
            again = driver.client.start(name, list(range(width)), version="1").id
            batched = driver.window(lambda i=again, n=sample: driver.batched_steps(i, n))
            rows.append(
                {
                    "map_width": width,
                    "max_concurrency": concurrency,
                    "items_started_at_once": len(commands),
                    "start_transition_client_cpu_ms": round(start_cpu * 1000, 1),
                    "per_item_completion": first,
                    "per_item_completion_16_a_batch": batched,
                    **driver.sizes(instance_id),
                }
            )
    return rows


def live_rows(url: str, server_pid: int, counts: list[int], progress: Any) -> list[dict[str, Any]]:
    rows = []
    probe = redis.Redis.from_url(url)
    for count in counts:
        probe.flushall()
        base = int(probe.info("memory")["used_memory"])
        bench = RustyFlowerBench(url, [server_pid], 0.01)
        try:
            found = bench.rss("waiter", progress, instances=count)
        finally:
            bench.close()
        used = int(probe.info("memory")["used_memory"])
        rows.append(
            {
                "instances_waiting": found["instances_waiting"],
                "redis_used_memory_mb": round(used / MB, 1),
                "redis_bytes_per_instance": round((used - base) / count),
                "worker_rss_mb": found["rss_mb"],
                "worker_idle_rss_mb": found["baseline_rss_mb"],
                "seconds_to_start_all": found["seconds_to_all_waiting"],
            }
        )
    probe.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--map-widths", type=lambda t: [int(x) for x in t.split(",")], default=[100, 10_000]
    )
    parser.add_argument(
        "--live", type=lambda t: [int(x) for x in t.split(",")], default=[10_000, 100_000]
    )
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--live-only", action="store_true", help="only the live-instance rows")
    args = parser.parse_args()

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    report: dict[str, Any] = {
        "load_average_at_start": load_average(),
        "command": "python -m bench.growth_bench " + " ".join(sys.argv[1:]),
    }
    with redis_server(keep=False, persistence=False) as server:
        assert server.process is not None
        pid = server.process.pid
        client = Client.connect(server.url, prefix=PREFIX, keys=SnapshotKeys.none())
        probe = redis.Redis.from_url(server.url)
        driver = Driver(client, pid, probe)
        if not args.live_only:
            progress("history ...")
            report["history"] = history_rows(driver)
            progress("data size ...")
            report["data"] = data_rows(driver)
            progress("map width ...")
            report["map"] = map_rows(driver, args.map_widths)
        probe.close()
        client.close()
        if not args.skip_live:
            report["live"] = live_rows(server.url, pid, args.live, progress)
    report["load_average_at_end"] = load_average()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
