"""What the drill asks of a local cloud (``aws.py``, ``azure.py``), so that ``run.py``
names no cloud: start it with the drill's flows, give the site its lifeboat settings, run
the watchdog as its schedule would, read a replica, deliver an event to an instance it
continues, count what still runs there, fail back from it, stop it.

Each cloud module is imported only when chosen (``run.open_cloud``): the AWS one needs
moto (the ``local`` extra), the Azure one the Azure Functions SDKs and Azurite.
"""

from __future__ import annotations

from typing import Any, Protocol

from rustyflower.adapters.continuity.cloud import CloudContinuity
from rustyflower.adapters.continuity.lifeboat_setup import LifeboatSettings
from rustyflower.core.errors import RustyFlowerError
from rustyflower.core.instance_store import InstanceStore
from rustyflower.core.lifeboat.replica import Replica
from rustyflower.core.lifeboat.takeover import TakeoverReport
from rustyflower.core.model import FlowDefinition
from rustyflower.core.timeutil import parse_timestamp

__all__ = ["CLOUDS", "EXTRAS", "DrillCloud", "DrillError", "continued_by", "first_continued"]

CLOUDS = ("aws", "azure")
EXTRAS = {"aws": "local", "azure": "azure"}
"""The extra that brings each local cloud's SDKs."""


class DrillError(RustyFlowerError):
    """The drill could not run to its end (a step timed out, a part did not start)."""


class DrillCloud(Protocol):
    cloud: str

    def start(self, definitions: tuple[FlowDefinition, ...]) -> None:
        """The cloud up, the flows deployed or shipped, the lifeboat's stores created."""

    def lifeboat(self) -> LifeboatSettings:
        """The site's replication and lease settings for this cloud."""

    def watchdog(self) -> TakeoverReport | None:
        """One scheduled run of the cloud's watchdog function: the report of its takeover,
        or None while the site's lease is not stale yet."""

    def replica(self, instance_id: str) -> Replica | None:
        """The instance's replica in the cloud (None: never shipped)."""

    def signal(self, instance_id: str, event: str, data: Any) -> bool:
        """Deliver ``event`` to the instance the cloud continues; False when it does not
        wait for it yet (try again later)."""

    def running(self) -> int:
        """Runs (executions, orchestrations) still running in the cloud."""

    def continuity(self, store: InstanceStore) -> CloudContinuity:
        """Failback from this cloud to ``store``."""

    def stop(self) -> None:
        """Stop everything ``start`` started (safe to call after a failed start)."""


def first_continued(report: TakeoverReport, killed_at: float) -> float | None:
    """The RTO: seconds from the kill (``time.time()``) to the first instance the cloud
    continued (its first transition there), None when the takeover continued none."""
    moments = [
        moment.timestamp()
        for one in report.taken
        if one.continued_at and (moment := parse_timestamp(one.continued_at)) is not None
    ]
    return min(moments) - killed_at if moments else None


def continued_by(report: TakeoverReport) -> list[str]:
    """The instances a takeover continued (started, or found started by an earlier run)."""
    return [one.instance_id for one in report.instances if one.result in ("started", "existing")]
