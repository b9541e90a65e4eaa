"""The Redis runner from asyncio: ``AsyncClient`` and ``AsyncInstanceHandle``.

Every operation that changes an instance is the synchronous ``Client``'s, run on a
small pool of threads of this client's own, so there is one implementation of starting,
signalling and the compare-and-set behind it, and the event loop never blocks on Redis.
``status``, the read an API serves most, is read natively on the loop (a hop to a thread
and back costs more than the read). Waiting is different too: ``wait`` and ``result``
subscribe to the instance's finish channel with redis-py's asyncio client, all on one
connection per event loop, so a thousand waiting coroutines hold one connection and no
thread at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from types import TracebackType
from typing import Any, ClassVar, ParamSpec, Self, TypeVar

import redis
import redis.asyncio

from rustyflower.adapters.redis._client import (
    Client,
    InstanceFailedError,
    SignalReceipt,
)
from rustyflower.adapters.redis._completion import DEFAULT_RECHECK_SECONDS, ResultTimeoutError
from rustyflower.adapters.redis._status import InstanceStatus
from rustyflower.adapters.redis.connection import RedisUnavailableError
from rustyflower.adapters.redis.keys import Priority
from rustyflower.adapters.redis.listing import INFO_FIELDS, InstancePage, info_of
from rustyflower.adapters.redis.runner_stats import RunnerStats
from rustyflower.core.activities import ActivityRegistry
from rustyflower.core.engine import FINISHED, HistoryEntry, Status
from rustyflower.core.errors import RustyFlowerError, UnknownInstanceError
from rustyflower.core.model import FlowDefinition
from rustyflower.core.reports import Report
from rustyflower.core.snapshot import SnapshotKeys
from rustyflower.core.snapshot.document import decode_snapshot

log = logging.getLogger("rustyflower.client")
P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_THREADS = 16
_CONFIRM_SECONDS = 10.0
_READ_CONNECTIONS = 32


class AsyncClient:
    """``Client`` for asyncio: the same operations, awaited.

    Make one with ``AsyncClient.connect()`` (it connects at once, as ``Client.connect``
    does) and close it with ``await client.aclose()`` or an ``async with`` block.
    """

    sync_client: ClassVar[type[Client]] = Client

    def __init__(self, client: Client, *, threads: int = DEFAULT_THREADS) -> None:
        if threads < 1:
            raise ValueError("threads must be 1 or more")
        self._client = client
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rustyflower")
        self._watching: _FinishWatcher | None = None

    @classmethod
    def connect(
        cls,
        url: str | None = None,
        *,
        prefix: str | None = None,
        keys: SnapshotKeys | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        shards: int | None = None,
        threads: int = DEFAULT_THREADS,
    ) -> Self:
        """Connect as ``Client.connect`` does (same settings); ``threads`` bounds how many
        operations run at once (waits are not counted: they use no thread)."""
        client = cls.sync_client.connect(
            url, prefix=prefix, keys=keys, data_dir=data_dir, shards=shards
        )
        return cls(client, threads=threads)

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def sync(self) -> Client:
        """The synchronous client underneath (same connection pool and caches)."""
        return self._client

    @property
    def url(self) -> str:
        return self._client.url

    @property
    def prefix(self) -> str:
        return self._client.prefix

    async def aclose(self) -> None:
        watcher, self._watching = self._watching, None
        if watcher is not None and watcher.loop is asyncio.get_running_loop():
            await watcher.aclose()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncClient({self.url!r}, prefix={self.prefix!r})"

    async def _run(self, action: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(action, *args, **kwargs))

    # --- flows and starting ---------------------------------------------------------------

    async def register(
        self, definition: FlowDefinition, *, activities: ActivityRegistry | None = None
    ) -> bool:
        return await self._run(self._client.register, definition, activities=activities)

    async def start(
        self,
        flow: str,
        input: Any = None,
        *,
        id: str | None = None,
        version: str | None = None,
        priority: Priority = "normal",
        concurrency_key: str | None = None,
    ) -> AsyncInstanceHandle:
        handle = await self._run(
            self._client.start,
            flow,
            input,
            id=id,
            version=version,
            priority=priority,
            concurrency_key=concurrency_key,
        )
        return AsyncInstanceHandle(self, handle.id, created=handle.created)

    async def start_many(
        self,
        flow: str,
        inputs: Sequence[Any],
        *,
        version: str | None = None,
        priority: Priority = "normal",
        concurrency_key: str | None = None,
    ) -> list[AsyncInstanceHandle]:
        handles = await self._run(
            self._client.start_many,
            flow,
            inputs,
            version=version,
            priority=priority,
            concurrency_key=concurrency_key,
        )
        return [AsyncInstanceHandle(self, handle.id, created=True) for handle in handles]

    # --- instances ------------------------------------------------------------------------

    async def instance(self, instance_id: str) -> AsyncInstanceHandle:
        handle = await self._run(self._client.instance, instance_id)
        return AsyncInstanceHandle(self, handle.id)

    async def instances(
        self, *, flow: str | None = None, status: Status | None = None, limit: int = 100
    ) -> list[AsyncInstanceHandle]:
        handles = await self._run(self._client.instances, flow=flow, status=status, limit=limit)
        return [AsyncInstanceHandle(self, handle.id) for handle in handles]

    async def list_instances(
        self,
        *,
        flow: str | None = None,
        status: Status | None = None,
        held: bool | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> InstancePage:
        return await self._run(
            self._client.list_instances,
            flow=flow,
            status=status,
            held=held,
            limit=limit,
            cursor=cursor,
        )

    async def status(self, instance_id: str) -> InstanceStatus:
        """Read natively on the event loop (one round trip): the hot path of an API."""
        store = self._client._store
        key = store.keys.instance(instance_id)
        try:
            async with self._watcher().redis.pipeline(transaction=False) as pipe:
                pipe.hmget(key, INFO_FIELDS)
                pipe.hget(key, "snap")
                values, raw = await pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise RedisUnavailableError(f"Redis at {self.url} went away ({error})") from None
        if values[4] is None or raw is None:
            raise UnknownInstanceError(f"no instance {instance_id!r} in this store")
        snapshot = decode_snapshot(raw, store.snapshot_keys)
        return InstanceStatus.of(info_of(instance_id, values), snapshot)

    async def history(self, instance_id: str) -> list[HistoryEntry]:
        return await self._run(self._client.history, instance_id)

    async def signal(self, instance_id: str, event: str, data: Any = None) -> SignalReceipt:
        return await self._run(self._client.signal, instance_id, event, data)

    async def hold(self, instance_id: str, reason: str | None = None) -> InstanceStatus:
        return await self._run(self._client.hold, instance_id, reason)

    async def release(self, instance_id: str) -> InstanceStatus:
        return await self._run(self._client.release, instance_id)

    async def cancel(self, instance_id: str, reason: str | None = None) -> InstanceStatus:
        return await self._run(self._client.cancel, instance_id, reason)

    async def retry(self, instance_id: str) -> InstanceStatus:
        return await self._run(self._client.retry, instance_id)

    async def snapshot(self, instance_id: str) -> bytes:
        return await self._run(self._client.snapshot, instance_id)

    async def flows(self) -> list[dict[str, Any]]:
        return await self._run(self._client.flows)

    async def stats(self) -> RunnerStats:
        return await self._run(self._client.stats)

    async def report(self, since: datetime, until: datetime | None = None) -> Report:
        return await self._run(self._client.report, since, until)

    # --- waiting --------------------------------------------------------------------------

    async def wait(
        self,
        instance_id: str,
        timeout: float | None = None,
        *,
        recheck: float = DEFAULT_RECHECK_SECONDS,
    ) -> InstanceStatus:
        """Until the instance finished; its status. A subscription to its finish, as
        ``Client.wait`` (``ResultTimeoutError`` after ``timeout`` seconds)."""
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be zero or more seconds")
        if recheck <= 0:
            raise ValueError("recheck must be above zero")
        deadline = None if timeout is None else time.monotonic() + timeout
        channel = self._client._store.keys.finished_channel(instance_id)
        try:
            async with self._watcher().watching(channel) as finished:
                while True:
                    info = await self._run(self._client._store.info, instance_id)
                    if info.status in FINISHED:
                        return await self.status(instance_id)
                    pause = recheck
                    if deadline is not None:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            assert timeout is not None
                            raise ResultTimeoutError(instance_id, info.status, timeout)
                        pause = min(pause, remaining)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(finished.wait(), pause)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise RedisUnavailableError(f"Redis at {self.url} went away ({error})") from None

    async def result(self, instance_id: str, timeout: float | None = None) -> Any:
        """The output once it succeeded (``InstanceFailedError`` when it failed or was
        cancelled, ``ResultTimeoutError`` when it still runs after ``timeout`` seconds)."""
        final = await self.wait(instance_id, timeout)
        if final.status != "succeeded":
            raise InstanceFailedError(final)
        return final.output

    def _watcher(self) -> _FinishWatcher:
        loop = asyncio.get_running_loop()
        if self._watching is None or self._watching.loop is not loop:
            # connections belong to the loop that made them: a new loop, a new watcher
            self._watching = _FinishWatcher(self._client._url, loop)
        return self._watching


class _FinishWatcher:
    """One pub/sub connection for every wait of a client on one event loop.

    A reader task takes the messages off the connection and sets the event of each
    channel's waiters. A wait reads the status only once the server confirmed its
    subscription, so a finish is either seen by that read or announced. A reader that
    meets an error logs it and carries on (the waits read the status every ``recheck``
    seconds meanwhile); a wait never hangs on a dead reader.
    """

    def __init__(self, url: str, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        # a bounded pool that makes the excess wait: a thousand concurrent reads must not
        # open a thousand connections (the server refuses them: "Too many connections")
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url, max_connections=_READ_CONNECTIONS, timeout=30, socket_connect_timeout=5
        )
        self.redis = redis.asyncio.Redis(connection_pool=pool)
        """For reads on this loop (its pool); the subscription has a connection of its own."""
        self._pubsub = self.redis.pubsub()
        self._finished: dict[str, asyncio.Event] = {}
        self._confirmed: dict[str, asyncio.Event] = {}
        self._users: dict[str, int] = {}
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def watching(self, channel: str) -> AsyncIterator[asyncio.Event]:
        """The event set when ``channel`` announces a finish (subscribed and confirmed)."""
        async with self._lock:
            first = channel not in self._users
            self._users[channel] = self._users.get(channel, 0) + 1
            if first:
                self._finished[channel] = asyncio.Event()
                self._confirmed[channel] = asyncio.Event()
                await self._pubsub.subscribe(channel)
            self._ensure_reader()
        try:
            try:
                await asyncio.wait_for(self._confirmed[channel].wait(), _CONFIRM_SECONDS)
            except TimeoutError:
                raise RustyFlowerError(
                    "Redis did not confirm the subscription for the instance's finish"
                ) from None
            yield self._finished[channel]
        finally:
            async with self._lock:
                self._users[channel] -= 1
                if not self._users[channel]:
                    del self._users[channel], self._finished[channel], self._confirmed[channel]
                    with contextlib.suppress(redis.RedisError, OSError):
                        await self._pubsub.unsubscribe(channel)

    def _ensure_reader(self) -> None:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read(), name="rustyflower-finishes")

    async def _read(self) -> None:
        while self._users:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except Exception:  # the waits fall back on their rechecks meanwhile
                log.warning("reading finish announcements failed; retrying", exc_info=True)
                await asyncio.sleep(0.5)
                continue
            if message is None:
                continue
            channel = _text(message.get("channel") or b"")
            kind = message.get("type")
            if kind == "subscribe" and channel in self._confirmed:
                self._confirmed[channel].set()
            elif kind == "message" and channel in self._finished:
                self._finished[channel].set()

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        with contextlib.suppress(redis.RedisError, OSError):
            await self._pubsub.aclose()
            await self.redis.aclose()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class AsyncInstanceHandle:
    """One instance: the ``AsyncClient`` operations without repeating its id."""

    def __init__(
        self, client: AsyncClient, instance_id: str, *, created: bool | None = None
    ) -> None:
        self._client = client
        self._id = instance_id
        self.created = created
        """From ``start``: True when that call created the instance, False when the id
        existed already; None for a handle of an existing instance."""

    @property
    def id(self) -> str:
        return self._id

    def __repr__(self) -> str:
        return f"AsyncInstanceHandle({self._id!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, AsyncInstanceHandle)
            and other._id == self._id
            and other._client is self._client
        )

    def __hash__(self) -> int:
        return hash(self._id)

    async def status(self) -> InstanceStatus:
        return await self._client.status(self._id)

    async def history(self) -> list[HistoryEntry]:
        return await self._client.history(self._id)

    async def signal(self, event: str, data: Any = None) -> SignalReceipt:
        return await self._client.signal(self._id, event, data)

    async def hold(self, reason: str | None = None) -> InstanceStatus:
        return await self._client.hold(self._id, reason)

    async def release(self) -> InstanceStatus:
        return await self._client.release(self._id)

    async def cancel(self, reason: str | None = None) -> InstanceStatus:
        return await self._client.cancel(self._id, reason)

    async def retry(self) -> InstanceStatus:
        return await self._client.retry(self._id)

    async def snapshot(self) -> bytes:
        return await self._client.snapshot(self._id)

    async def wait(
        self, timeout: float | None = None, *, recheck: float = DEFAULT_RECHECK_SECONDS
    ) -> InstanceStatus:
        return await self._client.wait(self._id, timeout, recheck=recheck)

    async def result(self, timeout: float | None = None) -> Any:
        return await self._client.result(self._id, timeout)


__all__ = ["AsyncClient", "AsyncInstanceHandle"]
