"""Failover and failback, the part both clouds share: fencing, handover, give-back, the ledger.

Words used throughout (docs/failover.md is the runbook):

* **owner**: who may advance an instance: ``local`` (the Redis runner), ``aws`` or
  ``azure``. The store keeps it next to the instance's **epoch**; every commit carries the
  epoch of the snapshot it advanced, and the store refuses a commit whose epoch is older
  than the stored one (``RedisStore.fence``).
* **handover**: fence the instance locally first (epoch + 1, owner = the cloud), so the
  on-premises runner cannot advance it any more, then seal its snapshot *at the new epoch*
  with the site's keys. The cloud continues that snapshot; its execution (AWS) or
  orchestration (Azure) is named after the instance and the epoch, so sending the same
  handover twice is one run. An instance already fenced for that cloud is sent again at
  its current epoch: the epoch is never raised twice for one failover.
* **give back**: a failover that the cloud refused for certain (a bad snapshot, a flow not
  deployed) returns the instance to the local runner at once (``resume --take-ownership``:
  epoch + 1, owner local), so a refused failover never leaves it stranded.
* **failback**: the cloud's state comes back as a snapshot (the Azure checkpoint, the AWS
  execution history) and is resumed locally with ``take_ownership`` (epoch + 1, owner
  local): whatever the cloud might still do is refused from then on.
* **ledger**: a small hash per instance (``<prefix>:continuity:<instance id>``) records
  where the instance went (cloud, epoch, execution ARN or orchestration id, child flows),
  for failback and for people; it is a convenience, never the authority (the epoch is).

Nothing here imports a cloud SDK: the per-cloud modules (``aws``, ``azure``) are imported
only when a command needs them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from rustyflower.adapters.redis.conductor import Conductor
from rustyflower.adapters.redis.store import RedisStore, UnknownFlowError
from rustyflower.core.engine import ChildFinished, Snapshot, StartChildFlow
from rustyflower.core.errors import RustyFlowerError
from rustyflower.core.model import Branch, FlowDefinition, SubFlowState, iter_states
from rustyflower.core.snapshot import SnapshotKeys
from rustyflower.core.snapshot.document import decode_snapshot, encode_snapshot
from rustyflower.core.timeutil import format_timestamp

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
    "forget_ledger",
    "give_back",
    "hand_over",
    "hand_over_file",
    "ledger",
    "ledger_children",
    "notify_parent",
    "record_ledger",
    "resume_from_cloud",
    "run_batch",
    "select_instances",
    "sub_flow_calls",
    "sub_flow_definitions",
]

LOCAL = "local"
Cloud = Literal["aws", "azure"]
CLOUDS: tuple[Cloud, ...] = ("aws", "azure")
Action = Literal["failover", "failback"]


class ContinuityError(RustyFlowerError):
    """A failover or failback step was refused or failed; the message says which and why."""


class ContinuityConfigError(ContinuityError):
    """A setting the step needs is missing or unusable (the CLI exits 3)."""


class OwnershipError(ContinuityError):
    """The instance is not where the step expects it (another owner, finished, unknown)."""


# --- results ---------------------------------------------------------------------------------


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


# --- the ledger -------------------------------------------------------------------------------


def _ledger_key(store: RedisStore, instance_id: str) -> str:
    return f"{store.keys.prefix}:continuity:{instance_id}"


def record_ledger(store: RedisStore, instance_id: str, fields: Mapping[str, Any]) -> None:
    """Write where the instance went (the previous record of the instance is replaced)."""
    values: dict[Any, Any] = {
        name: value if isinstance(value, str) else json.dumps(value)
        for name, value in fields.items()
        if value is not None
    }
    values["at"] = format_timestamp(datetime.now(UTC))
    key = _ledger_key(store, instance_id)
    pipe = store.client.pipeline(transaction=True)
    pipe.delete(key)
    pipe.hset(key, mapping=values)
    pipe.execute()


def ledger(store: RedisStore, instance_id: str) -> dict[str, str]:
    """The recorded failover of an instance (empty when none is recorded)."""
    raw = store.client.hgetall(_ledger_key(store, instance_id))
    return {_text(name): _text(value) for name, value in raw.items()}


def forget_ledger(store: RedisStore, instance_id: str) -> None:
    store.client.delete(_ledger_key(store, instance_id))


def ledger_children(record: Mapping[str, str]) -> list[str]:
    raw = record.get("children")
    if not raw:
        return []
    try:
        value = json.loads(raw)
    except ValueError:
        return []
    return [str(item) for item in value] if isinstance(value, list) else []


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# --- handover ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Handover:
    """An instance fenced for a cloud, and its signed snapshot at the cloud's epoch."""

    snapshot: Snapshot
    data: bytes
    fenced: bool
    """True when this handover raised the epoch (False: it was fenced for the cloud before,
    or it came from a snapshot file)."""
    previous_epoch: int
    children: tuple[Snapshot, ...] = ()
    """Child flows in flight (running locally when the parent was fenced), fenced too."""
    children_data: tuple[bytes, ...] = ()

    @property
    def instance_id(self) -> str:
        return self.snapshot.instance_id

    @property
    def epoch(self) -> int:
        return self.snapshot.epoch


