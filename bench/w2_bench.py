"""W2 alone, RustyFlower alone: 2,000 single-step flows started one by one, flows/s.

Run: `.venv/bin/python -m bench.w2_bench` (`--rounds N`, `--json`). The same worker
process, starts, completion poll and CPU split as `bench.runner_bench`'s W2 row
(``RustyFlowerBench``, one worker process, concurrency 1), without the peers, W1, L and
the bulk rows: a before/after comparison of the start path takes seconds per round, so
two trees can be run in alternation many times on a shared machine. Each round also
counts the commands redis-server ran per flow (``INFO commandstats``, scripts' inner
calls included), and how long the client's start loop took.
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

import redis

from bench.harness import CpuMeter, load_average, redis_server
from bench.rf_system import RustyFlowerBench
from bench.workloads import CHAIN_STEPS, W2_FLOWS

COUNTED = ("evalsha", "xreadgroup", "hget", "xack", "scard")
"""The commands that show the round trips: each start and each commit is one EVALSHA
(the worker's priority read is another), a snapshot fetch one HGET."""


def calls(probe: redis.Redis) -> dict[str, int]:
    stats: dict[str, Any] = probe.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()}


def run(rounds: int) -> dict[str, Any]:
    report: dict[str, Any] = {"load_average_at_start": load_average(), "rounds": []}
    with redis_server(keep=False) as server:
        assert server.process is not None
        bench = RustyFlowerBench(server.url, [server.process.pid], poll_s=0.01)
        probe = redis.Redis.from_url(server.url)
        try:
            meter = CpuMeter(bench.server_pids, bench.start_workers())
            # warm-up, as runner_bench does, and the single-step flow's own first run
            bench._finish(bench.submit(5, CHAIN_STEPS, False), CHAIN_STEPS, bench.poll_s)
            bench._finish(bench.submit(200, 1, False), 1, bench.poll_s)
            for _ in range(rounds):
                before = calls(probe)
                row = bench._throughput(meter, W2_FLOWS, 1, False)
                after = calls(probe)
                row["commands_per_flow"] = {
                    name: round((after.get(name, 0) - before.get(name, 0)) / W2_FLOWS, 2)
                    for name in COUNTED
                }
                report["rounds"].append(row)
        finally:
            probe.close()
            bench.close()
    report["load_average_at_end"] = load_average()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = run(args.rounds)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"load average {report['load_average_at_start']} -> {report['load_average_at_end']}")
    for row in report["rounds"]:
        cpu = row["cpu_per_unit"]
        print(
            f"  W2 {row['per_s']:>6,} flows/s  start loop {row['start_loop_seconds']:.2f} s"
            f"  CPU us/flow redis {cpu['redis_us']:.0f} / worker {cpu['worker_us']:.0f}"
            f" / client {cpu['client_us']:.0f}, other {cpu['other_programs_pct']:.0f}%"
            f"  commands/flow {row['commands_per_flow']}"
        )
    rates = [row["per_s"] for row in report["rounds"]]
    print(f"  median {statistics.median(rates):,.0f} flows/s")


if __name__ == "__main__":
    main()
