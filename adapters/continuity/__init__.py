"""Continuity: fail instances over to a cloud (AWS, Azure) and back, and reach them there.

``shared`` holds what both clouds share (fencing, handover, give-back, the ledger, batches,
signal routing); ``aws`` and ``azure`` the per-cloud steps. The cloud modules import their
SDKs, so import them only when needed (``deliver_signal`` does so itself).
docs/failover.md is the runbook.
"""

from rustyflower.adapters.continuity.shared import (
    CLOUDS,
    LOCAL,
    Cloud,
    ContinuityConfigError,
    ContinuityError,
    Delivery,
    Handover,
    Outcome,
    OwnershipError,
    deliver_signal,
    hand_over,
    run_batch,
    select_instances,
)

__all__ = [
    "CLOUDS",
    "LOCAL",
    "Cloud",
    "ContinuityConfigError",
    "ContinuityError",
    "Delivery",
    "Handover",
    "Outcome",
    "OwnershipError",
    "deliver_signal",
    "hand_over",
    "run_batch",
    "select_instances",
]
