"""Failover to Azure Durable Functions, failback from it, signals to instances living there.

Failover (per instance): fence the instance locally, then POST its signed snapshot (with
the definitions of the sub-flows it can start and the snapshots of its child flows in
flight) to the Function App's starter (``adapters.azure.durable_client``). The
orchestration's id is the instance's, so a repeated failover answers with the existing
orchestration (``started: false``).

Failback, at a safe point:

1. raise ``rustyflower.hold`` (unless ``hold=False`` or the instance is held already):
   nothing new is dispatched, so the instance settles;
2. read its status: the custom status says its ``seq`` and the ``seq`` of its last
   checkpoint; once they are equal, read that checkpoint from the Blob container
   (``adapters.azure.blob_store``) and terminate the orchestration *at that seq*
   (``terminate?seq=N``; the app refuses with 409 when the instance moved on: read again,
   until ``timeout``);
3. resume the checkpoint locally with ``take_ownership`` (epoch + 1, owner local) and
   release it if step 1 held it.

An orchestration that already ended is not terminated: a completed one carries its final
sealed snapshot in its output; a terminated or failed one is read from its last checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from rustyflower.adapters.azure.blob_store import (
    DEFAULT_CONTAINER,
    BlobSnapshotStore,
    SnapshotNotFoundError,
)
from rustyflower.adapters.azure.durable_client import (
    DurableClient,
    InstanceConflictError,
    InstanceNotFoundError,
    InstanceStatus,
    SnapshotRejectedError,
)
from rustyflower.adapters.continuity import ledger
from rustyflower.adapters.continuity.cloud import Clock, CloudContinuity, Continued, utc_now
from rustyflower.adapters.continuity.errors import ContinuityConfigError, ContinuityError
from rustyflower.adapters.continuity.handover import (
    Handover,
    apply_event,
    give_back,
    notify_parent,
    resume_from_cloud,
)
from rustyflower.adapters.continuity.outcomes import CloudView, Delivery, Outcome
from rustyflower.adapters.continuity.subflows import sub_flow_definitions
from rustyflower.core.contract import RESULT_KIND, ControlEvent
from rustyflower.core.engine import ReleaseRequested, Snapshot
from rustyflower.core.errors import RustyFlowerError
from rustyflower.core.instance_store import InstanceStore
from rustyflower.core.settings import setting_text
from rustyflower.core.snapshot import SnapshotKeys
from rustyflower.core.snapshot.document import decode_snapshot

__all__ = [
    "ENV_CONTAINER",
    "ENV_FUNCTION_KEY",
    "ENV_FUNCTION_URL",
    "ENV_STORAGE",
    "HOLD_EVENT",
    "AzureContinuity",
    "AzureSettings",
    "signal_azure",
]

ENV_FUNCTION_URL = "RUSTYFLOWER_AZURE_FUNCTION_URL"
ENV_FUNCTION_KEY = "RUSTYFLOWER_AZURE_FUNCTION_KEY"
ENV_STORAGE = "RUSTYFLOWER_AZURE_STORAGE"
"""Connection string of the storage account holding the app's checkpoints."""
ENV_CONTAINER = "RUSTYFLOWER_SNAPSHOT_CONTAINER"
HOLD_EVENT = ControlEvent.HOLD
FAILBACK_REASON = "failback to on-premises"
RECLAIM_REASON = "reclaimed by the on-premises site (failback --force)"


@dataclass(frozen=True)
class AzureSettings:
    """How to reach the Function App and the Blob container of its checkpoints."""

    function_url: str | None = None
    function_key: str | None = None
    storage_connection_string: str | None = None
    container: str = DEFAULT_CONTAINER
    hold: bool = True
    """Failback holds the instance first, so that it settles at a safe point."""
    safe_point_timeout: float = 60.0
    """Seconds a failback waits for the instance to stand still at a checkpoint."""
    poll_interval: float = 0.5
    http_timeout: float = 30.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> AzureSettings:
        """Settings from ``environ`` (``RUSTYFLOWER_AZURE_FUNCTION_URL``,
        ``RUSTYFLOWER_AZURE_FUNCTION_KEY``, ``RUSTYFLOWER_AZURE_STORAGE``,
        ``RUSTYFLOWER_SNAPSHOT_CONTAINER``); ``overrides`` that are not None win."""

        def text(name: str) -> str | None:
            return setting_text(environ, name)

        values: dict[str, Any] = {
            "function_url": text(ENV_FUNCTION_URL),
            "function_key": text(ENV_FUNCTION_KEY),
            "storage_connection_string": text(ENV_STORAGE),
            "container": text(ENV_CONTAINER) or DEFAULT_CONTAINER,
        }
        values.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**values)

    def client(self) -> DurableClient:
        if not self.function_url:
            raise ContinuityConfigError(
                f"no Function App: give --function-url or set {ENV_FUNCTION_URL} "
                "(https://<app>.azurewebsites.net)"
            )
        try:
            return DurableClient(
                self.function_url, function_key=self.function_key, timeout=self.http_timeout
            )
        except RustyFlowerError as error:
            raise ContinuityConfigError(str(error)) from None

    def snapshots(self) -> BlobSnapshotStore | None:
        if not self.storage_connection_string:
            return None
        return BlobSnapshotStore.from_connection_string(
            self.storage_connection_string, self.container
        )


