"""The drill's site: an embedded Valkey with append-only persistence in a folder of its
own, a worker and the replication agent, in this process; killed without a goodbye and
brought back on the same folder."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path

import redis

from rustyflower.adapters.continuity.lifeboat_setup import LifeboatSettings, build_agent
from rustyflower.adapters.continuity.site_agent import AgentOptions, SiteAgent
from rustyflower.adapters.redis.connection import EmbeddedValkey
from rustyflower.adapters.redis.keys import Keyspace
from rustyflower.adapters.redis.lifeboat_feed import RedisReplicationFeed
from rustyflower.adapters.redis.store import RedisStore
from rustyflower.adapters.redis.worker import Worker
from rustyflower.adapters.redis.worker_options import WorkerOptions
from rustyflower.core.activities import ActivityRegistry
from rustyflower.core.model import FlowDefinition
from rustyflower.core.snapshot import SnapshotKeys

__all__ = ["DrillSite"]

RENEW_EVERY = 0.5
"""Seconds between the agent's lease renewals (short: the drill is quick)."""


@dataclass
class DrillSite:
    """One life of the site at a time: ``start`` (again after ``kill``) on ``data_dir``."""

    data_dir: Path
    settings: LifeboatSettings
    keys: SnapshotKeys
    registry: ActivityRegistry
    redis_url: str | None = None
    """An outside Redis (not killed by the drill: its worker and agent are)."""
    settle: float = 0.0
    """Seconds a change waits before the replicator ships it."""
    prefix: str = "rfdrill"
    store: RedisStore = field(init=False)
    url: str = field(init=False, default="")
    agent: SiteAgent = field(init=False)
    _server: EmbeddedValkey | None = field(default=None, init=False)
    _worker: Worker | None = field(default=None, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _agent_thread: threading.Thread | None = field(default=None, init=False)
    _client: redis.Redis | None = field(default=None, init=False)

    def open(self, definitions: tuple[FlowDefinition, ...] = ()) -> str:
        """Valkey (or the given Redis) and the store, nothing running yet; the URL."""
        url = self.redis_url
        if url is None:
            self._server = EmbeddedValkey(data_dir=self.data_dir)
            url = self._server.start()
        self.url = url
        self._client = redis.Redis.from_url(url)
        self.store = RedisStore(self._client, Keyspace(self.prefix), self.keys)
        for definition in definitions:
            self.store.register(definition)
        return url

    def run(self) -> None:
        """The agent (applying any takeover it finds first) and the worker."""
        url = self.url
        self.agent = build_agent(
            self.settings,
            self.store,
            feed=RedisReplicationFeed(self.store),
            keys=self.keys,
            options=AgentOptions(name=f"drill-{os.getpid()}", renew_interval=RENEW_EVERY),
            settle=self.settle,
        )
        self._stop = threading.Event()
        self.agent.prepare(self._stop)
        self._agent_thread = threading.Thread(
            target=self.agent.run, args=(self._stop,), name="drill-agent", daemon=True
        )
        self._agent_thread.start()
        worker_client = redis.Redis.from_url(url)
        self._worker = Worker(
            RedisStore(worker_client, Keyspace(self.prefix), self.keys),
            self.registry,
            WorkerOptions(concurrency=4, block_ms=100, timer_interval=0.05),
        )
        self._worker.start()

    def kill(self) -> None:
        """SIGKILL the Valkey, then stop the worker and the agent with nothing said to
        anyone (no lease released, no backlog flushed: they cannot reach the site)."""
        if self._server is not None and self._server._process is not None:
            os.kill(self._server._process.pid, signal.SIGKILL)
            self._server._process.wait(timeout=10)
        self._stop.set()
        if self._worker is not None:
            self._worker.stop(timeout=0.5)
        if self._agent_thread is not None:
            self._agent_thread.join(timeout=5)
        self._worker = None
        self._agent_thread = None

    def stop(self) -> None:
        """The orderly end (after the drill, or on Ctrl-C)."""
        self._stop.set()
        if self._worker is not None:
            with contextlib.suppress(Exception):
                self._worker.stop(timeout=2)
        if self._agent_thread is not None:
            self._agent_thread.join(timeout=5)
        if self._server is not None:
            self._server.stop()
        self._worker = None
        self._agent_thread = None
