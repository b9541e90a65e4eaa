"""The Redis runner from Python: register flows, start instances, operate them, wait.

    from rustyflower.client import Client

    with Client.connect() as client:          # RUSTYFLOWER_REDIS_URL, or `rustyflower dev`
        client.register(read_definition("flow.yaml"), activities=registry)
        order = client.start("order", {"total": 42.0})
        order.signal("approval", {"approved": True})
        print(order.result(timeout=60))

``Client`` methods take an instance id; an ``InstanceHandle`` (from ``start``,
``start_many``, ``instance``, ``instances``) has the same methods without it.
``AsyncClient`` is the same for asyncio (``await client.start(...)``,
``await order.result()``). Run workers with ``rustyflower.worker`` or the
``rustyflower worker`` command.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from rustyflower.adapters.continuity.batch import run_batch, select_instances
from rustyflower.adapters.continuity.cloud import CloudContinuity
from rustyflower.adapters.continuity.errors import ContinuityConfigError, ContinuityError
from rustyflower.adapters.continuity.outcomes import CLOUDS, LOCAL, Cloud, CloudView, Outcome
from rustyflower.adapters.continuity.reclaim import (
    ReclaimReasonError,
    checked_reason,
    reclaim_runner,
    reclaim_step,
)
from rustyflower.adapters.continuity.signals import deliver_signal
from rustyflower.adapters.continuity.start import start_in_cloud
from rustyflower.adapters.continuity.whereabouts import ask_cloud
from rustyflower.adapters.redis._async_client import AsyncClient as _RedisAsyncClient
from rustyflower.adapters.redis._async_client import AsyncInstanceHandle
from rustyflower.adapters.redis._client import Client as _RedisClient
from rustyflower.adapters.redis._client import (
    InstanceFailedError,
    InstanceHandle,
    SignalReceipt,
)
from rustyflower.adapters.redis._completion import ResultTimeoutError
from rustyflower.adapters.redis._status import InstanceStatus
from rustyflower.adapters.redis.conductor import ContentionError, FencedError, new_instance_id
from rustyflower.adapters.redis.connection import RedisUnavailableError
from rustyflower.adapters.redis.listing import CursorError, InstancePage
from rustyflower.adapters.redis.runner_stats import (
    Histogram,
    ReplicationStats,
    ReplicationTarget,
    RunnerStats,
)
from rustyflower.adapters.redis.store import (
    UnknownFlowError,
    UnknownInstanceError,
    VersionConflictError,
)
from rustyflower.core.engine import HistoryEntry
from rustyflower.core.instance_store import InstanceInfo, Priority
from rustyflower.core.reports import FlowSummary, Report, StepSummary


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
            self._continuity(_cloud(on), None),
            flow,
            input,
            instance_id=id or new_instance_id(),
            version=version,
        )
        return InstanceHandle(self, outcome.instance_id)

    def _signal_elsewhere(self, instance_id: str, event: str, data: Any) -> tuple[str, str] | None:
        # an instance that failed over is signalled in its cloud, as `rustyflower signal` does
        if self._store.info(instance_id).owner == LOCAL:
            return None
        delivered = deliver_signal(self._store, instance_id, event, data)
        return None if delivered is None else (delivered.cloud, delivered.detail)

    # --- the lifeboat ---------------------------------------------------------------------

    def failover(
        self,
        instance_ids: Sequence[str] = (),
        *,
        to: str,
        every: bool = False,
        settings: Mapping[str, Any] | None = None,
    ) -> list[Outcome]:
        """Continue instances in AWS or Azure, as ``rustyflower failover --to``: each is
        fenced here (epoch + 1, owner the cloud), then started there. One ``Outcome`` per
        instance; a refused one is reported, the others go on.

        ``every``: every eligible running instance instead of ``instance_ids``. The
        cloud's settings come from the environment (docs/failover.md); ``settings``
        overrides them by name (``region``, ``state_machine_prefix``, ``function_url``...).
        """
        cloud = _cloud(to)
        runner = self._continuity(cloud, settings)
        targets = select_instances(self._store, "failover", cloud, instance_ids, every)
        return run_batch(targets, runner.failover, action="failover", cloud=cloud)

    def failback(
        self,
        instance_ids: Sequence[str] = (),
        *,
        source: str,
        every: bool = False,
        settings: Mapping[str, Any] | None = None,
        force: bool = False,
        reason: str | None = None,
    ) -> list[Outcome]:
        """Bring instances back from AWS or Azure (``source``) and resume them here, as
        ``rustyflower failback --from``; one ``Outcome`` per instance.

        ``force=True`` (with a ``reason``, kept in each instance's history) is
        ``failback --force``: each instance comes back at epoch + 1 whatever the cloud
        does, from the cloud's state when it can be read, else from the site's snapshot
        (the state at failover time); ``outcome.source`` says which (``cloud`` or
        ``site``) and ``outcome.warning`` says what may run again (docs/failover.md,
        "When the cloud is gone"). ``force`` without a reason, or a reason without
        ``force``, raises ``ValueError``.
        """
        cloud = _cloud(source)
        chosen_reason = checked_reason(force, reason)
        if chosen_reason is not None:
            runner = reclaim_runner(cloud, self._store, os.environ, settings)
            step = reclaim_step(runner, chosen_reason)
        else:
            step = self._continuity(cloud, settings).failback
        targets = select_instances(self._store, "failback", cloud, instance_ids, every)
        return run_batch(targets, step, action="failback", cloud=cloud)

    def ask_cloud(self, instance_id: str) -> CloudView | None:
        """What the cloud an instance lives in says of it (its run's status, the states it
        is at), as ``rustyflower status`` shows it; None for a local instance. The cloud
        is asked once, briefly, with the settings ``failover`` reads from the
        environment; when it cannot be asked, ``asked`` is False and ``problem`` says why
        (this never raises for an unreachable cloud)."""
        return ask_cloud(self._store, instance_id, os.environ)

    def _continuity(self, cloud: Cloud, settings: Mapping[str, Any] | None) -> CloudContinuity:
        overrides = dict(settings or {})
        if cloud == "aws":
            from rustyflower.adapters.continuity.aws import AwsContinuity, AwsSettings  # noqa: PLC0415

            aws = AwsSettings.from_env(os.environ, **overrides)
            return AwsContinuity(self._store, aws, keys=self._store.snapshot_keys)
        from rustyflower.adapters.continuity.azure import AzureContinuity, AzureSettings  # noqa: PLC0415

        azure = AzureSettings.from_env(os.environ, **overrides)
        return AzureContinuity(self._store, azure, keys=self._store.snapshot_keys)


class AsyncClient(_RedisAsyncClient):
    __doc__ = _RedisAsyncClient.__doc__
    sync_client = Client

    @property
    def sync(self) -> Client:
        client = self._client
        assert isinstance(client, Client)
        return client

    async def failover(
        self,
        instance_ids: Sequence[str] = (),
        *,
        to: str,
        every: bool = False,
        settings: Mapping[str, Any] | None = None,
    ) -> list[Outcome]:
        return await self._run(
            self.sync.failover, instance_ids, to=to, every=every, settings=settings
        )

    async def failback(
        self,
        instance_ids: Sequence[str] = (),
        *,
        source: str,
        every: bool = False,
        settings: Mapping[str, Any] | None = None,
        force: bool = False,
        reason: str | None = None,
    ) -> list[Outcome]:
        checked_reason(force, reason)  # at once, not in a thread
        return await self._run(
            self.sync.failback,
            instance_ids,
            source=source,
            every=every,
            settings=settings,
            force=force,
            reason=reason,
        )

    async def ask_cloud(self, instance_id: str) -> CloudView | None:
        return await self._run(self.sync.ask_cloud, instance_id)


def _cloud(value: str) -> Cloud:
    for cloud in CLOUDS:
        if value == cloud:
            return cloud
    raise ValueError(f"cloud {value!r}: use aws or azure")


__all__ = [
    "AsyncClient",
    "AsyncInstanceHandle",
    "Client",
    "CloudView",
    "ContentionError",
    "ContinuityConfigError",
    "ContinuityError",
    "CursorError",
    "FencedError",
    "FlowSummary",
    "Histogram",
    "HistoryEntry",
    "InstanceFailedError",
    "InstanceHandle",
    "InstanceInfo",
    "InstancePage",
    "InstanceStatus",
    "Outcome",
    "ReclaimReasonError",
    "RedisUnavailableError",
    "ReplicationStats",
    "ReplicationTarget",
    "Report",
    "ResultTimeoutError",
    "RunnerStats",
    "SignalReceipt",
    "StepSummary",
    "UnknownFlowError",
    "UnknownInstanceError",
    "VersionConflictError",
]
