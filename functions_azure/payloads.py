"""The JSON the functions exchange through Durable: orchestration input and result.

Inside the task hub the snapshot travels as its canonical JSON text, unsigned and in
clear: the task hub is the trust boundary (it holds every activity's input and output in
clear anyway), and an unsigned text keeps the orchestrator deterministic and independent
of key rotation. Snapshots leave Azure signed (and encrypted when keys say so): the
checkpoint activity seals them, the final result carries a sealed one for failback.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from rustyflower.core.contract import RESULT_KIND
from rustyflower.core.engine import Snapshot
from rustyflower.core.snapshot.document import decode_snapshot, encode_snapshot

INPUT_KIND = "rustyflower.orchestration"
PAYLOAD_VERSION = 1


class PayloadError(ValueError):
    """A payload does not have the shape this app writes."""


def snapshot_text(snapshot: Snapshot) -> str:
    """The snapshot as unsigned canonical JSON text (deterministic, for inside the hub)."""
    return encode_snapshot(snapshot).decode("utf-8")


def snapshot_from_text(text: str) -> Snapshot:
    return decode_snapshot(text)


@dataclass(frozen=True)
class Options:
    continue_as_new_after: int = 100
    checkpoint_every: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "continue_as_new_after": self.continue_as_new_after,
            "checkpoint_every": self.checkpoint_every,
        }

    @classmethod
    def from_json(cls, raw: Any) -> Options:
        if not isinstance(raw, dict):
            return cls()
        return cls(
            continue_as_new_after=max(1, int(raw.get("continue_as_new_after", 100))),
            checkpoint_every=max(0, int(raw.get("checkpoint_every", 1))),
        )


@dataclass(frozen=True)
class OrchestrationInput:
    """What one generation of ``rustyflower_orchestrator`` starts from.

    ``children`` holds snapshots (text) of child flows that were already running
    elsewhere, by child instance id: a re-issued ``StartChildFlow`` continues the child
    from there instead of starting it again.
    """

    snapshot: str
    flows: tuple[dict[str, Any], ...] = ()
    children: dict[str, str] = field(default_factory=dict)
    options: Options = field(default_factory=Options)
    generation: int = 0
    checkpointed_seq: int = -1
    refused_events: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": INPUT_KIND,
            "version": PAYLOAD_VERSION,
            "snapshot": self.snapshot,
            "flows": list(self.flows),
            "children": dict(sorted(self.children.items())),
            "options": self.options.to_json(),
            "generation": self.generation,
            "checkpointed_seq": self.checkpointed_seq,
            "refused_events": self.refused_events,
        }

    @classmethod
    def from_json(cls, raw: Any) -> OrchestrationInput:
        if not isinstance(raw, dict) or raw.get("kind") != INPUT_KIND:
            raise PayloadError(
                f"the orchestration input is not a {INPUT_KIND} object; start orchestrations "
                "through POST /api/instances"
            )
        if raw.get("version") != PAYLOAD_VERSION:
            raise PayloadError(f"orchestration input version {raw.get('version')!r} is unknown")
        snapshot = raw.get("snapshot")
        if not isinstance(snapshot, str):
            raise PayloadError("the orchestration input has no snapshot text")
        children = raw.get("children") or {}
        return cls(
            snapshot=snapshot,
            flows=tuple(raw.get("flows") or ()),
            children={str(k): str(v) for k, v in children.items()},
            options=Options.from_json(raw.get("options")),
            generation=int(raw.get("generation", 0)),
            checkpointed_seq=int(raw.get("checkpointed_seq", -1)),
            refused_events=int(raw.get("refused_events", 0)),
        )

    def next_generation(
        self, snapshot: str, checkpointed_seq: int, refused_events: int
    ) -> OrchestrationInput:
        return replace(
            self,
            snapshot=snapshot,
            generation=self.generation + 1,
            checkpointed_seq=checkpointed_seq,
            refused_events=refused_events,
        )


def flow_result(
    snapshot: Snapshot,
    *,
    sealed: str | None,
    generation: int,
    refused_events: int,
    checkpoint_error: str | None = None,
) -> dict[str, Any]:
    """The orchestration's output: the flow's end, and its final snapshot for failback.

    The orchestration completes normally whatever the flow's status (a failed flow is a
    result, not an orchestration failure). ``snapshot`` is sealed with the app's keys
    when the checkpoint activity could seal it, else the unsigned text (``sealed``:
    false).
    """
    state = snapshot.state
    return {
        "kind": RESULT_KIND,
        "instance_id": snapshot.instance_id,
        "status": snapshot.status,
        "output": state.output,
        "error": state.error,
        "cause": state.cause,
        "seq": snapshot.seq,
        "epoch": snapshot.epoch,
        "snapshot": sealed if sealed is not None else snapshot_text(snapshot),
        "sealed": sealed is not None,
        "generation": generation,
        "refused_events": refused_events,
        "checkpoint_error": checkpoint_error,
    }
