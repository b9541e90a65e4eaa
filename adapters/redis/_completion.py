"""Waiting for an instance to finish without polling: a subscription to its finish channel.

The commit that leaves an instance finished publishes on ``Keyspace.finished_channel``
(scripts.COMMIT), in the same atomic step that stores the final snapshot. A waiter
subscribes first, waits for the server to confirm, and only then reads the status, so a
finish is either seen by that read or announced to the subscription: none slips between.

Pub/sub delivers at most once, and a reconnect drops what was published meanwhile, so the
waiter also reads the status again every ``recheck`` seconds. That read is the safety net,
not the mechanism: it costs one HMGET per interval, not a loop of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from redis.client import PubSub

from rustyflower.adapters.redis.store import RedisStore
from rustyflower.core.engine import FINISHED, Snapshot
from rustyflower.core.errors import RustyFlowerError
from rustyflower.core.instance_store import InstanceInfo

Progress = Callable[[InstanceInfo], None]

DEFAULT_RECHECK_SECONDS = 5.0
_CONFIRM_SECONDS = 10.0


class ResultTimeoutError(RustyFlowerError, TimeoutError):
    """The instance did not finish within the time given; it carries on."""

    def __init__(self, instance_id: str, status: str, timeout: float) -> None:
        self.instance_id = instance_id
        self.status = status
        self.timeout = timeout
        super().__init__(
            f"instance {instance_id!r} is still {status} after {timeout:g} s; it carries on"
        )


def wait_finished(
    store: RedisStore,
    instance_id: str,
    timeout: float | None = None,
    recheck: float = DEFAULT_RECHECK_SECONDS,
    on_progress: Progress | None = None,
) -> Snapshot:
    """The instance's final snapshot, once it has finished (succeeded, failed, cancelled).

    Raises ``ResultTimeoutError`` after ``timeout`` seconds (None: no limit) and
    ``UnknownInstanceError`` when there is no such instance. ``on_progress`` is given the
    instance's info at every read while it runs (a progress display).
    """
    if timeout is not None and timeout < 0:
        raise ValueError("timeout must be zero or more seconds")
    if recheck <= 0:
        raise ValueError("recheck must be above zero")
    deadline = None if timeout is None else time.monotonic() + timeout
    subscription = store.client.pubsub()
    try:
        subscription.subscribe(store.keys.finished_channel(instance_id))
        _await_confirmation(subscription)
        while True:
            info = store.info(instance_id)
            status = info.status
            if status in FINISHED:
                return store.load(instance_id, fresh=True)
            if on_progress is not None:
                on_progress(info)
            pause = recheck
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    assert timeout is not None
                    raise ResultTimeoutError(instance_id, status, timeout)
                pause = min(pause, remaining)
            # blocks on the socket until a message arrives or the pause ends
            subscription.get_message(ignore_subscribe_messages=True, timeout=pause)
    finally:
        subscription.close()


def _await_confirmation(subscription: PubSub) -> None:
    """Read until the server confirms the subscription: from then on no finish is missed."""
    deadline = time.monotonic() + _CONFIRM_SECONDS
    while time.monotonic() < deadline:
        message = subscription.get_message(timeout=max(0.0, deadline - time.monotonic()))
        if message is not None and message.get("type") == "subscribe":
            return
    raise RustyFlowerError("Redis did not confirm the subscription for the instance's finish")
