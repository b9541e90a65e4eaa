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

import os
from typing import Any

from rustyflower.adapters.continuity.cloud import CloudContinuity
from rustyflower.adapters.continuity.errors import ContinuityError
from rustyflower.adapters.continuity.outcomes import CLOUDS, LOCAL, Cloud, Outcome
from rustyflower.adapters.continuity.signals import deliver_signal
from rustyflower.adapters.continuity.start import start_in_cloud
from rustyflower.adapters.redis._client import Client as _RedisClient
from rustyflower.adapters.redis._client import (
    InstanceFailedError,
    InstanceHandle,
    InstanceStatus,
)
from rustyflower.adapters.redis._completion import ResultTimeoutError
from rustyflower.adapters.redis.conductor import ContentionError, FencedError, new_instance_id
from rustyflower.adapters.redis.connection import RedisUnavailableError
from rustyflower.adapters.redis.store import (
    UnknownFlowError,
    UnknownInstanceError,
    VersionConflictError,
)
from rustyflower.core.engine import HistoryEntry
from rustyflower.core.instance_store import InstanceStore, Priority


def _continuity(cloud: str, store: InstanceStore) -> CloudContinuity:
    """The cloud's continuity for this store, its settings from the environment."""
    if cloud == "aws":
        from rustyflower.adapters.continuity.aws import AwsContinuity, AwsSettings  # noqa: PLC0415

        return AwsContinuity(store, AwsSettings.from_env(os.environ))
    if cloud == "azure":
        from rustyflower.adapters.continuity.azure import (  # noqa: PLC0415
            AzureContinuity,
            AzureSettings,
        )

        return AzureContinuity(store, AzureSettings.from_env(os.environ))
    raise ValueError(f"on={cloud!r}: aws or azure")


class Client(_RedisClient):
    __doc__ = _RedisClient.__doc__

    def start(
        self,
        flow: str,
        input: Any = None,
        *,
        id: str | None = None,
        version: str | None = None,
        priority: Priority = "normal",
        concurrency_key: str | None = None,
        on: Cloud | None = None,
    ) -> InstanceHandle:
        """Start an instance of a registered flow (latest version unless ``version``).

        With an ``id`` that exists already, nothing starts: the handle is that instance's.
        ``on="aws"`` or ``"azure"`` starts it in that cloud instead, found with the
        settings ``rustyflower failover`` reads from the environment (docs/failover.md):
        it lives there, ``status`` shows it, ``signal`` reaches it, and ``failback`` brings
        it here. A refusal raises ``ContinuityError`` (the instance is then cancelled).
        """
        if on is None:
            return super().start(
                flow,
                input,
                id=id,
                version=version,
                priority=priority,
                concurrency_key=concurrency_key,
            )
        if priority != "normal" or concurrency_key is not None:
            raise ValueError("an instance started in a cloud has no priority or concurrency key")
        outcome = start_in_cloud(
            _continuity(on, self._store),
            flow,
            input,
            instance_id=id or new_instance_id(),
            version=version,
        )
        return InstanceHandle(self, outcome.instance_id)

    def failback(self, instance_id: str) -> Outcome:
        """Bring an instance living in a cloud back here (``rustyflower failback``)."""
        owner = self._store.info(instance_id).owner
        if owner not in CLOUDS:
            raise ContinuityError(f"instance {instance_id!r} is not in a cloud (owner {owner})")
        return _continuity(owner, self._store).failback(instance_id)

    def _signal_elsewhere(self, instance_id: str, event: str, data: Any) -> bool:
        # an instance that failed over is signalled in its cloud, as `rustyflower signal` does
        if self._store.info(instance_id).owner == LOCAL:
            return False
        return deliver_signal(self._store, instance_id, event, data) is not None


__all__ = [
    "Client",
    "ContentionError",
    "ContinuityError",
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