Preflight = Callable[[Snapshot], None]
"""Checks a snapshot (at the epoch it would be sent with) before the instance is fenced;
raises to refuse the failover while the instance is still local."""


def hand_over(
    conductor: Conductor,
    instance_id: str,
    cloud: Cloud,
    *,
    preflight: Preflight | None = None,
) -> Handover:
    """Fence ``instance_id`` for ``cloud`` (once) and seal its snapshot at the new epoch.

    The order matters: the store refuses the local runner's commits from the moment the
    epoch is raised, so the snapshot read *after* fencing is the last one the site wrote.
    """
    store = conductor.store
    info = store.info(instance_id)
    if info.owner not in (LOCAL, cloud):
        raise OwnershipError(
            f"instance {instance_id!r} lives in {info.owner} (epoch {info.epoch}); fail it "
            f"back from {info.owner} before failing it over to {cloud}"
        )
    current = store.load(instance_id, fresh=True)
    if current.state.parent is not None:
        raise OwnershipError(
            f"instance {instance_id!r} is a child flow of {current.state.parent.instance_id!r}:"
            " fail over its root instance (child flows in flight travel with it)"
        )
    previous_epoch = info.epoch
    fenced = False
    if info.owner == LOCAL:
        if current.finished:
            raise OwnershipError(
                f"instance {instance_id!r} already {current.status}: nothing to fail over"
            )
        if preflight is not None:
            preflight(replace(current, epoch=info.epoch + 1))
        fenced = store.fence(instance_id, info.epoch + 1, cloud)
        info = store.info(instance_id)
        if info.owner != cloud:  # another failover (to another cloud) was first
            raise OwnershipError(
                f"instance {instance_id!r} was just taken by {info.owner} (epoch {info.epoch})"
            )
    snapshot = replace(store.load(instance_id, fresh=True), epoch=info.epoch)
    if preflight is not None and (fenced or snapshot.seq != current.seq):
        try:  # it may have moved between the check and the fence
            preflight(snapshot)
        except RustyFlowerError:
            if fenced:
                give_back(conductor, snapshot)
            raise
    children = _fence_children(store, snapshot, cloud)
    keys = store.snapshot_keys
    return Handover(
        snapshot=snapshot,
        data=encode_snapshot(snapshot, keys),
        fenced=fenced,
        previous_epoch=previous_epoch,
        children=tuple(children),
        children_data=tuple(encode_snapshot(child, keys) for child in children),
    )


def hand_over_file(data: bytes, keys: SnapshotKeys, *, source: str = "snapshot") -> Handover:
    """A snapshot file (no local store to fence: the site is gone) sent at its epoch + 1.

    The same file always gives the same epoch, hence the same execution or orchestration:
    sending it twice is one run. Nothing on-premises can be fenced from here; the site
    must not come back with that instance (or must be fenced by its own store).
    """
    snapshot = decode_snapshot(data, keys)
    if snapshot.finished:
        raise OwnershipError(f"{source}: instance {snapshot.instance_id!r} already finished")
    raised = replace(snapshot, epoch=snapshot.epoch + 1)
    return Handover(
        snapshot=raised,
        data=encode_snapshot(raised, keys),
        fenced=False,
        previous_epoch=snapshot.epoch,
    )


def _children_in_flight(store: RedisStore, snapshot: Snapshot) -> Iterator[str]:
    for entry in snapshot.state.pending.values():
        command = entry.command
        if isinstance(command, StartChildFlow) and store.exists(command.child_instance_id):
            yield command.child_instance_id


