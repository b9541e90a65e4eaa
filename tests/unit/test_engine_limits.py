"""Limits the engine applies for every runtime (docs/semantics.md), and the linear
validation of large flows (core.model.graph)."""

from __future__ import annotations

import json
import time

from rustyflower.core.engine import start
from rustyflower.core.engine.machine import MAX_MAP_ITEMS
from rustyflower.core.model.formats import load_definition
from tests.unit.engine_kit import NOW, finish, flow

MAP = {
    "M": {
        "type": "map",
        "items_path": "$.items",
        "iterator": {"start_at": "P", "states": {"P": {"type": "pass", "end": True}}},
        "end": True,
    }
}


def test_a_map_over_too_many_items_fails_up_front_with_a_clear_error() -> None:
    """Before: a million items ran for minutes, then 'an endless loop of pass/choice states?'."""
    began = time.monotonic()
    transition = start(flow(MAP, start_at="M"), {"items": [0] * (MAX_MAP_ITEMS + 1)}, "i", NOW)
    assert time.monotonic() - began < 2
    done = finish(transition)
    assert (done.status, done.error) == ("failed", "States.Runtime")
    assert done.cause == (
        f"items_path '$.items' selected {MAX_MAP_ITEMS + 1} items; a map takes at most "
        f"{MAX_MAP_ITEMS} (split them over several maps, or a sub-flow per batch)"
    )
    kinds = [entry.kind for entry in transition.snapshot.state.history]
    assert "MapStarted" not in kinds


def test_a_map_below_the_limit_runs() -> None:
    transition = start(flow(MAP, start_at="M"), {"items": list(range(1000))}, "i", NOW)
    assert finish(transition).output == list(range(1000))


def test_a_10000_state_flow_validates_in_linear_time() -> None:
    """Before: 29 s for this chain (the dead-end check was a fixed point over all edges)."""
    count = 10_000
    states = {f"S{i}": {"type": "pass", "next": f"S{i + 1}"} for i in range(count - 1)}
    states[f"S{count - 1}"] = {"type": "succeed"}

    text = json.dumps({"name": "big", "start_at": "S0", "states": states})
    began = time.monotonic()
    definition = load_definition(text, "big.json")
    assert time.monotonic() - began < 5  # about 0.3 s here
    assert len(definition.states) == count
