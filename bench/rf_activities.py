"""The bench's one activity for `rustyflower worker --activities bench.rf_activities`."""

from __future__ import annotations

from rustyflower import ActivityRegistry

registry = ActivityRegistry()


@registry.activity
def step(value: int) -> int:
    return value + 1
