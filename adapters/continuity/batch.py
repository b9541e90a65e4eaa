"""Batches: which instances a failover or failback works on, and running it on each."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from rustyflower.adapters.continuity.outcomes import LOCAL, Action, Cloud, Outcome
from rustyflower.core.errors import RustyFlowerError
from rustyflower.core.instance_store import InstanceStore

__all__ = ["run_batch", "select_instances"]


def select_instances(
    store: InstanceStore, action: Action, cloud: Cloud, instance_ids: Sequence[str], every: bool
) -> list[str]:
    """The instances a batch works on: the ids given, or (``every``) every root instance
    that is running here (failover: owned locally or already by ``cloud``) or that lives
    in ``cloud`` (failback)."""
    if not every:
        return list(dict.fromkeys(instance_ids))
    wanted = (LOCAL, cloud) if action == "failover" else (cloud,)
    chosen: list[str] = []
    for info in store.list_instances(status="running", limit=10_000_000):
        if info.owner not in wanted:
            continue
        snapshot = store.load(info.instance_id, fresh=True)
        if snapshot.state.parent is None:
            chosen.append(info.instance_id)
    return sorted(chosen)


def run_batch(
    instance_ids: Iterable[str],
    step: Callable[[str], Outcome],
    *,
    action: Action,
    cloud: str,
    on_done: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Run ``step`` on each instance; a refused or failed one is reported, the batch goes on."""
    outcomes: list[Outcome] = []
    for instance_id in instance_ids:
        try:
            outcome = step(instance_id)
        except RustyFlowerError as error:
            outcome = Outcome(instance_id, action, cloud, "failed", error=_message(error))
        outcomes.append(outcome)
        if on_done is not None:
            on_done(outcome)
    return outcomes


def _message(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
