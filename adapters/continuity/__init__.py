"""Continuity: fail instances over to a cloud (AWS, Azure) and back, and reach them there.

It sees the site's store only through the port ``core.instance_store.InstanceStore``
(the Redis runner's ``RedisStore`` implements it), never a runtime's internals.

* ``handover``: fencing, sealing, give-back and failback of one instance;
* ``ledger``: where each instance went; ``batch``: which instances, one by one;
* ``signals``: an event for an instance living in a cloud; ``subflows``: what travels;
* ``cloud``: the steps every cloud takes; ``aws`` and ``azure`` fill them in (they import
  their SDKs, optional extras: import them only when needed, as ``signals`` does).

docs/failover.md is the runbook.
"""

from rustyflower.adapters.continuity.batch import run_batch, select_instances
from rustyflower.adapters.continuity.errors import (
    ContinuityConfigError,
    ContinuityError,
    OwnershipError,
)
from rustyflower.adapters.continuity.handover import Handover, hand_over
from rustyflower.adapters.continuity.outcomes import CLOUDS, LOCAL, Cloud, Delivery, Outcome
from rustyflower.adapters.continuity.signals import deliver_signal

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
