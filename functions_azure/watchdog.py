"""The watchdog timer function's logic: take the site over when its lease is stale.

The timer (``rustyflower_watchdog``, every minute by default: the app setting
``RUSTYFLOWER_WATCHDOG_SCHEDULE``; the Functions host runs a timer function as a
singleton, so two runs never overlap) follows ``adapters.continuity.watchdog``: read the
site lease (a blob in ``RUSTYFLOWER_REPLICA_CONTAINER``); when the site named Azure as its
lifeboat and has not renewed it for ``RUSTYFLOWER_TAKEOVER_AFTER_SECONDS``, win the
conditional takeover and continue every replicated in-flight instance at its epoch + 1,
each root with its child flows, as the HTTP starter continues a failover
(``http_api.orchestration_input``: the sub-flows the app ships, the children's
snapshots). The orchestration is the instance's id, so a repeated run finds the one it
started. The container is in the snapshots' storage account
(``RUSTYFLOWER_SNAPSHOT_CONNECTION`` / ``RUSTYFLOWER_SNAPSHOT_ACCOUNT_URL``, else the task
hub's ``AzureWebJobsStorage``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from functions_azure.flows import FlowBundle
from functions_azure.http_api import EXISTING, DurableClient, orchestration_input, runtime_status
from functions_azure.settings import (
    DEFAULT_REPLICA_CONTAINER,
    DEFAULT_TAKEOVER_AFTER,
    ENV_REPLICA_CONTAINER,
    ENV_SITE_ID,
    ENV_STORAGE,
    ENV_TAKEOVER_AFTER,
    ORCHESTRATOR,
    AppSettings,
)
from rustyflower.adapters.azure.ids import durable_instance_id
from rustyflower.adapters.azure.lifeboat import (
    BlobLeaseStore,
    BlobReplicaStore,
    replica_container,
)
from rustyflower.adapters.continuity.watchdog import (
    Continued,
    Takeover,
    Watchdog,
    WatchdogSettings,
)
from rustyflower.core.lifeboat.takeover import TakeoverGroup
from rustyflower.core.settings import setting_text, setting_whole_number
from rustyflower.core.snapshot.handover import HandoverRequest
from rustyflower.core.snapshot.keys import SnapshotKeys

__all__ = ["continue_group", "watch"]

log = logging.getLogger("rustyflower.watchdog")


def container_of(settings: AppSettings, environ: Mapping[str, str]) -> Any:
    """The replica container, in the snapshots' account (or the task hub's)."""
    name = setting_text(environ, ENV_REPLICA_CONTAINER) or DEFAULT_REPLICA_CONTAINER
    if settings.snapshot_connection:
        return replica_container(name, connection_string=settings.snapshot_connection)
    if settings.snapshot_account_url:
        return replica_container(name, account_url=settings.snapshot_account_url)
    connection = setting_text(environ, ENV_STORAGE)
    if connection:
        return replica_container(name, connection_string=connection)
    uri = setting_text(environ, f"{ENV_STORAGE}__blobServiceUri")
    account = setting_text(environ, f"{ENV_STORAGE}__accountName")
    return replica_container(
        name, account_url=uri or (f"https://{account}.blob.core.windows.net" if account else None)
    )


async def continue_group(
    taken: TakeoverGroup,
    takeover: Takeover,
    client: DurableClient,
    app_flows: FlowBundle,
    settings: AppSettings,
) -> Continued:
    """Start (or find) the orchestration continuing ``taken`` at its takeover epoch."""
    root_data, _ = takeover.sealed(taken)
    children = tuple(child.snapshot for child in taken.children)
    request = HandoverRequest(
        snapshot=taken.root.snapshot,
        raw=root_data,
        children=children,
        # a child in flight carries its definition, signed with its snapshot: the sub-flow
        # it runs is known even when the app does not ship it (other sub-flows must be)
        flows=tuple({child.definition.key: child.definition for child in children}.values()),
    )
    payload = orchestration_input(request, app_flows, settings)  # RequestError: refused
    durable_id = durable_instance_id(taken.root.instance_id)
    where = {child.instance_id: durable_instance_id(child.instance_id) for child in children}
    if runtime_status(await client.get_status(durable_id)) in EXISTING:
        return Continued(durable_id, "existing", where)
    try:
        await client.start_new(ORCHESTRATOR, durable_id, payload.to_json())
    except Exception:
        if runtime_status(await client.get_status(durable_id)) in EXISTING:
            return Continued(durable_id, "existing", where)
        raise
    return Continued(durable_id, "started", where)


async def watch(
    client: DurableClient,
    environ: Mapping[str, str],
    app_flows: Callable[[], FlowBundle],
    *,
    now: Callable[[], datetime] | None = None,
    container: Any = None,
) -> dict[str, Any]:
    """One watchdog run; the answer says what it found and did (also logged)."""
    site = setting_text(environ, ENV_SITE_ID)
    if not site:
        log.info("watchdog: %s is not set; nothing to watch", ENV_SITE_ID)
        return {"site": None, "verdict": "no-site", "takeover": None}
    settings = AppSettings.from_env(environ)
    threshold = setting_whole_number(environ, ENV_TAKEOVER_AFTER, DEFAULT_TAKEOVER_AFTER, 10)
    blobs = container if container is not None else container_of(settings, environ)
    watchdog = Watchdog(
        WatchdogSettings(site=site, cloud="azure", threshold=float(threshold)),
        BlobLeaseStore(blobs),
        BlobReplicaStore(blobs, site),
        SnapshotKeys.from_env(environ),
        now or (lambda: datetime.now(UTC)),
    )
    verdict = watchdog.check()
    answer: dict[str, Any] = {"site": site, **verdict.document(), "takeover": None}
    log.info("watchdog: site %s: %s (%s)", site, verdict.kind, verdict.detail)
    takeover = watchdog.begin(verdict)
    if takeover is None:
        return answer
    log.warning("watchdog: taking site %s over (%s)", site, takeover.report.takeover_id)
    shipped = app_flows()
    for taken in takeover.groups:
        try:
            outcome = await continue_group(taken, takeover, client, shipped, settings)
        except Exception as error:  # one group's refusal must not stop the others
            log.exception("watchdog: %s could not be continued", taken.root.instance_id)
            takeover.failed(taken, error)
        else:
            takeover.continued(taken, outcome)
    report = takeover.finish()
    counts: dict[str, int] = {}
    for entry in report.instances:
        counts[entry.result] = counts.get(entry.result, 0) + 1
    answer["takeover"] = {"id": report.takeover_id, "instances": counts}
    return answer
