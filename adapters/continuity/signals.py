"""``rustyflower signal`` for an instance that lives in a cloud: route the event there."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from rustyflower.adapters.continuity.errors import OwnershipError
from rustyflower.adapters.continuity.outcomes import LOCAL, Delivery
from rustyflower.core.instance_store import InstanceStore

__all__ = ["deliver_signal"]


def deliver_signal(
    store: InstanceStore,
    instance_id: str,
    event: str,
    data: Any,
    environ: Mapping[str, str] | None = None,
) -> Delivery | None:
    """Deliver an event to an instance that lives in a cloud; None when it is local.

    The store says who owns the instance: ``azure`` -> the Function App's raise-event
    endpoint; ``aws`` -> the task-token store's ``signal`` (``SendTaskSuccess``). The
    cloud settings come from ``environ`` (default: the process environment).
    """
    owner = store.info(instance_id).owner
    if owner == LOCAL:
        return None
    settings_source = os.environ if environ is None else environ
    # The cloud modules are imported here, not above, because their SDKs are optional
    # extras (rustyflower[aws], rustyflower[azure]); neither imports this module.
    if owner == "azure":
        from rustyflower.adapters.continuity.azure import AzureSettings, signal_azure  # noqa: PLC0415

        return signal_azure(instance_id, event, data, AzureSettings.from_env(settings_source))
    if owner == "aws":
        from rustyflower.adapters.continuity.aws import AwsSettings, signal_aws  # noqa: PLC0415

        return signal_aws(instance_id, event, data, AwsSettings.from_env(settings_source))
    raise OwnershipError(f"instance {instance_id!r} is owned by {owner!r}, which is not reachable")
