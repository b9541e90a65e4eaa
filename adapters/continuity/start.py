"""Start an instance in a cloud: ``rustyflower start FLOW --on aws|azure``.

A cloud start is a failover of an instance that has done nothing yet. The engine makes
the first transition here (``core.engine.start``: pure, nothing runs, no activity is
called), the site's store keeps the new instance *without* its work (no worker can take
any), and the handover fences it for the cloud and continues it there, exactly as a
failover does. So the instance has the site's id scheme, the same output and history as
anywhere else, shows in ``status`` and ``list`` as living in the cloud, and comes back
with ``failback`` like any failed-over instance.

Refusals: what the cloud would refuse for certain (no deployed machine, another
definition deployed) is asked before anything is stored; a refusal after the instance
was fenced cancels it here (epoch + 1, owner local, ``cancelled``, the reason recorded):
nothing of it ran anywhere, and it never runs on the site by surprise. A flow whose first
transition already ends it (pass and choice states only) ends here: it needs no cloud.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rustyflower.adapters.continuity.cloud import CloudContinuity
from rustyflower.adapters.continuity.errors import ContinuityError
from rustyflower.adapters.continuity.handover import hand_over
from rustyflower.adapters.continuity.outcomes import Outcome
from rustyflower.core.engine import CancelRequested, Transition, advance, start
from rustyflower.core.errors import RustyFlowerError
from rustyflower.core.instance_store import LOCAL

__all__ = ["start_in_cloud"]


class StartRefusedError(ContinuityError):
    """The cloud refused the start; nothing of the instance ran anywhere."""


def start_in_cloud(
    continuity: CloudContinuity,
    flow: str,
    flow_input: Any,
    *,
    instance_id: str,
    version: str | None = None,
) -> Outcome:
    """Start ``flow`` as ``instance_id`` in ``continuity``'s cloud (see the module doc)."""
    store = continuity.store
    definition = store.definition(flow, version)
    now = continuity.now()
    transition = start(definition, flow_input, instance_id, now)
    first = transition.snapshot
    if first.finished:
        created = store.commit(None, transition)
        if created == "exists":
            raise ContinuityError(f"instance {instance_id!r} exists already")
        return _outcome(continuity, first, "finished", LOCAL, detail={"reason": "no cloud work"})
    with continuity._guard(f"starting {instance_id!r} in {continuity.cloud_name}"):
        # the cloud's certain refusals, asked before anything is stored
        continuity._preflight(replace(first, epoch=first.epoch + 1))
    created = store.commit(None, Transition(first, ()))  # the instance, none of its work
    if created != "ok":
        raise ContinuityError(f"instance {instance_id!r} exists already ({created})")
    with continuity._guard(f"starting {instance_id!r} in {continuity.cloud_name}"):
        handed = hand_over(store, instance_id, continuity.cloud, preflight=continuity._preflight)
        try:
            outcome = continuity._send(handed, give_back_on_refusal=False, record=True)
        except ContinuityError as refused:
            _cancel_here(continuity, instance_id, str(refused))
            raise StartRefusedError(
                f"{continuity.cloud_name} refused to start {instance_id!r}: {refused} (the "
                "instance is cancelled here; nothing of it ran)"
            ) from None
    return replace(outcome, action="start")


def _cancel_here(continuity: CloudContinuity, instance_id: str, reason: str) -> None:
    store = continuity.store
    fenced = store.load(instance_id, fresh=True)
    info = store.info(instance_id)
    current = replace(fenced, epoch=info.epoch)
    try:
        cancelled = advance(current, CancelRequested(f"start refused: {reason}"), continuity.now())
    except RustyFlowerError:
        return  # it ended meanwhile: nothing to cancel
    store.resume(cancelled.snapshot, take_ownership=True)


def _outcome(
    continuity: CloudContinuity, snapshot: Any, result: str, where: str, detail: dict[str, Any]
) -> Outcome:
    return Outcome(
        snapshot.instance_id,
        "start",
        where,
        result,
        flow=snapshot.definition.key,
        epoch=snapshot.epoch,
        seq=snapshot.seq,
        status=snapshot.status,
        where=where,
        detail=detail,
    )
