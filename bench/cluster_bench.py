"""RustyFlower on a Redis Cluster: the runner_bench workloads with 1 shard and with shards
spread over every primary, side by side in one run.

Run: `.venv/bin/python -m bench.cluster_bench` (`--json`, `--rounds N`, `--shards 1,12`).
Needs Debian's redis-server and redis-cli. The bench starts a cluster of 3 primaries on
loopback (no replicas: this measures throughput, tests/redis/test_cluster.py fails one
over), append-only with fsync every second like runner_bench's server, and for each
shard count runs the same worker (`bench.runner_worker`, one process) and workloads as
bench.runner_bench. RUSTYFLOWER_SHARDS=1 keeps every instance on one primary; 12 shards
spread them over all three (the hash tags {s0}..{s11} fall 4 / 4 / 4 or so; the report
shows where they fall).

The cluster is started with the test suite's launcher (tests.redis.servers), the one
import from tests/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.harness import load_average
from bench.rf_system import PREFIX, RustyFlowerBench, probe_client
from bench.runner_bench import aggregate, print_report
from rustyflower.adapters.redis.keys import Keyspace
from tests.redis.servers import ClusterProcesses, redis_binary, redis_cli_binary

MASTERS = 3


def spread(url: str, shards: int) -> dict[str, int]:
    """How many of the shards each primary owns."""
    client = probe_client(url)
    try:
        keys = Keyspace(prefix=PREFIX, shards=shards)
        owners: dict[str, int] = {}
        for shard in range(shards):
            owner = client.get_node_from_key(keys.tag(shard) + ":x").name
            owners[owner] = owners.get(owner, 0) + 1
        return owners
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--shards",
        type=lambda text: [int(item) for item in text.split(",")],
        default=[1, 12],
        help="RUSTYFLOWER_SHARDS values to compare (default 1,12)",
    )
    parser.add_argument("--poll-ms", type=float, default=10.0)
    args = parser.parse_args()
    server, cli = redis_binary(), redis_cli_binary()
    if server is None or cli is None:
        sys.exit("redis-server and redis-cli are needed (apt-get install redis-server)")
    directory = Path(tempfile.mkdtemp(prefix="rf-bench-cluster-"))
    cluster = ClusterProcesses(server, cli, directory, masters=MASTERS)
    report: dict[str, Any] = {
        "load_average_at_start": load_average(),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()}",
        "command": "python -m bench.cluster_bench " + " ".join(sys.argv[1:]),
        "rounds": args.rounds,
    }
    rows = []
    cluster.start()
    try:
        pids = [node.process.pid for node in cluster.nodes if node.process is not None]
        report["redis"] = f"Redis Cluster of {MASTERS} primaries (redis-server 7, appendonly)"
        report["date"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        report["spread"] = {str(shards): spread(cluster.url, shards) for shards in args.shards}
        for round_index in range(args.rounds):
            for shards in args.shards:
                client = probe_client(cluster.url)
                client.flushall()
                client.close()
                owners = len(report["spread"][str(shards)])
                bench = RustyFlowerBench(
                    cluster.url,
                    pids,
                    args.poll_ms / 1000,
                    shards=shards,
                    label_extra=f", {shards} shard(s) on {owners} of {MASTERS} primaries",
                )
                print(f"[round {round_index + 1}] {bench.label} ...", file=sys.stderr, flush=True)
                row = bench.run()
                row["round"] = round_index
                row["load_average_after"] = load_average()
                rows.append(row)
    finally:
        cluster.stop()
    report["table"] = aggregate(rows)
    report["summary"] = {"ratios": {}}
    report["runs"] = rows
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
        print(f"\nshards per primary: {report['spread']}")


if __name__ == "__main__":
    main()