class AzureContinuity(CloudContinuity):
    """Failover to and failback from the Function App for the instances of one local store."""

    cloud = "azure"
    cloud_name = "Azure"
    refusals = (SnapshotRejectedError,)  # 400: certainly nothing started

    def __init__(
        self,
        store: InstanceStore | None,
        settings: AzureSettings,
        *,
        client: DurableClient | None = None,
        snapshots: BlobSnapshotStore | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Clock = utc_now,
        keys: SnapshotKeys | None = None,
        lazy: bool = False,
    ) -> None:
        """``lazy``: reach for the Function App only when first needed (a reclaim goes on
        without one); otherwise a missing setting is refused here, before any fence."""
        super().__init__(store, keys, now=now)
        self.settings = settings
        self._client = client if client is not None or lazy else settings.client()
        self.snapshots = snapshots if snapshots is not None else settings.snapshots()
        self.sleep = sleep
        self.clock = clock

    @property
    def client(self) -> DurableClient:
        if self._client is None:
            self._client = self.settings.client()
        return self._client

    # --- failover -------------------------------------------------------------------------

    def _continue(self, handed: Handover) -> Continued:
        """The orchestration is the instance: a repeated failover finds it (``existing``)."""
        roots = [handed.snapshot.definition, *(child.definition for child in handed.children)]
        known = sub_flow_definitions(self.store, roots) if self.has_store else []
        started = self.client.continue_snapshot(handed.request(self.keys, known))
        result = "existing" if started.started is False else "started"
        return Continued(started.instance_id, result, "running")

    def _record(self, handed: Handover, continued: Continued) -> None:
        snapshot = handed.snapshot
        children = [child.instance_id for child in handed.children]
        ledger.record(
            self.store,
            snapshot.instance_id,
            {
                "cloud": "azure",
                "epoch": str(snapshot.epoch),
                "seq": str(snapshot.seq),
                "orchestration": continued.where,
                "function_url": self.settings.function_url,
                "children": children or None,
            },
        )
        for child in handed.children:
            ledger.record(
                self.store,
                child.instance_id,
                {"cloud": "azure", "epoch": str(child.epoch), "parent": snapshot.instance_id},
            )

    # --- failback -------------------------------------------------------------------------

    def _failback_one(self, instance_id: str, *, root: bool) -> Outcome:
        """Terminate the orchestration at a checkpoint and resume that checkpoint here;
        children were terminated with their parent: each continues from its checkpoint."""
        store = self.store
        info = self._owned(instance_id)
        try:
            status = self.client.status(instance_id)
        except InstanceNotFoundError:  # the failover never started it: take it back
            local = replace(store.load(instance_id, fresh=True), epoch=info.epoch)
            back = give_back(store, local)
            return self._outcome(back, "reclaimed", "no orchestration")
        held_here = False
        if status.finished or not root:
            snapshot = self._ended_snapshot(instance_id, status)
        else:
            snapshot, held_here = self._terminate_at_safe_point(instance_id, status)
        back = resume_from_cloud(store, snapshot, "azure")
        if held_here and back.state.held:
            back = apply_event(store, instance_id, ReleaseRequested(), self.now())
        notify_parent(store, back, self.now())
        return self._outcome(back, "resumed", status.runtime_status)

    def _stop_and_read(self, instance_id: str, local: Snapshot) -> Snapshot:
        """Terminate the orchestration where it is (no hold, no safe point) and read its
        final snapshot or last checkpoint."""
        try:
            status = self.client.status(instance_id)
        except InstanceNotFoundError:
            raise ContinuityError(f"the Function App has no orchestration {instance_id!r}") from (
                None
            )
        if not status.finished:
            self.client.terminate(instance_id, RECLAIM_REASON)
        return self._ended_snapshot(instance_id, status)

    def describe(self, instance_id: str) -> CloudView:
        """The Function App's ``GET instances/{id}``: runtime status and custom status."""
        try:
            status = self.client.status(instance_id)
        except InstanceNotFoundError:
            return CloudView("azure", True, status="NotFound", where=instance_id)
        custom = status.custom_status if isinstance(status.custom_status, dict) else {}
        positions = custom.get("positions")
        seq = custom.get("seq")
        return CloudView(
            "azure",
            True,
            status=status.runtime_status,
            positions=tuple(str(p) for p in positions) if isinstance(positions, list) else (),
            where=status.durable_instance_id or instance_id,
            seq=seq if isinstance(seq, int) else None,
        )

    def _terminate_at_safe_point(
        self, instance_id: str, status: InstanceStatus
    ) -> tuple[Snapshot, bool]:
        custom = status.custom_status if isinstance(status.custom_status, dict) else {}
        held_here = False
        if self.settings.hold and not custom.get("held"):
            self.client.raise_event(instance_id, HOLD_EVENT, {"reason": FAILBACK_REASON})
            held_here = True
        deadline = self.clock() + self.settings.safe_point_timeout
        refused = 0
        where = "no status yet"
        while True:
            status = self.client.status(instance_id)
            if status.finished:
                return self._ended_snapshot(instance_id, status), held_here
            custom = status.custom_status if isinstance(status.custom_status, dict) else {}
            seq = custom.get("seq")
            checkpoint = custom.get("checkpoint")
            saved = checkpoint.get("seq") if isinstance(checkpoint, dict) else None
            where = f"at seq {seq}, last checkpoint seq {saved}"
            if isinstance(seq, int) and saved == seq:
                snapshot = self._checkpoint(instance_id)
                if snapshot.seq == seq:
                    try:
                        self.client.terminate(instance_id, FAILBACK_REASON, seq=seq)
                    except InstanceConflictError:
                        refused += 1  # it moved on between the read and the terminate
                    else:
                        return snapshot, held_here
            if self.clock() >= deadline:
                raise ContinuityError(
                    f"instance {instance_id!r} did not stand still at a checkpoint in Azure "
                    f"within {self.settings.safe_point_timeout:g} s ({where}; {refused} "
                    "terminate(s) refused because it moved on); it runs on in Azure: try again"
                )
            self.sleep(self.settings.poll_interval)

    def _ended_snapshot(self, instance_id: str, status: InstanceStatus) -> Snapshot:
        """A completed orchestration's final snapshot, else the last checkpoint."""
        output = status.output
        if (
            status.runtime_status == "Completed"
            and isinstance(output, dict)
            and output.get("kind") == RESULT_KIND
            and output.get("sealed")
            and isinstance(output.get("snapshot"), str)
        ):
            return decode_snapshot(output["snapshot"].encode("utf-8"), self.keys)
        return self._checkpoint(instance_id)

    def _checkpoint(self, instance_id: str) -> Snapshot:
        if self.snapshots is None:
            raise ContinuityConfigError(
                f"instance {instance_id!r}: reading its checkpoint needs the app's snapshot "
                f"container: give --storage-connection-string or set {ENV_STORAGE}"
            )
        try:
            data = self.snapshots.latest(instance_id)
        except SnapshotNotFoundError:
            raise ContinuityError(
                f"instance {instance_id!r} has no checkpoint in {self.snapshots.where}"
            ) from None
        return decode_snapshot(data, self.keys)

    @staticmethod
    def _outcome(back: Snapshot, result: str, runtime_status: str) -> Outcome:
        return Outcome(
            back.instance_id,
            "failback",
            "azure",
            result,
            flow=back.definition.key,
            epoch=back.epoch,
            seq=back.seq,
            status=back.status,
            where=back.instance_id,
            detail={"runtime_status": runtime_status},
        )


def signal_azure(
    instance_id: str,
    event: str,
    data: Any,
    settings: AzureSettings,
    client: DurableClient | None = None,
) -> Delivery:
    """Raise ``event`` on the instance's orchestration through the Function App."""
    durable = client or settings.client()
    durable.raise_event(instance_id, event, data)
    return Delivery("azure", instance_id, event, f"Function App {durable.base_url}")
