"""The drill's cloud when it is Azure: Azurite and the local Function App (what
``rustyflower cloud azure`` serves: the real app's HTTP functions and the real Durable SDK
orchestrator on the replay host, its activities in this process) with the lifeboat's
container beside the checkpoints, and the app's watchdog timer function fired as the
Functions host fires it (its user code, the durable client bound)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rustyflower.adapters.azure.blob_store import BlobSnapshotStore
from rustyflower.adapters.azure.durable_client import InstanceNotFoundError
from rustyflower.adapters.azure.lifeboat import BlobLeaseStore, BlobReplicaStore, replica_container
from rustyflower.adapters.continuity.azure import AzureContinuity, AzureSettings, signal_azure
from rustyflower.adapters.continuity.lifeboat_setup import LifeboatSettings
from rustyflower.adapters.drill.cloud import DrillError
from rustyflower.adapters.localcloud.azure import LocalFunctionApp, serving
from rustyflower.adapters.localcloud.azurite import Azurite, AzuriteError, find_azurite
from rustyflower.adapters.localcloud.durable_history import functions_of
from rustyflower.adapters.localcloud.durable_host import DurableHost
from rustyflower.adapters.localcloud.function_app import (
    FunctionAppNotFoundError,
    find_app_folder,
    load_function_app,
    provide_activities,
)
from rustyflower.core.activities import ActivityRegistry
from rustyflower.core.instance_store import InstanceStore
from rustyflower.core.lifeboat.replica import Replica
from rustyflower.core.lifeboat.takeover import TakeoverReport
from rustyflower.core.model import FlowDefinition

__all__ = ["WATCHDOG_FUNCTION", "DrillAzure"]

WATCHDOG_FUNCTION = "rustyflower_watchdog"
"""The app's timer function (functions_azure/settings.py's WATCHDOG)."""
CHECKPOINTS = "rustyflower-snapshots"
REPLICAS = "rustyflower-lifeboat"
TICK_SECONDS = 0.05
"""How often the host delivers what fell due between requests (timers, activity results)."""


class DrillAzure:
    cloud = "azure"

    def __init__(
        self, registry: ActivityRegistry, site: str, key_setting: str, threshold: int, work: Path
    ) -> None:
        self.registry = registry
        self.site = site
        self.key_setting = key_setting
        self.threshold = threshold
        self.work = work
        self._stack = ExitStack()
        self._azurite: Azurite | None = None
        self._server: LocalFunctionApp | None = None
        self._timer: Any = None

    @property
    def server(self) -> LocalFunctionApp:
        assert self._server is not None, "start the local Azure first"
        return self._server

    @property
    def connection(self) -> str:
        assert self._azurite is not None, "start the local Azure first"
        return self._azurite.connection_string

    def start(self, definitions: tuple[FlowDefinition, ...]) -> None:
        try:
            folder = find_app_folder(None)
            executable = find_azurite(None, (folder, Path.cwd()))
            self._azurite = Azurite(executable).start()
        except (AzuriteError, FunctionAppNotFoundError) as error:
            raise DrillError(str(error)) from None
        self._stack.callback(self._azurite.stop)
        connection = self.connection
        # the app's settings, as Bicep sets them; its functions read them from this
        # process's environment (some at import: set before the app is loaded)
        os.environ.update(
            {
                "AzureWebJobsStorage": connection,
                "RUSTYFLOWER_SNAPSHOT_SINK": "blob",
                "RUSTYFLOWER_SNAPSHOT_CONNECTION": connection,
                "RUSTYFLOWER_SNAPSHOT_CONTAINER": CHECKPOINTS,
                "RUSTYFLOWER_ACTIVITIES": provide_activities(self.registry),
                "RUSTYFLOWER_FLOWS_PATH": str(self._ship(definitions)),
                "RUSTYFLOWER_SITE_ID": self.site,
                "RUSTYFLOWER_TAKEOVER_AFTER_SECONDS": str(self.threshold),
                "RUSTYFLOWER_REPLICA_CONTAINER": REPLICAS,
                "RUSTYFLOWER_SIGNING_KEYS": self.key_setting,
            }
        )
        BlobSnapshotStore.from_connection_string(connection, CHECKPOINTS).ensure_container()
        replica_container(REPLICAS, connection_string=connection).create_container()
        try:
            app = load_function_app(folder)
        except FunctionAppNotFoundError as error:
            raise DrillError(str(error)) from None
        durable = DurableHost(app, now=datetime.now(UTC), max_episodes=None, record=False)
        self._server = LocalFunctionApp(durable, secrets.token_urlsafe(24), tick=TICK_SECONDS)
        self._stack.enter_context(serving(self._server))
        self._timer = functions_of(app)[WATCHDOG_FUNCTION].get_user_function()

    def _ship(self, definitions: tuple[FlowDefinition, ...]) -> Path:
        """The flows as files the app ships (its sub-flows: a takeover needs them)."""
        folder = self.work / "app-flows"
        folder.mkdir(parents=True, exist_ok=True)
        for definition in definitions:
            path = folder / f"{definition.name}-{definition.version}.json"
            path.write_text(json.dumps(definition.document(), indent=2), encoding="utf-8")
        return folder

    def lifeboat(self) -> LifeboatSettings:
        return LifeboatSettings.from_env(
            {},
            to="azure",
            site=self.site,
            azure_connection_string=self.connection,
            azure_container=REPLICAS,
        )

    def _container(self) -> Any:
        return replica_container(REPLICAS, connection_string=self.connection)

    def watchdog(self) -> TakeoverReport | None:
        """The host fires the watchdog timer; the report of its takeover, the one the
        lease names (None while the lease shows no complete one)."""
        server = self.server
        self._failed()
        with server.lock:  # the host does one thing at a time
            server.durable.run(until=datetime.now(UTC))
            asyncio.run(self._timer.client_function(timer=None, client=server.client))
            server.durable.run(until=server.durable.clock)
        container = self._container()
        found = BlobLeaseStore(container).read(self.site)
        mark = found.lease.takeover if found is not None else None
        if mark is None or not mark.complete or not mark.report:
            return None
        report = BlobReplicaStore(container, self.site).read_report(mark.report)
        return TakeoverReport.decode(report)

    def replica(self, instance_id: str) -> Replica | None:
        return BlobReplicaStore(self._container(), self.site).read(instance_id)

    def settings(self) -> AzureSettings:
        """What the site's failback and signal use (``cloud azure``'s record holds the same)."""
        return AzureSettings(
            function_url=self.server.url,
            function_key=self.server.function_key,
            storage_connection_string=self.connection,
            container=CHECKPOINTS,
        )

    def signal(self, instance_id: str, event: str, data: Any) -> bool:
        """Raise ``event`` on the orchestration once its custom status says it waits for
        it (the engine refuses an event nobody waits for); False before that."""
        settings = self.settings()
        client = settings.client()
        try:
            status = client.status(instance_id)
        except InstanceNotFoundError:
            return False
        custom = status.custom_status if isinstance(status.custom_status, dict) else {}
        waits = custom.get("waiting_for") or []
        if not any(isinstance(w, dict) and w.get("event") == event for w in waits):
            return False
        signal_azure(instance_id, event, data, settings, client)
        return True

    def running(self) -> int:
        """Orchestrations not ended (sub-orchestrations included)."""
        self._failed()
        with self.server.lock:
            return sum(1 for one in self.server.durable.instances.values() if not one.ended)

    def _failed(self) -> None:
        if self.server.failure is not None:
            raise DrillError(f"the local Function App stopped delivering: {self.server.failure}")

    def continuity(self, store: InstanceStore) -> AzureContinuity:
        return AzureContinuity(store, self.settings())

    def stop(self) -> None:
        self._stack.close()
