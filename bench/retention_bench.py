"""Redis memory over many single-step flows: flat with retention, growing without it.

Run: `.venv/bin/python -m bench.retention_bench --flows 200000` (see bench/README.md).

One fresh redis-server (no persistence: memory is what is measured) and one worker
process (``bench.runner_worker``, concurrency 1). The client starts single-step flows in
bulk (``Conductor.start_many``, 1,000 a chunk), keeping at most ``--in-flight`` unfinished
so the measure is not of a backlog, and samples the server every ``--sample-every``
flows: ``used_memory`` (INFO memory), the entries left in the work streams, the keys.

Modes:

* default: the worker trims acknowledged stream entries every ``--trim-interval``
  seconds and deletes instances that finished ``--retention`` seconds ago, looking
  every ``--retention-interval`` seconds (the product's defaults are 5 s, 7 days, 60 s;
  the bench shortens the retention so that a steady state shows within minutes);
* ``--keep-everything``: no trimming and no retention, as the runner behaved before.
  Run under an older release's interpreter it measures that release itself (the
  worker then gets no retention options at all); see bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis

from bench.harness import free_port, redis_server_binary
from rustyflower.adapters.redis.conductor import Conductor
from rustyflower.adapters.redis.keys import PRIORITIES, Keyspace
from rustyflower.adapters.redis.store import RedisStore
from rustyflower.core.builder import Flow

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "rfretention"
CHUNK = 1_000


@dataclass
class Sample:
    flows: int
    seconds: float
    used_memory_mb: float
    stream_entries: int
    keys: int
    instances: int
    unfinished: int


@contextlib.contextmanager
def server(data_dir: Path) -> Any:
    port = free_port()
    process = subprocess.Popen(
        [
            redis_server_binary(),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(data_dir),
            "--appendonly", "no",
            "--save", "",
            "--daemonize", "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    deadline = time.monotonic() + 15
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        yield url
    finally:
        client.close()
        process.terminate()
        process.wait(15)


@contextlib.contextmanager
def worker(url: str, args: argparse.Namespace) -> Any:
    command = [sys.executable, "-m", "bench.runner_worker", "--url", url, "--prefix", PREFIX]
    if args.keep_everything:
        if not args.before:
            command.append("--keep-everything")
    else:
        command += ["--retention", str(args.retention)]
        command += ["--retention-interval", str(args.retention_interval)]
        command += ["--trim-interval", str(args.trim_interval)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE)
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    if not line.startswith("ready"):
        raise RuntimeError(f"the worker did not start: {line!r}")
    try:
        yield process
    finally:
        process.terminate()
        process.wait(30)


def sample(client: redis.Redis, keys: Keyspace, flows: int, began: float) -> Sample:
    info = client.info("memory")
    streams = sum(int(client.xlen(keys.stream(0, p))) for p in PRIORITIES)
    finished = sum(
        int(client.scard(keys.status_index(0, status)))
        for status in ("succeeded", "failed", "cancelled")
    )
    unfinished = int(client.scard(keys.status_index(0, "running")))
    return Sample(
        flows=flows,
        seconds=round(time.monotonic() - began, 1),
        used_memory_mb=round(int(info["used_memory"]) / 2**20, 1),
        stream_entries=streams,
        keys=int(client.dbsize()),
        instances=finished + unfinished,
        unfinished=unfinished,
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rf-retention-") as data, server(Path(data)) as url:
        client = redis.Redis.from_url(url)
        keys = Keyspace(prefix=PREFIX)
        store = RedisStore(client, keys)
        store.register(Flow("one", version="1").task("Step", "step").build())
        conductor = Conductor(store)
        samples: list[Sample] = []
        with worker(url, args):
            began = time.monotonic()
            samples.append(sample(client, keys, 0, began))
            started = 0
            while started < args.flows:
                while int(client.scard(keys.status_index(0, "running"))) > args.in_flight:
                    time.sleep(0.01)
                count = min(CHUNK, args.flows - started)
                conductor.start_many("one", [started + n for n in range(count)], version="1")
                started += count
                if started % args.sample_every == 0 or started == args.flows:
                    samples.append(sample(client, keys, started, began))
                    if not args.json:
                        print(json.dumps(asdict(samples[-1])), flush=True)
            while int(client.scard(keys.status_index(0, "running"))) > 0:
                time.sleep(0.05)
            elapsed = time.monotonic() - began
            if not args.keep_everything:  # let the last retention window pass
                time.sleep(args.retention + args.retention_interval + 1)
            final = sample(client, keys, started, began)
        return {
            "mode": "keep everything" if args.keep_everything else "retention",
            "flows": args.flows,
            "flows_per_second": round(args.flows / elapsed),
            "retention_seconds": None if args.keep_everything else args.retention,
            "samples": [asdict(s) for s in samples],
            "after_the_last_window": asdict(final),
            "python": sys.executable,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--flows", type=int, default=200_000)
    parser.add_argument("--sample-every", type=int, default=20_000)
    parser.add_argument("--in-flight", type=int, default=5_000)
    parser.add_argument("--retention", type=float, default=5.0, help="seconds")
    parser.add_argument("--retention-interval", type=float, default=1.0, help="seconds")
    parser.add_argument("--trim-interval", type=float, default=1.0, help="seconds")
    parser.add_argument("--keep-everything", action="store_true")
    parser.add_argument(
        "--before",
        action="store_true",
        help="with --keep-everything: the worker gets no options (an older release)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.sample_every % CHUNK:
        parser.error(f"--sample-every is a multiple of {CHUNK}")
    if args.before and not args.keep_everything:
        parser.error("--before measures an older release: use it with --keep-everything")
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        final = report["after_the_last_window"]
        print(
            f"{report['mode']}: {report['flows']} flows at {report['flows_per_second']}/s; "
            f"after the last retention window: {final['used_memory_mb']} MB, "
            f"{final['stream_entries']} stream entries, {final['instances']} instances"
        )


if __name__ == "__main__":
    main()
