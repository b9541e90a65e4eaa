"""Replication: its cost on the commit path, and its lag while the runner runs at a rate.

Run: `.venv/bin/python -m bench.replication_bench` (`--rate 500 --seconds 30`,
`--clouds aws,azure`, `--json`). Needs Debian's `redis-server`; moto's server comes with
the dev extra; Azurite (`bash .ci/azurite.sh`) is used when installed.

1. **Commit cost** (`commit`): the server-side time of the commit script
   (`INFO commandstats`, `cmdstat_evalsha` usec per call) over N instance starts (one
   commit each, in chunks of 200 as `start_many` sends them), with replication off (the
   script checks one key: EXISTS) and on (it also notes the instance: TIME + ZADD NX).
2. **Lag at a rate** (`lag`): processes as a site runs them, each on its own: one
   redis-server (append-only, fsync every second), `rustyflower worker` (concurrency 4,
   the trivial `step` activity), `rustyflower replicate --to CLOUD` (the lifeboat,
   standalone), and the cloud: moto's server (S3 + DynamoDB) or Azurite (Blob). The bench
   starts 10-step chains at the pace that makes `--rate` transitions per second, for
   `--seconds`. Between two steps a chain waits `--pause` seconds (a Wait state, 1 s), so
   an instance lives about 10 s and changes about twice a second: its replica is written
   again and again while it runs (about 450 instances alive at 500/s) and removed at its
   end, as on a site whose flows wait for things. With `--pause 0` a chain runs through
   in well under the settle time and is never written (nothing the cloud would need):
   that measures the feed, not the cloud. The lag is the replicator's own measure
   (`rustyflower replicate --status`: from the commit of an instance's oldest change not
   yet shipped, on the Redis clock, to the cloud's answer to the write), over the run's
   last 60 s, read when the backlog is empty; the bench also samples the backlog and the
   lag now (the oldest backlog entry's age) every 0.5 s. Achieved transitions/s = the
   sum of the instances' seq (read at the end) over the driving time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from bench.harness import (
    RedisServer,
    cpu_seconds,
    free_port,
    machine_busy_seconds,
    redis_server_binary,
)
from bench.rf_system import chain_flow
from rustyflower import ActivityRegistry, Flow, SnapshotKeys, generate_signing_key
from rustyflower.client import Client

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "rfrepl"
SITE = "bench-site"
BUCKET = "rf-replication-bench"
TABLE = "rf-replication-leases"
CONTAINER = "rf-replication-bench"
STEPS = 10
SIGNING = generate_signing_key("bench")
KEY_SETTING = f"{SIGNING.key_id}:{SIGNING.to_base64()}"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

registry = ActivityRegistry()
"""`--activities bench.replication_bench`: the worker's one activity."""


@registry.activity
def step(value: Any) -> int:
    return int(value or 0) + 1


def paced_chain(name: str, steps: int, pause: int) -> Any:
    """``steps`` tasks, ``pause`` seconds of Wait between two of them (none when 0)."""
    if pause <= 0:
        return chain_flow(name, steps)
    flow = Flow(name, version="1")
    for index in range(steps):
        if index:
            flow.wait(f"Pause {index}", seconds=pause)
        flow.task(f"Step {index + 1}", "step")
    return flow.build()


def transitions_per_chain(steps: int, pause: int) -> int:
    """Its start, one per finished step and one per fired pause (the pace to start at;
    the achieved figure is read from the instances)."""
    return 1 + steps + (steps - 1 if pause > 0 else 0)


# --- the processes ---------------------------------------------------------------------------


def rustyflower_command() -> str:
    return str(Path(sys.executable).with_name("rustyflower"))


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer") from None
            time.sleep(0.1)


