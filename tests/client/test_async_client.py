"""rustyflower.client.AsyncClient against a real server (the embedded Valkey, Redis 7).

Each test is a coroutine run with ``asyncio.run``; the worker is the synchronous one in
a thread, as a program that starts flows from asyncio and runs workers elsewhere has.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from rustyflower import ActivityRegistry, Flow, NoWaiterError, SnapshotKeys
from rustyflower.client import (
    AsyncClient,
    Client,
    CursorError,
    InstanceFailedError,
    ResultTimeoutError,
    UnknownInstanceError,
)
from rustyflower.worker import Worker
from tests.client.test_client import commands
from tests.redis.servers import ServerProcess

pytestmark = pytest.mark.emulator

activities = ActivityRegistry()


@activities.activity
def double(payload: dict[str, Any]) -> dict[str, Any]:
    return {"value": payload["value"] * 2}


@activities.activity
def refuse(payload: Any) -> None:
    raise PermissionError("not today")


def approval() -> Any:
    return (
        Flow("approval")
        .wait_for_event("Wait", "approval", result_path="$.answer")
        .succeed("Done")
        .build()
    )


@pytest.fixture
def aclient(server: ServerProcess, prefix: str, client: Client) -> Iterator[AsyncClient]:
    """An AsyncClient on the same server and prefix as ``client`` (which cleans up)."""
    made = AsyncClient.connect(server.url, prefix=prefix, keys=SnapshotKeys.none(), threads=4)
    yield made
    asyncio.run(made.aclose())


def test_start_and_result(client: Client, aclient: AsyncClient) -> None:
    client.register(Flow("doubling").task("Double", "double").build(), activities=activities)

    async def scenario() -> tuple[Any, bool | None, bool | None, str]:
        order = await aclient.start("doubling", {"value": 21}, id="order-1")
        again = await aclient.start("doubling", {"value": 1}, id="order-1")
        output = await order.result(timeout=10)
        return output, order.created, again.created, (await order.status()).status

    with Worker(client, activities, concurrency=1):
        output, created, created_again, status = asyncio.run(scenario())
    assert output == {"value": 42}
    assert (created, created_again, status) == (True, False, "succeeded")


def test_a_thousand_waits_need_no_thread_and_no_polling(
    server: ServerProcess, client: Client, aclient: AsyncClient
) -> None:
    """Waiting is an asyncio subscription: a thousand waits run at once on a pool of four
    threads, each learns of its end when it is announced, and nobody polls."""
    client.register(approval())
    ids = [handle.id for handle in client.start_many("approval", [{}] * 1000)]

    async def scenario() -> list[Any]:
        waits = [asyncio.ensure_future(aclient.wait(i, 60, recheck=30)) for i in ids]
        await asyncio.sleep(2.0)  # every wait has subscribed and read the status once
        assert not any(wait.done() for wait in waits)
        reads = commands(server, "hmget")
        for instance_id in ids:
            await aclient.signal(instance_id, "approval", {"ok": True})
        finals = await asyncio.gather(*waits)
        # per instance: the signal's own reads (owner, placement, the status it leaves),
        # the wait's read after the notice and its final status: a handful. A poll every
        # few milliseconds while the signals go out would be hundreds per wait.
        assert commands(server, "hmget") - reads < 8 * len(ids)
        return [final.output for final in finals]

    began = time.monotonic()
    outputs = asyncio.run(scenario())
    assert outputs == [{"answer": {"ok": True}}] * 1000
    assert time.monotonic() - began < 60


def test_failures_timeouts_and_unknown_ids(client: Client, aclient: AsyncClient) -> None:
    client.register(Flow("refusing").task("Refuse", "refuse").build(), activities=activities)
    client.register(approval())

    async def scenario() -> None:
        refused = await aclient.start("refusing", {})
        with pytest.raises(InstanceFailedError, match="PermissionError"):
            await refused.result(timeout=10)
        waiting = await aclient.start("approval", {})
        with pytest.raises(ResultTimeoutError, match=r"still running after 0\.2 s"):
            await waiting.result(timeout=0.2)
        with pytest.raises(NoWaiterError):
            await waiting.signal("nobody-waits-for-this")
        with pytest.raises(UnknownInstanceError):
            await aclient.status("no-such-instance")
        with pytest.raises(UnknownInstanceError):
            await aclient.wait("no-such-instance", timeout=1)

    with Worker(client, activities, concurrency=1):
        asyncio.run(scenario())


def test_controls_give_the_status_they_leave(client: Client, aclient: AsyncClient) -> None:
    client.register(approval())

    async def scenario() -> None:
        order = await aclient.start("approval", {})
        held = await order.hold("checking")
        assert (held.held, held.status) == (True, "running")
        released = await order.release()
        assert released.held is False and released.seq == held.seq + 1
        receipt = await order.signal("approval", {"approved": True})
        assert receipt.cloud is None and receipt.status is not None
        assert (receipt.status.status, receipt.status.output) == (
            "succeeded",
            {"answer": {"approved": True}},
        )
        other = await aclient.start("approval", {})
        cancelled = await other.cancel("not needed")
        assert (cancelled.status, cancelled.error) == ("cancelled", "States.Cancelled")
        history = await other.history()
        assert [entry.kind for entry in history][-1] == "FlowCancelled"
        assert (await other.snapshot()).startswith(b"{")

    asyncio.run(scenario())


def test_listing_pages_with_a_cursor(client: Client, aclient: AsyncClient) -> None:
    """Pages are newest first, hold every instance exactly once, and go on after the
    cursor even when new instances start between pages."""
    client.register(approval())
    first = [client.start("approval", {"n": n}, id=f"i{n:02d}").id for n in range(7)]

    async def scenario() -> list[str]:
        seen: list[str] = []
        page = await aclient.list_instances(flow="approval", limit=3)
        seen += [info.instance_id for info in page.items]
        await aclient.start("approval", {}, id="late")  # newer than every cursor
        while page.next_cursor is not None:
            page = await aclient.list_instances(flow="approval", limit=3, cursor=page.next_cursor)
            seen += [info.instance_id for info in page.items]
        with pytest.raises(CursorError):
            await aclient.list_instances(cursor="not-a-cursor")
        held = await aclient.list_instances(held=True)
        assert held.items == []
        return seen

    seen = asyncio.run(scenario())
    assert seen == list(reversed(first))
