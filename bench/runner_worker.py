"""The RustyFlower worker process that bench.runner_bench starts (one process, N executors).

    python -m bench.runner_worker --url redis://127.0.0.1:6379/0 --prefix rfbench \
        --concurrency 1

It registers the trivial activity ``step`` (returns its input + 1), runs
``rustyflower.worker.Worker`` until SIGTERM, and prints ``ready <pid>`` once started.

Profiling: with ``RF_BENCH_PROFILE=/path/prefix`` set, every executor thread runs under
cProfile and writes ``/path/prefix.<thread>.pstats`` when the worker stops.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import os
import signal
import sys
import threading
from typing import Any

from bench import rf_activities
from rustyflower import ActivityRegistry, SnapshotKeys
from rustyflower.client import Client
from rustyflower.worker import Worker

PROFILE_VARIABLE = "RF_BENCH_PROFILE"


def registry() -> ActivityRegistry:
    return rf_activities.registry


def _profile_executors(prefix: str) -> None:
    """Wrap the runner's executor loop so each executor thread records its own profile.

    Profiling looks inside the worker, so it patches the internal class the public
    ``Worker`` runs: the only internal import of this module, and only when asked for.
    """
    from rustyflower.adapters.redis.worker import Worker as Runner  # noqa: PLC0415

    Runner._consume = _profiled(Runner._consume, prefix)  # type: ignore[method-assign]


def _profiled(consume: Any, prefix: str) -> Any:
    @functools.wraps(consume)
    def run(self: Any, index: int) -> None:
        profile = cProfile.Profile()
        profile.enable()
        try:
            consume(self, index)
        finally:
            profile.disable()
            profile.dump_stats(f"{prefix}.executor-{index}.pstats")

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", default="rfbench")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--retention", type=float, default=None, help="seconds (retention bench)")
    parser.add_argument("--retention-interval", type=float, default=None)
    parser.add_argument("--trim-interval", type=float, default=None)
    parser.add_argument(
        "--keep-everything", action="store_true", help="no trimming, no retention (as before)"
    )
    args = parser.parse_args()
    # only the options given: `bench.retention_bench --before` runs this file against a
    # release without them
    extra = {
        name: value
        for name, value in (
            ("retention_seconds", args.retention),
            ("retention_interval", args.retention_interval),
            ("trim_interval", args.trim_interval),
        )
        if value is not None
    }
    if args.keep_everything:
        extra |= {"retention_seconds": None, "trim_interval": None}

    profile_prefix = os.environ.get(PROFILE_VARIABLE)
    if profile_prefix:
        _profile_executors(profile_prefix)

    client = Client.connect(
        args.url, prefix=args.prefix, keys=SnapshotKeys.none(), shards=args.shards
    )
    worker = Worker(
        client,
        registry(),
        concurrency=args.concurrency,
        name=f"bench-{os.getpid()}",
        **extra,
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    worker.start()
    print(f"ready {os.getpid()}", flush=True)
    stop.wait()
    worker.stop(timeout=10)
    client.close()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
