"""Running the Redis runner in-process: a worker and the embedded server (rustyflower.worker).

What ``rustyflower worker`` and ``rustyflower dev`` do, for programs that want it in
their own process: a demo, a test, an application that runs its own activities.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from types import TracebackType
from typing import Self

from rustyflower.adapters.redis._client import Client
from rustyflower.adapters.redis.connection import DEFAULT_DATA_DIR, EmbeddedValkey
from rustyflower.adapters.redis.schedule_store import ScheduleStore
from rustyflower.adapters.redis.scheduler import Scheduler
from rustyflower.adapters.redis.worker import Worker as _RedisWorker
from rustyflower.adapters.redis.worker_options import WEEK, UnknownActivityPolicy, WorkerOptions
from rustyflower.core.activities import ActivityRegistry
from rustyflower.core.activities import registry as default_registry

log = logging.getLogger("rustyflower.worker")

_SCHEDULER_RETRY_SECONDS = 5.0


class EmbeddedServer:
    """The zero-configuration server of ``rustyflower dev``: a Valkey started by this
    process, its data kept (append-only) under ``data_dir``.

    ``start()`` returns its URL and writes it to ``data_dir/server.url``, where
    ``Client.connect()`` and the ``rustyflower`` command find it; starting again on the
    same folder keeps every instance. Use it in a ``with`` block or call ``stop()``.
    """

    def __init__(
        self, data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR, *, port: int | None = None
    ) -> None:
        self._server = EmbeddedValkey(data_dir=Path(data_dir), port=port)
        self._url: str | None = None

    def start(self) -> str:
        if self._url is None:
            self._url = self._server.start()
        return self._url

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the embedded server is not started (call start())")
        return self._url

    @property
    def running(self) -> bool:
        return self._server.running

    def stop(self) -> None:
        """Stop the server; its append-only file keeps everything for the next start."""
        self._server.stop()
        self._url = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class Worker:
    """Runs activities, timers and (with ``scheduler``) cron schedules for the flows of
    ``client``'s runner, in threads of this process, until ``stop()``.

    ``activities`` default to the registry that ``@rustyflower.activity`` fills.
    ``concurrency`` activities run at once; ``visibility_timeout`` is how long work a
    dead worker claimed waits before another worker takes it; ``grace_period`` is how
    long ``stop()`` lets running activities finish. Run as many workers (in as many
    processes) as you like: each transition is applied exactly once.
    """

    def __init__(
        self,
        client: Client,
        activities: ActivityRegistry | None = None,
        *,
        concurrency: int = 4,
        name: str | None = None,
        scheduler: bool = False,
        visibility_timeout: float = 30.0,
        grace_period: float = 30.0,
        retention_seconds: float | None = WEEK,
        trim_interval: float | None = 5.0,
        retention_interval: float = 60.0,
        failure_limit: float = 120.0,
        unknown_activity: UnknownActivityPolicy = "route",
        objects_dir: str | Path | None = None,
    ) -> None:
        """``retention_seconds``: finished instances are deleted this long after they
        finished (None keeps them); ``trim_interval``: seconds between trims of
        acknowledged work (None: never); ``failure_limit``: seconds a thread may fail
        every round before the worker counts as unhealthy; ``unknown_activity``: work for
        an activity this worker lacks is "route"d to workers that have it, or "fail"s;
        ``objects_dir``: the folder ``object.put``/``object.get`` service tasks keep objects
        in (None: in Redis)."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        options = WorkerOptions(
            concurrency=concurrency,
            visibility_timeout=visibility_timeout,
            grace_period=grace_period,
            retention_seconds=retention_seconds,
            trim_interval=trim_interval,
            retention_interval=retention_interval,
            failure_limit=failure_limit,
            unknown_activity=unknown_activity,
            objects_dir=str(objects_dir) if objects_dir is not None else None,
        )
        if name:
            options.name = name
        self._client = client
        self._runner = _RedisWorker(
            client._store, activities if activities is not None else default_registry, options
        )
        self._with_scheduler = scheduler
        self._stop = threading.Event()
        self._scheduler_thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self._runner.options.name

    def start(self) -> None:
        self._stop.clear()
        self._runner.start()
        if self._with_scheduler:
            self._scheduler_thread = threading.Thread(
                target=self._schedule, name="rustyflower-scheduler", daemon=True
            )
            self._scheduler_thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop taking work; wait for running activities up to ``timeout`` (default: the
        grace period). Work still running then is reclaimed by another worker later."""
        self._stop.set()
        self._runner.stop(timeout)
        if self._scheduler_thread is not None:
            self._scheduler_thread.join(timeout=5)
            self._scheduler_thread = None

    def run_until_signalled(self) -> None:
        """Run until SIGTERM or SIGINT, then stop gracefully (a program's main loop;
        call it from the main thread, where Python delivers signals)."""
        asked = threading.Event()
        previous = {
            signum: signal.signal(signum, lambda *_: asked.set())
            for signum in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            self.start()
            while not asked.wait(0.5):
                pass
            log.info("stopping: letting running activities finish")
        finally:
            self.stop()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _schedule(self) -> None:
        store = self._client._store
        scheduler = Scheduler(
            store,
            self._runner.conductor,
            ScheduleStore(store.client, store.keys),
            holder=self.name,
        )
        while not self._stop.is_set():
            try:
                scheduler.run(self._stop)
            except Exception:  # keep scheduling: a bad tick must not end the thread
                log.exception("scheduler error; retrying in %.0f s", _SCHEDULER_RETRY_SECONDS)
                self._stop.wait(_SCHEDULER_RETRY_SECONDS)


__all__ = ["EmbeddedServer", "Worker"]