def _fence_children(store: RedisStore, parent: Snapshot, cloud: Cloud) -> list[Snapshot]:
    """Fence every running child flow of ``parent`` (and theirs) for ``cloud``."""
    found: list[Snapshot] = []
    pending = list(_children_in_flight(store, parent))
    seen: set[str] = set()
    while pending:
        child_id = pending.pop(0)
        if child_id in seen:
            continue
        seen.add(child_id)
        info = store.info(child_id)
        if info.owner not in (LOCAL, cloud) or info.status != "running":
            continue  # finished (its parent will hear of it) or elsewhere already
        if info.owner == LOCAL:
            store.fence(child_id, info.epoch + 1, cloud)
            info = store.info(child_id)
            if info.owner != cloud:
                continue
        child = replace(store.load(child_id, fresh=True), epoch=info.epoch)
        if child.finished:
            continue
        found.append(child)
        pending.extend(_children_in_flight(store, child))
    return found


def give_back(conductor: Conductor, snapshot: Snapshot) -> Snapshot:
    """Resume ``snapshot`` (at the cloud's epoch) locally with a raised epoch, owner local."""
    store = conductor.store
    resumed = conductor.resume(encode_snapshot(snapshot, store.snapshot_keys), take_ownership=True)
    forget_ledger(store, snapshot.instance_id)
    return resumed


def resume_from_cloud(conductor: Conductor, snapshot: Snapshot, cloud: Cloud) -> Snapshot:
    """Failback: resume the cloud's ``snapshot`` here, taking the instance back (epoch + 1)."""
    store = conductor.store
    info = store.info(snapshot.instance_id)
    if info.owner != cloud:
        raise OwnershipError(
            f"instance {snapshot.instance_id!r} is owned by {info.owner} here, not {cloud}: "
            "nothing to fail back"
        )
    if snapshot.epoch != info.epoch:
        raise ContinuityError(
            f"instance {snapshot.instance_id!r}: the snapshot read from {cloud} is of epoch "
            f"{snapshot.epoch}, but the instance went to {cloud} at epoch {info.epoch}; "
            "refusing a snapshot of another failover"
        )
    return give_back(conductor, snapshot)


# --- selecting instances -------------------------------------------------------------------


def select_instances(
    store: RedisStore, action: Action, cloud: Cloud, instance_ids: Sequence[str], every: bool
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


# --- sub-flows -------------------------------------------------------------------------------


def sub_flow_calls(branch: Branch) -> Iterator[SubFlowState]:
    """Every ``sub_flow`` state of a flow, nested branches and iterators included."""
    return (state for state in iter_states(branch) if isinstance(state, SubFlowState))


def sub_flow_definitions(
    store: RedisStore, roots: Iterable[FlowDefinition]
) -> list[FlowDefinition]:
    """The registered flows the ``roots`` can start, transitively (the latest version for a
    call without one). Flows not registered here are left out: the cloud may ship them."""
    found: dict[str, FlowDefinition] = {}
    pending = list(roots)
    seen: set[str] = set()
    while pending:
        definition = pending.pop()
        for call in sub_flow_calls(definition):
            try:
                target = store.definition(call.flow, call.version)
            except UnknownFlowError:
                continue
            if target.key not in seen:
                seen.add(target.key)
                found[target.key] = target
                pending.append(target)
    return list(found.values())


# --- signals -------------------------------------------------------------------------------


def deliver_signal(
    store: RedisStore,
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
    if owner == "azure":
        from rustyflower.adapters.continuity.azure import AzureSettings, signal_azure  # noqa: PLC0415

        return signal_azure(instance_id, event, data, AzureSettings.from_env(settings_source))
    if owner == "aws":
        from rustyflower.adapters.continuity.aws import AwsSettings, signal_aws  # noqa: PLC0415

        return signal_aws(instance_id, event, data, AwsSettings.from_env(settings_source))
    raise OwnershipError(f"instance {instance_id!r} is owned by {owner!r}, which is not reachable")


def notify_parent(conductor: Conductor, child: Snapshot) -> None:
    """A child flow failed back *finished*: tell its parent, as the runner would have.

    (Resuming a finished snapshot dispatches nothing, so the parent would wait forever.)
    A parent that already knows (the event is stale) or is not here ignores it.
    """
    parent = child.state.parent
    if not child.finished or parent is None:
        return
    store = conductor.store
    if not store.exists(parent.instance_id) or store.info(parent.instance_id).owner != LOCAL:
        return
    state = child.state
    conductor.apply(
        parent.instance_id,
        ChildFinished(parent.call_id, child.status, state.output, state.error, state.cause),
    )
