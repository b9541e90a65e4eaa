"""What the drill measures and checks: the reference outputs, RPO from the replicas, the
history of every instance, the activity ledger."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rustyflower.adapters.drill.flows import EVENT, FLOWS, MAIN, event_data, flow_input, registry
from rustyflower.adapters.local import FlowLibrary, ScriptedEvent, World, run_flow

__all__ = [
    "Outcome",
    "Report",
    "duplicate_executions",
    "duplicate_transitions",
    "effective_history",
    "honoured_repeats",
    "percentile",
    "reference_outputs",
]

FLOW_ENDS = frozenset({"FlowSucceeded", "FlowFailed", "FlowCancelled"})
OWNERSHIP = frozenset({"TakenOver", "FailedOver", "FailedBack", "Reclaimed"})


def reference_outputs(seed: int, instance_ids: list[str]) -> dict[str, Any]:
    """Each instance's output on the in-process runtime on virtual time (same input, same
    event), with no ledger: the reference does not count as an execution."""
    library = FlowLibrary(FLOWS)
    outputs: dict[str, Any] = {}
    for index, instance_id in enumerate(instance_ids):
        world = World(
            registry,
            flows=library,
            events=[ScriptedEvent(EVENT, event_data(seed, index), 1)],
        )
        result = run_flow(MAIN, flow_input(seed, index), world, instance_id=instance_id)
        outputs[instance_id] = result.output
    return outputs


def percentile(values: list[int], share: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return float(values[0])
    cuts = statistics.quantiles(sorted(values), n=100, method="inclusive")
    return float(cuts[min(98, max(0, round(share * 100) - 1))])


def effective_history(history: Sequence[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], int]:
    """The history without what a takeover superseded, and how many entries that was.

    A ``TakenOver`` entry says from which seq the cloud continued (``from_seq``): the
    site's entries past it were never replicated; the cloud redid those transitions (the
    RPO), and its entries follow. Ownership entries carry the seq they happened at."""
    kept: list[Mapping[str, Any]] = []
    superseded = 0
    for entry in history:
        detail = entry.get("detail")
        if entry.get("kind") == "TakenOver" and isinstance(detail, Mapping):
            cut = detail.get("from_seq")
            if isinstance(cut, int):
                before = len(kept)
                kept = [
                    one
                    for one in kept
                    if not (isinstance(one.get("seq"), int) and one["seq"] > cut)
                ]
                superseded += before - len(kept)
        kept.append(entry)
    return kept, superseded


def duplicate_transitions(history: Sequence[Mapping[str, Any]]) -> int:
    """Transitions applied twice in the effective history: an entry repeated as it was
    (same seq, kind, position, detail), a seq going back, flow ends beyond the first.
    One transition writes several entries under one seq."""
    seen: set[str] = set()
    repeated = backwards = ends = 0
    last = -1
    for entry in effective_history(history)[0]:
        identity = json.dumps(
            [entry.get("seq"), entry.get("kind"), entry.get("position"), entry.get("detail")],
            sort_keys=True,
        )
        repeated += identity in seen
        seen.add(identity)
        seq = entry.get("seq")
        if isinstance(seq, int) and entry.get("kind") not in OWNERSHIP:
            backwards += seq < last
            last = max(last, seq)
        ends += entry.get("kind") in FLOW_ENDS
    return repeated + backwards + max(0, ends - 1)


def duplicate_executions(ledger: Path) -> int:
    """Calls (root instance, activity input) executed under more than one idempotency key.

    Grouped by the root instance (the id before the first ``/``) so that a child flow
    started twice under two ids (one by the site, one by the cloud) is caught too.
    """
    keys: dict[tuple[str, str], set[str]] = defaultdict(set)
    for entry in _ledger(ledger):
        if not entry.get("repeat"):
            root = str(entry["instance"]).partition("/")[0]
            keys[root, entry["call"]].add(entry["key"])
    return sum(len(found) - 1 for found in keys.values())


def honoured_repeats(ledger: Path) -> int:
    """Calls asked again under a key that ran already (answered from the ledger, not
    executed): what a takeover redid with the site's keys."""
    return sum(1 for entry in _ledger(ledger) if entry.get("repeat"))


def _ledger(ledger: Path) -> list[dict[str, Any]]:
    if not ledger.exists():
        return []
    return [json.loads(line) for line in ledger.read_text(encoding="utf-8").splitlines()]


@dataclass
class Outcome:
    instance_id: str
    status: str
    finished_in: str
    """``site`` (never left), ``aws``/``azure`` (ended in the cloud, failed back ended),
    ``site-after-failback`` (failed back running, ended on the site)."""
    replicated_seq: int | None
    site_seq: int
    duplicates: int
    matches: bool
    superseded: int = 0
    """History entries of the site's transitions a takeover superseded (redone in the cloud)."""


@dataclass
class Report:
    cloud: str
    seed: int
    kill_after: float
    rto_seconds: float | None
    """Kill to the first transition in the cloud (the first instance it continued)."""
    takeover_seconds: float | None = None
    """Kill to the end of the takeover (every instance continued)."""
    settle: float = 0.0
    """The replicator's settle time (seconds) in the drill."""
    outcomes: list[Outcome] = field(default_factory=list)
    duplicate_executions: int = 0
    honoured_repeats: int = 0
    """Calls asked again under the same key (not executed again: not a fault)."""

    @property
    def lags(self) -> list[int]:
        return [
            o.site_seq - (o.replicated_seq if o.replicated_seq is not None else 0)
            for o in self.outcomes
        ]

    @property
    def not_replicated(self) -> list[str]:
        return [o.instance_id for o in self.outcomes if o.replicated_seq is None]

    @property
    def mismatches(self) -> int:
        return sum(1 for o in self.outcomes if not o.matches)

    @property
    def duplicates(self) -> int:
        return sum(o.duplicates for o in self.outcomes)

    @property
    def unfinished(self) -> list[str]:
        return [o.instance_id for o in self.outcomes if o.status != "succeeded"]

    @property
    def ok(self) -> bool:
        return not (
            self.mismatches or self.duplicates or self.duplicate_executions or self.unfinished
        )

    def document(self) -> dict[str, Any]:
        where: dict[str, int] = defaultdict(int)
        for outcome in self.outcomes:
            where[outcome.finished_in] += 1
        return {
            "cloud": self.cloud,
            "seed": self.seed,
            "instances": len(self.outcomes),
            "kill_after_seconds": round(self.kill_after, 3),
            "settle_seconds": self.settle,
            "rpo_transitions": {
                "p50": percentile(self.lags, 0.5),
                "p99": percentile(self.lags, 0.99),
            },
            "rto_seconds": None if self.rto_seconds is None else round(self.rto_seconds, 3),
            "takeover_seconds": (
                None if self.takeover_seconds is None else round(self.takeover_seconds, 3)
            ),
            "not_replicated": self.not_replicated,
            "superseded_entries": sum(o.superseded for o in self.outcomes),
            "duplicate_transitions": self.duplicates,
            "mismatches": self.mismatches,
            "duplicate_executions": self.duplicate_executions,
            "honoured_repeats": self.honoured_repeats,
            "unfinished": self.unfinished,
            "finished_in": dict(sorted(where.items())),
            "per_instance": [
                {
                    "instance": o.instance_id,
                    "status": o.status,
                    "finished_in": o.finished_in,
                    "site_seq": o.site_seq,
                    "replicated_seq": o.replicated_seq,
                    "duplicates": o.duplicates,
                    "superseded": o.superseded,
                    "matches": o.matches,
                }
                for o in self.outcomes
            ],
            "ok": self.ok,
        }
