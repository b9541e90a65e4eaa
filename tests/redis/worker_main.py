"""A Worker in a process of its own, for the crash tests.

    python -m tests.redis.worker_main REDIS_URL PREFIX [--concurrency N]
        [--visibility-timeout S] [--heartbeat-interval S] [--grace-period S] [--name NAME]
        [--failure-limit S]

It runs the activities of ``tests/redis/activities.py`` (their traces go under PREFIX)
until SIGTERM or SIGINT, then shuts down gracefully and exits 0; it exits 3 when the
worker turns unhealthy (a thread failing every round for --failure-limit seconds). It
prints ``ready`` on stdout once it takes work.
"""

from __future__ import annotations

import argparse
import logging
import sys

import redis

from rustyflower.adapters.redis.keys import Keyspace
from rustyflower.adapters.redis.store import RedisStore
from rustyflower.adapters.redis.worker import Worker, WorkerOptions, WorkerUnhealthyError
from tests.redis import activities


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("prefix")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--visibility-timeout", type=float, default=2.0)
    parser.add_argument("--heartbeat-interval", type=float, default=0.5)
    parser.add_argument("--grace-period", type=float, default=30.0)
    parser.add_argument("--block-ms", type=int, default=100)
    parser.add_argument("--name", default=None)
    parser.add_argument("--failure-limit", type=float, default=120.0)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(threadName)s %(levelname)s %(name)s: %(message)s",
    )
    activities.configure(args.url, args.prefix)
    store = RedisStore(redis.Redis.from_url(args.url), Keyspace(prefix=args.prefix))
    options = WorkerOptions(
        concurrency=args.concurrency,
        visibility_timeout=args.visibility_timeout,
        heartbeat_interval=args.heartbeat_interval,
        grace_period=args.grace_period,
        block_ms=args.block_ms,
        failure_limit=args.failure_limit,
    )
    if args.name:
        options.name = args.name
    worker = Worker(store, activities.registry, options)
    print("ready", flush=True)
    try:
        worker.run_until_signalled(check_interval=0.2)
    except WorkerUnhealthyError as error:
        logging.getLogger("rustyflower.worker").error("worker exits unhealthy: %s", error)
        return 3
    logging.getLogger("rustyflower.worker").info("worker exited cleanly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
