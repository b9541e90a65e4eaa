"""What a failover or failback step raises (the CLI maps each to an exit code)."""

from __future__ import annotations

from rustyflower.core.errors import RustyFlowerError

__all__ = ["ContinuityConfigError", "ContinuityError", "OwnershipError"]


class ContinuityError(RustyFlowerError):
    """A failover or failback step was refused or failed; the message says which and why."""


class ContinuityConfigError(ContinuityError):
    """A setting the step needs is missing or unusable (the CLI exits 3)."""


class OwnershipError(ContinuityError):
    """The instance is not where the step expects it (another owner, finished, unknown)."""
