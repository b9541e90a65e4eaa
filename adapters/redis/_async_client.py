"""The Redis runner from asyncio: ``AsyncClient`` and ``AsyncInstanceHandle``.

Every operation is the synchronous ``Client``'s, run on a small pool of threads of this
client's own, so there is one implementation of starting, signalling and the
compare-and-set behind it, and the event loop never blocks on Redis or on decoding a
snapshot. Waiting is different: ``wait`` and ``result`` subscribe to the instance's
finish channel with redis-py's asyncio client, so a thousand waiting coroutines hold
one connection each and no thread at all.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Callable, Sequence
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
from rustyflower.adapters.redis.listing import InstancePage
from rustyflower.adapters.redis.runner_stats import RunnerStats
from rustyflower.core.activities import ActivityRegistry
from rustyflower.core.engine import FINISHED, HistoryEntry, Status
from rustyflower.core.errors import RustyFlowerError
from rustyflower.core.model import FlowDefinition
from rustyflower.core.reports import Report
from rustyflower.core.snapshot import SnapshotKeys

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_THREADS = 16
_CONFIRM_SECONDS = 10.0


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
        self._subscriber: redis.asyncio.Redis | None = None

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
        if self._subscriber is not None:
            await self._subscriber.aclose()
            self._subscriber = None
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
        return await self._run(self._client.status, instance_id)

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
            subscription = self._subscriber_client().pubsub()
            try:
                await subscription.subscribe(channel)
                await _confirmed(subscription)
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
                    await subscription.get_message(ignore_subscribe_messages=True, timeout=pause)
            finally:
                await subscription.aclose()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise RedisUnavailableError(f"Redis at {self.url} went away ({error})") from None

    async def result(self, instance_id: str, timeout: float | None = None) -> Any:
        """The output once it succeeded (``InstanceFailedError`` when it failed or was
        cancelled, ``ResultTimeoutError`` when it still runs after ``timeout`` seconds)."""
        final = await self.wait(instance_id, timeout)
        if final.status != "succeeded":
            raise InstanceFailedError(final)
        return final.output

    def _subscriber_client(self) -> redis.asyncio.Redis:
        if self._subscriber is None:
            self._subscriber = redis.asyncio.Redis.from_url(
                self._client._url, socket_connect_timeout=5
            )
        return self._subscriber


async def _confirmed(subscription: Any) -> None:
    """Read until the server confirms the subscription: from then on no finish is missed."""
    deadline = time.monotonic() + _CONFIRM_SECONDS
    while time.monotonic() < deadline:
        message = await subscription.get_message(timeout=max(0.0, deadline - time.monotonic()))
        if message is not None and message.get("type") == "subscribe":
            return
    raise RustyFlowerError("Redis did not confirm the subscription for the instance's finish")


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
