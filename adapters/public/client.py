"""The Redis runner from Python: register flows, start instances, operate them, wait.

    from rustyflower.client import Client

    with Client.connect() as client:          # RUSTYFLOWER_REDIS_URL, or `rustyflower dev`
        client.register(read_definition("flow.yaml"), activities=registry)
        order = client.start("order", {"total": 42.0})
        order.signal("approval", {"approved": True})
        print(order.result(timeout=60))

``Client`` methods take an instance id; an ``InstanceHandle`` (from ``start``,
``start_many``, ``instance``, ``instances``) has the same methods without it. Everything
here is synchronous. Run workers with ``rustyflower.worker`` or the
``rustyflower worker`` command.
"""

from __future__ import annotations

from typing import Any

from rustyflower.adapters.continuity.outcomes import LOCAL
from rustyflower.adapters.continuity.signals import deliver_signal
from rustyflower.adapters.redis._client import Client as _RedisClient
from rustyflower.adapters.redis._client import (
    InstanceFailedError,
    InstanceHandle,
    InstanceStatus,
)
from rustyflower.adapters.redis._completion import ResultTimeoutError
from rustyflower.adapters.redis.conductor import ContentionError, FencedError
from rustyflower.adapters.redis.connection import RedisUnavailableError
from rustyflower.adapters.redis.store import (
    UnknownFlowError,
    UnknownInstanceError,
    VersionConflictError,
)
from rustyflower.core.engine import HistoryEntry


class Client(_RedisClient):
    __doc__ = _RedisClient.__doc__

    def _signal_elsewhere(self, instance_id: str, event: str, data: Any) -> bool:
        # an instance that failed over is signalled in its cloud, as `rustyflower signal` does
        if self._store.info(instance_id).owner == LOCAL:
            return False
        return deliver_signal(self._store, instance_id, event, data) is not None


__all__ = [
    "Client",
    "ContentionError",
    "FencedError",
    "HistoryEntry",
    "InstanceFailedError",
    "InstanceHandle",
    "InstanceStatus",
    "RedisUnavailableError",
    "ResultTimeoutError",
    "UnknownFlowError",
    "UnknownInstanceError",
    "VersionConflictError",
]
