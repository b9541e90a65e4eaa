"""The clouds, and what a step reports: one ``Outcome`` per instance, a ``Delivery`` per
signal sent to a cloud."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from rustyflower.core.instance_store import LOCAL

__all__ = ["CLOUDS", "LOCAL", "Action", "Cloud", "CloudView", "Delivery", "Outcome"]

Cloud = Literal["aws", "azure"]
CLOUDS: tuple[Cloud, ...] = ("aws", "azure")
Action = Literal["failover", "failback", "start"]


@dataclass
class Outcome:
    """What one failover or failback did to one instance.

    ``result``: ``started`` (the cloud started it), ``existing`` (it was there already:
    a repeated failover), ``resumed`` (failed back and running locally again),
    ``reclaimed`` (failback of an instance the cloud never started: the local snapshot
    was taken back), ``failed`` (``error`` says why).
    """

    instance_id: str
    action: Action
    cloud: str
    result: str
    flow: str = ""
    epoch: int | None = None
    seq: int | None = None
    status: str | None = None
    where: str | None = None
    """The execution ARN (AWS) or the orchestration's instance id (Azure)."""
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.result != "failed"

    @property
    def source(self) -> str | None:
        """A reclaim's (``failback --force``): ``cloud`` (the cloud's own state) or
        ``site`` (the site's snapshot: the cloud's progress since failover is lost)."""
        found = self.detail.get("source")
        return None if found is None else str(found)

    @property
    def warning(self) -> str | None:
        """Why a reclaim from the site's snapshot may run steps again (None otherwise)."""
        found = self.detail.get("warning")
        return None if found is None else str(found)

    def as_dict(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "action": self.action,
            "cloud": self.cloud,
            "result": self.result,
            "ok": self.ok,
            "flow": self.flow,
            "epoch": self.epoch,
            "seq": self.seq,
            "status": self.status,
            "where": self.where,
            "error": self.error,
            **({"detail": self.detail} if self.detail else {}),
        }


@dataclass(frozen=True)
class Delivery:
    """Where ``rustyflower signal`` delivered an event of an instance living in a cloud."""

    cloud: str
    instance_id: str
    event: str
    detail: str = ""


@dataclass(frozen=True)
class CloudView:
    """What the cloud says of an instance living there (``rustyflower status``).

    ``asked`` False: the cloud could not be asked (no settings, unreachable); ``problem``
    says why, and the site's view (the state at failover time) is all there is.
    """

    cloud: str
    asked: bool
    status: str | None = None
    """``RUNNING``, ``SUCCEEDED``... (AWS) or ``Running``, ``Completed``... (Azure)."""
    positions: tuple[str, ...] = ()
    """The states it is at there (AWS: the last state entered)."""
    where: str | None = None
    """The execution ARN (AWS) or the orchestration's id (Azure)."""
    seq: int | None = None
    """The seq it reached there, when the cloud tells (Azure's custom status)."""
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "cloud": self.cloud,
            "asked": self.asked,
            "status": self.status,
            "positions": list(self.positions),
            "where": self.where,
            "seq": self.seq,
            "problem": self.problem,
        }
