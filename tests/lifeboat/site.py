"""The site of the lifeboat tests: a real store signed with the keys the clouds hold, the
flows, and the lifeboat agent built by the product's own settings (``build_agent``)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rustyflower.adapters.continuity.lifeboat_setup import LifeboatSettings, build_agent
from rustyflower.adapters.continuity.site_agent import AgentOptions, SiteAgent
from rustyflower.adapters.continuity.site_lease import CloudLink, utc_now
from rustyflower.adapters.redis.conductor import Conductor
from rustyflower.adapters.redis.lifeboat_feed import RedisReplicationFeed
from rustyflower.adapters.redis.store import RedisStore
from rustyflower.core.model import parse_definition
from rustyflower.core.snapshot import SnapshotKeys, generate_signing_key
from tests.redis.conftest import Runtime

SIGNING_KEY = generate_signing_key("lifeboat-tests")
KEYS = SnapshotKeys.signing_only(SIGNING_KEY)
KEY_SETTING = f"{SIGNING_KEY.key_id}:{SIGNING_KEY.to_base64()}"

CHAIN_STEPS = 6
CHAIN = parse_definition(
    {
        "name": "chain",
        "version": "1",
        "start_at": "S0",
        "states": {
            **{
                f"S{step}": {
                    "type": "task",
                    "activity": "add",
                    "parameters": {"a.$": "$.n", "b": 1},
                    "result_path": "$.n",
                    "next": f"S{step + 1}" if step + 1 < CHAIN_STEPS else "Park",
                }
                for step in range(CHAIN_STEPS)
            },
            "Park": {"type": "wait_for_event", "event": "done", "end": True},
        },
    }
)
"""Quick steps, then a wait: it ends running, so its replica must be the last seq."""
SPRINT = parse_definition(
    {
        "name": "sprint",
        "version": "1",
        "start_at": "S0",
        "states": {
            f"S{step}": {
                "type": "task",
                "activity": "add",
                "parameters": {"a.$": "$.n", "b": 1},
                "result_path": "$.n",
                **({"next": f"S{step + 1}"} if step + 1 < CHAIN_STEPS else {"end": True}),
            }
            for step in range(CHAIN_STEPS)
        },
    }
)
"""Quick steps to the end: the load the runner goes flat out on."""


def wait_until(
    what: str, check: Callable[[], Any], timeout: float = 30.0, every: float = 0.05
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


@dataclass
class Site:
    runtime: Runtime
    name: str = "plant-1"
    store: RedisStore = field(init=False)
    conductor: Conductor = field(init=False)
    feed: RedisReplicationFeed = field(init=False)

    def __post_init__(self) -> None:
        self.store = RedisStore(self.runtime.client, self.runtime.keys, KEYS)
        self.conductor = Conductor(self.store)
        self.feed = RedisReplicationFeed(self.store)
        self.store.register(CHAIN)
        self.store.register(SPRINT)

    def agent(
        self,
        settings: LifeboatSettings,
        links: dict[str, CloudLink] | None = None,
        *,
        now: Callable[[], datetime] = utc_now,
        renew_interval: float = 0.5,
        name: str = "agent-1",
    ) -> SiteAgent:
        agent = build_agent(
            settings,
            self.store,
            feed=self.feed,
            keys=KEYS,
            options=AgentOptions(name=name, renew_interval=renew_interval, report_interval=0.2),
            links=links,
        )
        agent.keeper.now = now
        return agent

    @contextlib.contextmanager
    def running(self, agent: SiteAgent) -> Iterator[SiteAgent]:
        """``prepare`` (the lease, a takeover), then the agent's loop in a thread."""
        stop = threading.Event()
        agent.prepare(stop)
        thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
        thread.start()
        try:
            yield agent
        finally:
            stop.set()
            thread.join(timeout=20)

    def running_ids(self) -> dict[str, tuple[int, int]]:
        """Every running instance here: id -> (epoch, seq)."""
        return {
            info.instance_id: (info.epoch, info.seq)
            for info in self.store.list_instances(status="running", limit=100_000)
        }


ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def worker_process(
    runtime: Runtime, environment: dict[str, str], log_dir: Path, *extra: str
) -> Iterator[subprocess.Popen[bytes]]:
    """``rustyflower worker --replicate`` in a process of its own, as a site runs it: the
    runner flat out and the lifeboat beside it, configured by the environment only."""
    env = {
        **os.environ,
        **environment,
        "RUSTYFLOWER_REDIS_URL": runtime.server.url,
        "RUSTYFLOWER_PREFIX": runtime.keys.prefix,
        "RUSTYFLOWER_SIGNING_KEYS": KEY_SETTING,
        "RUSTYFLOWER_SITE_ID": environment.get("RUSTYFLOWER_SITE_ID", "plant-1"),
    }
    command = [
        str(Path(sys.executable).with_name("rustyflower")),
        "worker",
        "--activities",
        "tests.redis.activities",
        "--concurrency",
        "1",
        "--no-scheduler",
        "--replicate",
        *extra,
    ]
    log = (log_dir / "worker.log").open("wb")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def log_tail(log_dir: Path) -> str:
    return (log_dir / "worker.log").read_text(errors="replace")[-3000:]
