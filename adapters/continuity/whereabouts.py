"""``rustyflower status`` of an instance living in a cloud: ask the cloud where it is.

The site's snapshot of a failed-over instance is the state at failover time; the cloud
knows where it is now. The cloud is asked with the settings ``failover`` and ``failback``
read from the environment, each call tried once with a short timeout; when it cannot be
asked (no settings, unreachable, refused) the answer says so instead of raising, so a
status always shows at least the site's view.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from rustyflower.adapters.continuity.errors import ContinuityConfigError
from rustyflower.adapters.continuity.outcomes import LOCAL, CloudView
from rustyflower.core.errors import RustyFlowerError
from rustyflower.core.instance_store import InstanceStore

__all__ = ["ASK_TIMEOUT", "ask_cloud"]

ASK_TIMEOUT = 5.0
"""Seconds each call to the cloud may take (once, no retries)."""


def ask_cloud(
    store: InstanceStore,
    instance_id: str,
    environ: Mapping[str, str] | None = None,
    *,
    timeout: float = ASK_TIMEOUT,
) -> CloudView | None:
    """What the cloud owning ``instance_id`` says of it; None when it is local."""
    owner = store.info(instance_id).owner
    if owner == LOCAL:
        return None
    settings_source = os.environ if environ is None else environ
    try:
        # imported here: each cloud's SDK is an optional extra (as in ``signals``)
        if owner == "aws":
            from rustyflower.adapters.continuity.aws import AwsContinuity, AwsSettings  # noqa: PLC0415

            aws = AwsSettings.from_env(settings_source, timeout=timeout)
            return AwsContinuity(store, aws).describe(instance_id)
        if owner == "azure":
            from rustyflower.adapters.continuity.azure import (  # noqa: PLC0415
                AzureContinuity,
                AzureSettings,
            )

            azure = AzureSettings.from_env(settings_source, http_timeout=timeout)
            return AzureContinuity(store, azure).describe(instance_id)
    except ContinuityConfigError as error:
        return CloudView(owner, False, problem=f"not asked: {_line(error)}")
    except (RustyFlowerError, OSError) as error:
        return CloudView(owner, False, problem=f"could not be asked: {_line(error)}")
    except ImportError as error:
        return CloudView(owner, False, problem=f"not asked: its SDK is not installed ({error})")
    return CloudView(owner, False, problem=f"not asked: no way to reach {owner!r}")


def _line(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__
