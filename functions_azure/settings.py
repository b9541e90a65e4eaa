"""Names the Function App is wired with: its functions, its app settings, their defaults.

The infrastructure (Bicep) and its contract tests read these names; the code reads the
values through :class:`AppSettings`, built once from the process environment (or any
mapping, in tests). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rustyflower.adapters.azure.services import SETTINGS as SERVICE_SETTINGS
from rustyflower.core.settings import setting_whole_number

# --- function names (the host indexes them; orchestrations call them by name) -------------

ORCHESTRATOR = "rustyflower_orchestrator"
ACTIVITY = "rustyflower_activity"
CHECKPOINT = "rustyflower_checkpoint"
SIGNAL = "rustyflower_signal"
HTTP_CONTINUE = "continue_snapshot"
HTTP_RAISE_EVENT = "raise_flow_event"
HTTP_STATUS = "get_flow_instance"
HTTP_TERMINATE = "terminate_flow_instance"
WATCHDOG = "rustyflower_watchdog"

FUNCTION_NAMES: tuple[str, ...] = (
    HTTP_CONTINUE,
    HTTP_RAISE_EVENT,
    HTTP_STATUS,
    HTTP_TERMINATE,
    ORCHESTRATOR,
    ACTIVITY,
    CHECKPOINT,
    SIGNAL,
    WATCHDOG,
)

# --- app settings ----------------------------------------------------------------------------

ENV_ACTIVITIES = "RUSTYFLOWER_ACTIVITIES"
"""``module`` or ``module:attribute`` of the ActivityRegistry the activity function runs."""
ENV_CONTINUE_AS_NEW_AFTER = "RUSTYFLOWER_CONTINUE_AS_NEW_AFTER"
"""Transitions per orchestration generation before ``continue_as_new`` (bounds history)."""
ENV_CHECKPOINT_EVERY = "RUSTYFLOWER_CHECKPOINT_EVERY"
"""Write the snapshot to the sink after every N transitions (0: never; the end always)."""
ENV_SNAPSHOT_SINK = "RUSTYFLOWER_SNAPSHOT_SINK"
"""``blob`` (default when a container is configured), ``none``, or ``module:factory``."""
ENV_SNAPSHOT_CONTAINER = "RUSTYFLOWER_SNAPSHOT_CONTAINER"
ENV_SNAPSHOT_ACCOUNT_URL = "RUSTYFLOWER_SNAPSHOT_ACCOUNT_URL"
"""Blob service URL, reached with the app's managed identity (DefaultAzureCredential)."""
ENV_SNAPSHOT_CONNECTION = "RUSTYFLOWER_SNAPSHOT_CONNECTION"
"""A storage connection string (Azurite, or when no managed identity is used)."""
ENV_FLOWS_PATH = "RUSTYFLOWER_FLOWS_PATH"
"""A file or folder of sub-flow definitions (YAML/JSON) shipped with the app."""
ENV_TASK_HUB = "RUSTYFLOWER_TASK_HUB"
"""The Durable task hub name (host.json reads it as %RUSTYFLOWER_TASK_HUB%)."""
ENV_STORAGE = "AzureWebJobsStorage"
ENV_SITE_ID = "RUSTYFLOWER_SITE_ID"
"""The site the watchdog watches (empty: the watchdog only logs that it has nothing to do)."""
ENV_TAKEOVER_AFTER = "RUSTYFLOWER_TAKEOVER_AFTER_SECONDS"
"""Seconds without a renewal of the site lease after which the watchdog takes over."""
ENV_REPLICA_CONTAINER = "RUSTYFLOWER_REPLICA_CONTAINER"
"""The container of the lifeboat's replicas and site lease (same account as the snapshots)."""
ENV_WATCHDOG_SCHEDULE = "RUSTYFLOWER_WATCHDOG_SCHEDULE"
"""The watchdog timer's NCRONTAB expression (the host reads %RUSTYFLOWER_WATCHDOG_SCHEDULE%)."""

ENV_SIGNING_KEYS = "RUSTYFLOWER_SIGNING_KEYS"
ENV_ENCRYPTION_KEYS = "RUSTYFLOWER_ENCRYPTION_KEYS"
ENV_REQUIRE_SIGNATURE = "RUSTYFLOWER_REQUIRE_SIGNATURE"

APP_SETTINGS: tuple[str, ...] = (
    ENV_ACTIVITIES,
    ENV_CONTINUE_AS_NEW_AFTER,
    ENV_CHECKPOINT_EVERY,
    ENV_SNAPSHOT_SINK,
    ENV_SNAPSHOT_CONTAINER,
    ENV_SNAPSHOT_ACCOUNT_URL,
    ENV_SNAPSHOT_CONNECTION,
    ENV_FLOWS_PATH,
    ENV_TASK_HUB,
    ENV_SITE_ID,
    ENV_TAKEOVER_AFTER,
    ENV_REPLICA_CONTAINER,
    ENV_WATCHDOG_SCHEDULE,
    ENV_SIGNING_KEYS,
    ENV_ENCRYPTION_KEYS,
    ENV_REQUIRE_SIGNATURE,
    *SERVICE_SETTINGS,
)
"""Every app setting the code reads (besides the Functions host's own); the service
tasks' are in adapters/azure/services.py."""

DEFAULT_ACTIVITIES = "functions_azure.activities"
DEFAULT_CONTINUE_AS_NEW_AFTER = 100
DEFAULT_CHECKPOINT_EVERY = 1
DEFAULT_SNAPSHOT_CONTAINER = "rustyflower-snapshots"
DEFAULT_REPLICA_CONTAINER = "rustyflower-lifeboat"
DEFAULT_TAKEOVER_AFTER = 300
DEFAULT_WATCHDOG_SCHEDULE = "0 */1 * * * *"


@dataclass(frozen=True)
class AppSettings:
    """The RustyFlower settings of the Function App (secrets stay in the environment)."""

    activities: str = DEFAULT_ACTIVITIES
    continue_as_new_after: int = DEFAULT_CONTINUE_AS_NEW_AFTER
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY
    snapshot_sink: str = "none"
    snapshot_container: str = DEFAULT_SNAPSHOT_CONTAINER
    snapshot_account_url: str | None = None
    snapshot_connection: str | None = None
    flows_path: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> AppSettings:
        container = environ.get(ENV_SNAPSHOT_CONTAINER, "").strip()
        account_url = environ.get(ENV_SNAPSHOT_ACCOUNT_URL, "").strip() or None
        connection = environ.get(ENV_SNAPSHOT_CONNECTION, "").strip() or None
        sink = environ.get(ENV_SNAPSHOT_SINK, "").strip()
        if not sink:
            sink = "blob" if (container or account_url or connection) else "none"
        return cls(
            activities=environ.get(ENV_ACTIVITIES, "").strip() or DEFAULT_ACTIVITIES,
            continue_as_new_after=setting_whole_number(
                environ, ENV_CONTINUE_AS_NEW_AFTER, DEFAULT_CONTINUE_AS_NEW_AFTER, 1
            ),
            checkpoint_every=setting_whole_number(
                environ, ENV_CHECKPOINT_EVERY, DEFAULT_CHECKPOINT_EVERY, 0
            ),
            snapshot_sink=sink,
            snapshot_container=container or DEFAULT_SNAPSHOT_CONTAINER,
            snapshot_account_url=account_url,
            snapshot_connection=connection,
            flows_path=environ.get(ENV_FLOWS_PATH, "").strip() or None,
        )
