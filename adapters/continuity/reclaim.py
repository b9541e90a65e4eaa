"""``failback --force``, as every door runs it (the CLI, the client, the HTTP API).

The rules of the escape hatch: ``force`` needs a reason that is not blank (it is kept in
each instance's history), and a reason goes only with ``force``. The cloud is tried once,
with a short timeout per call (a cloud that is gone must not hold the reclaim up), and an
instance taken back from the site's own snapshot carries a warning: whatever the cloud
did since failover is lost, and its steps may run again. The steps themselves are
``CloudContinuity.reclaim`` (cloud.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rustyflower.adapters.continuity.cloud import CloudContinuity
from rustyflower.adapters.continuity.outcomes import Cloud, Outcome
from rustyflower.core.errors import RustyFlowerError
from rustyflower.core.instance_store import InstanceStore

__all__ = [
    "RECLAIM_TIMEOUT",
    "ReclaimReasonError",
    "checked_reason",
    "lost_progress_warning",
    "reclaim_runner",
    "reclaim_step",
]

RECLAIM_TIMEOUT = 5.0
"""Seconds each call to the cloud may take during a reclaim (tried once)."""


class ReclaimReasonError(RustyFlowerError, ValueError):
    """``force`` without a reason, or a reason without ``force`` (a ``ValueError``: bad
    arguments); ``field`` names the one at fault (as the door that raised it calls it)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def checked_reason(
    force: bool,
    reason: str | None,
    *,
    force_name: str = "force",
    reason_name: str = "reason",
) -> str | None:
    """The reason of a reclaim, stripped (None when not forcing); each door names its own
    ``force_name`` and ``reason_name`` (``--force``, ``body.force``...) in the message."""
    if force and not (reason or "").strip():
        raise ReclaimReasonError(
            reason_name,
            f"{force_name} needs {reason_name}: say why the instances are taken back without "
            "the cloud (it is kept in their history)",
        )
    if reason is not None and not force:
        raise ReclaimReasonError(reason_name, f"{reason_name} goes with {force_name}")
    return reason.strip() if reason is not None else None


def reclaim_runner(
    cloud: Cloud,
    store: InstanceStore,
    environ: Mapping[str, str],
    settings: Mapping[str, Any] | None = None,
) -> CloudContinuity:
    """The cloud's continuity for a reclaim: its settings from ``environ`` overridden by
    ``settings`` (the names of ``AwsSettings.from_env`` or ``AzureSettings.from_env``),
    every call to the cloud bounded by ``RECLAIM_TIMEOUT``."""
    overrides = dict(settings or {})
    # imported here: each cloud's SDK is an optional extra
    if cloud == "aws":
        from rustyflower.adapters.continuity.aws import AwsContinuity, AwsSettings  # noqa: PLC0415

        aws = AwsSettings.from_env(environ, **overrides, timeout=RECLAIM_TIMEOUT)
        return AwsContinuity(store, aws)
    from rustyflower.adapters.continuity.azure import AzureContinuity, AzureSettings  # noqa: PLC0415

    azure = AzureSettings.from_env(environ, **overrides, http_timeout=RECLAIM_TIMEOUT)
    return AzureContinuity(store, azure, lazy=True)


def lost_progress_warning(outcome: Outcome) -> str | None:
    """What to tell whoever reclaimed ``outcome``'s instance from the site's snapshot;
    None when it came back from the cloud's own state (nothing lost)."""
    if outcome.detail.get("source") != "site":
        return None
    cloud = outcome.cloud
    return (
        f"{outcome.instance_id} was taken back from the site's own snapshot (seq "
        f"{outcome.seq}, the state at failover time): whatever {cloud} did since failover "
        f"is lost and may be done again ({cloud}: {outcome.detail.get('cloud_error')})"
    )


def reclaim_step(
    runner: CloudContinuity,
    reason: str,
    on_warning: Callable[[str], None] | None = None,
) -> Callable[[str], Outcome]:
    """One instance's reclaim, for ``run_batch``: the outcome's ``detail`` gets the
    ``warning`` when the cloud's progress was lost (also handed to ``on_warning``)."""

    def step(instance_id: str) -> Outcome:
        outcome = runner.reclaim(instance_id, reason)
        warning = lost_progress_warning(outcome)
        if warning is not None:
            outcome.detail["warning"] = warning
            if on_warning is not None:
                on_warning(warning)
        return outcome

    return step