@contextlib.contextmanager
def process(
    command: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        started = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield started
        finally:
            started.terminate()
            try:
                started.wait(timeout=30)
            except subprocess.TimeoutExpired:
                started.kill()
                started.wait(timeout=10)


@contextlib.contextmanager
def aws_cloud(work: Path) -> Iterator[dict[str, str]]:
    import boto3  # noqa: PLC0415

    port = free_port()
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with process(command, dict(os.environ), work / "moto.log") as server:
        endpoint = f"http://127.0.0.1:{port}"
        wait_http(f"{endpoint}/moto-api/")
        boto = {
            "region_name": "us-east-1",
            "endpoint_url": endpoint,
            "aws_access_key_id": "bench",
            "aws_secret_access_key": "bench",
        }
        boto3.client("s3", **boto).create_bucket(Bucket=BUCKET)
        boto3.client("dynamodb", **boto).create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "site", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "site", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield {
            **AWS_ENV,
            "AWS_ENDPOINT_URL": endpoint,
            "RUSTYFLOWER_REPLICA_BUCKET": BUCKET,
            "RUSTYFLOWER_LEASE_TABLE": TABLE,
            "PID": str(server.pid),
        }


def azurite_binary() -> str | None:
    local = ROOT / ".ci" / "node" / "node_modules" / ".bin" / "azurite-blob"
    return str(local) if os.access(local, os.X_OK) else shutil.which("azurite-blob")


@contextlib.contextmanager
def azure_cloud(work: Path) -> Iterator[dict[str, str]]:
    from azure.storage.blob import ContainerClient  # noqa: PLC0415

    binary = azurite_binary()
    if binary is None:
        raise RuntimeError("Azurite is not installed (bash .ci/azurite.sh)")
    port = free_port()
    command = [
        binary,
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--skipApiVersionCheck",
        "--loose",
        "--silent",
        "--inMemoryPersistence",
        "--disableTelemetry",
    ]
    with process(command, dict(os.environ), work / "azurite.log") as server:
        wait_http(f"http://127.0.0.1:{port}/")
        connection = (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
        )
        ContainerClient.from_connection_string(connection, CONTAINER).create_container()
        yield {
            "RUSTYFLOWER_AZURE_STORAGE": connection,
            "RUSTYFLOWER_REPLICA_CONTAINER": CONTAINER,
            "PID": str(server.pid),
        }


# --- 1. the commit path ----------------------------------------------------------------------


def redis_cpu(probe: redis.Redis) -> float:
    """CPU seconds the server's main thread has used (user + system): what the commit
    scripts cost it, without the time the machine's other programs took the core."""
    info = probe.info("cpu")
    return float(info["used_cpu_user_main_thread"]) + float(info["used_cpu_sys_main_thread"])


def commit_cost(server: RedisServer, count: int, rounds: int) -> dict[str, Any]:
    """EVALSHA server time per commit, replication off and on, alternating, each on a
    fresh prefix; the medians over ``rounds`` of each."""
    from rustyflower.adapters.redis.lifeboat_feed import RedisReplicationFeed  # noqa: PLC0415

    probe = redis.Redis.from_url(server.url)
    samples: dict[str, list[tuple[float, float, float]]] = {"off": [], "on": []}
    for index in range(rounds * 2):
        mode = "off" if index % 2 == 0 else "on"
        prefix = f"rfcost{index}"
        client = Client.connect(server.url, prefix=prefix, keys=SnapshotKeys.signing_only(SIGNING))
        client.register(chain_flow("cost", 1))
        if mode == "on":
            # the product's switch (bench instrumentation: the store behind the client)
            RedisReplicationFeed(client._store).enable("bench")
        client.start_many("cost", [0] * 200)  # warm: scripts loaded, definition cached
        probe.config_resetstat()
        cpu_before = redis_cpu(probe)
        began = time.perf_counter()
        for _ in range(count // 200):
            client.start_many("cost", [0] * 200)
        wall = time.perf_counter() - began
        cpu = redis_cpu(probe) - cpu_before
        stats = probe.info("commandstats").get("cmdstat_evalsha", {})
        commits = int(stats.get("calls", 0)) or 1
        samples[mode].append(
            (float(stats.get("usec_per_call", 0.0)), commits / wall, cpu * 1e6 / commits)
        )
        client.close()
        probe.flushall()
    probe.close()
    return {
        mode: {
            "rounds": len(found),
            "commits_per_round": count // 200 * 200,
            "server_us_per_commit": round(statistics.median(us for us, _, _ in found), 2),
            "server_us_per_commit_all": [round(us, 2) for us, _, _ in found],
            "redis_cpu_us_per_commit": round(statistics.median(c for _, _, c in found), 2),
            "redis_cpu_us_per_commit_all": [round(c, 2) for _, _, c in found],
            "client_commits_per_s": round(statistics.median(rate for _, rate, _ in found)),
        }
        for mode, found in samples.items()
    }


# --- 2. the lag at a rate --------------------------------------------------------------------


def lag_at_rate(
    server: RedisServer,
    cloud: str,
    rate: float,
    seconds: float,
    work: Path,
    *,
    parallel: int,
    settle: float,
    compact_every: float,
    pause: int,
) -> dict[str, Any]:
    keys = SnapshotKeys.signing_only(SIGNING)
    client = Client.connect(server.url, prefix=PREFIX, keys=keys)
    client.register(paced_chain("chain10", STEPS, pause))
    handles: list[Any] = []
    probe = redis.Redis.from_url(server.url)
    status_key = f"{PREFIX}:lifeboat:status"
    base = {
        **os.environ,
        "RUSTYFLOWER_REDIS_URL": server.url,
        "RUSTYFLOWER_PREFIX": PREFIX,
        "RUSTYFLOWER_SIGNING_KEYS": KEY_SETTING,
        "RUSTYFLOWER_SITE_ID": SITE,
    }
    opened = aws_cloud(work) if cloud == "aws" else azure_cloud(work)
    with opened as cloud_env:
        env = {**base, **cloud_env}
        worker = [
            rustyflower_command(),
            "worker",
            "--activities",
            "bench.replication_bench",
            "--concurrency",
            "4",
            "--no-scheduler",
            "--no-replicate",
        ]
        replicate = [
            rustyflower_command(),
            "replicate",
            "--to",
            cloud,
            "--takeover-cloud",
            "none",
            "--parallel",
            str(parallel),
            "--settle",
            str(settle),
            "--compact-every",
            str(compact_every),
        ]
        with (
            process(worker, env, work / f"worker-{cloud}.log") as worker_process,
            process(replicate, env, work / f"replicate-{cloud}.log") as replicate_process,
        ):
            pids = {
                "redis": (server.process.pid if server.process else 0, False),
                "worker": (worker_process.pid, True),
                "replicate": (replicate_process.pid, True),
                "cloud": (int(cloud_env["PID"]), True),
            }
            deadline = time.monotonic() + 60
            while probe.get(status_key) is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the replicator did not report: see {work}/replicate-{cloud}.log"
                    )
                time.sleep(0.2)
            per_second = rate / transitions_per_chain(STEPS, pause)
            tick = 0.1
            cpu_before = {name: cpu_seconds(pid, tree) for name, (pid, tree) in pids.items()}
            busy_before = machine_busy_seconds()
            began = time.monotonic()
            started = 0
            samples: list[tuple[float, int, float]] = []
            next_sample = began
            while (now := time.monotonic()) - began < seconds:
                due = int((now - began) * per_second) - started
                if due > 0:
                    handles += client.start_many("chain10", [0] * due)
                    started += due
                if now >= next_sample:
                    report = json.loads(probe.get(status_key) or b"{}")
                    target = (report.get("targets") or {}).get(cloud, {})
                    samples.append(
                        (
                            now - began,
                            int(target.get("backlog") or 0),
                            float(target.get("lag_seconds") or 0.0),
                        )
                    )
                    next_sample += 0.5
                time.sleep(tick)
            drive_seconds = time.monotonic() - began
            cpu = {
                name: round(cpu_seconds(pid, tree) - cpu_before[name], 1)
                for name, (pid, tree) in pids.items()
            }
            busy = machine_busy_seconds() - busy_before
            cpu["other_programs"] = round(busy - sum(cpu.values()), 1)
            # let the runner and the replicator finish what was started
            deadline = time.monotonic() + 120 + STEPS * pause
            while True:
                report = json.loads(probe.get(status_key) or b"{}")
                target = (report.get("targets") or {}).get(cloud, {})
                running = probe.scard(f"{PREFIX}:{{s0}}:status:running")
                if (
                    running == 0
                    and target.get("backlog") == 0
                    and time.monotonic() - began > seconds + 2
                ):
                    break
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            finished = time.monotonic() - began
    transitions = sum(handle.status().seq for handle in handles)
    unfinished = sum(1 for handle in handles if handle.status().status == "running")
    window = target.get("window") or {}
    client.close()
    probe.close()
    return {
        "cloud": cloud,
        "rate_asked": rate,
        "seconds": round(drive_seconds, 1),
        "instances": started,
        "pause_s": pause,
        "unfinished_at_end": unfinished,
        "transitions": transitions,
        "transitions_per_s": round(transitions / drive_seconds),
        "drained_after_s": round(finished - drive_seconds, 1),
        "cpu_seconds_while_driving": cpu,
        "lag_p50_s": window.get("p50"),
        "lag_p99_s": window.get("p99"),
        "lag_max_s": window.get("max"),
        "writes_measured": window.get("count"),
        "shipped": target.get("shipped"),
        "removed": target.get("removed"),
        "segments": target.get("segments"),
        "compactions": target.get("compactions"),
        "fenced": target.get("fenced"),
        "compact_every_s": compact_every,
        "failures": target.get("failures"),
        "backlog_max": max((b for _, b, _ in samples), default=0),
        "lag_now_max_s": round(max((lag for _, _, lag in samples), default=0.0), 3),
        "lag_now_median_s": round(statistics.median(lag for _, _, lag in samples), 3)
        if samples
        else None,
    }


def load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=500.0, help="transitions per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clouds", default="aws,azure", help="aws, azure, both, or none")
    parser.add_argument("--parallel", type=int, default=4)  # the replicator's default
    parser.add_argument("--settle", type=float, default=0.2)
    parser.add_argument("--compact-every", type=float, default=10.0)
    parser.add_argument(
        "--pause", type=int, default=1, help="seconds of Wait between two steps of a chain"
    )
    parser.add_argument("--commits", type=int, default=20_000)
    parser.add_argument("--commit-rounds", type=int, default=3)
    parser.add_argument("--skip-commit-cost", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "machine": (
            f"{os.cpu_count()} cores, {platform.machine()}, CPython {platform.python_version()}"
        ),
        "load_average_at_start": load_average(),
    }
    with tempfile.TemporaryDirectory(prefix="rf-replication-bench-") as folder:
        work = Path(folder)
        server = RedisServer(redis_server_binary(), work)
        server.start()
        try:
            report["redis"] = server.version()
            if not args.skip_commit_cost:
                print("commit cost ...", file=sys.stderr, flush=True)
                report["commit"] = commit_cost(server, args.commits, args.commit_rounds)
            report["lag"] = []
            for cloud in [
                c.strip() for c in args.clouds.split(",") if c.strip() not in ("", "none")
            ]:
                if cloud == "azure" and azurite_binary() is None:
                    print("azure: Azurite is not installed, skipped", file=sys.stderr)
                    continue
                print(
                    f"lag at {args.rate:g} transitions/s to {cloud} ...",
                    file=sys.stderr,
                    flush=True,
                )
                redis.Redis.from_url(server.url).flushall()
                report["lag"].append(
                    lag_at_rate(
                        server,
                        cloud,
                        args.rate,
                        args.seconds,
                        work,
                        parallel=args.parallel,
                        settle=args.settle,
                        compact_every=args.compact_every,
                        pause=args.pause,
                    )
                )
                report["lag"][-1]["load_average_after"] = load_average()
        finally:
            server.stop()
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"{report['machine']} · redis-server {report.get('redis')} · "
        f"load average at start {report['load_average_at_start']}"
    )
    for mode, found in (report.get("commit") or {}).items():
        print(
            f"commit, replication {mode:3}: {found['redis_cpu_us_per_commit']:6.2f} us of Redis "
            f"CPU per commit {found['redis_cpu_us_per_commit_all']}, "
            f"{found['server_us_per_commit']:6.2f} us EVALSHA time "
            f"{found['server_us_per_commit_all']} (medians of {found['rounds']} x "
            f"{found['commits_per_round']:,}), {found['client_commits_per_s']:,} commits/s"
        )
    for found in report["lag"]:
        print(
            f"lag to {found['cloud']:5}: {found['transitions_per_s']:,} transitions/s for "
            f"{found['seconds']} s ({found['instances']} chains, pause {found['pause_s']} s, "
            f"{found['shipped']} writes, {found['removed']} removals): p50 {found['lag_p50_s']} s, "
            f"p99 {found['lag_p99_s']} s, "
            f"max {found['lag_max_s']} s over {found['writes_measured']} writes; backlog max "
            f"{found['backlog_max']}, lag now max {found['lag_now_max_s']} s; drained "
            f"{found['drained_after_s']} s after the last start; failures {found['failures']}; "
            f"CPU s {found['cpu_seconds_while_driving']}; "
            f"load average after {found['load_average_after']}"
        )


if __name__ == "__main__":
    main()
