"""Activities of the intake example: one pure scoring rule (no I/O: the service tasks of
the flow do the sending and storing, on whichever runtime runs it)."""

from __future__ import annotations

from typing import Any

from rustyflower import ActivityRegistry

registry = ActivityRegistry()

RISKY = frozenset({"XX", "YY"})


@registry.activity
def score_request(request: dict[str, Any]) -> int:
    """0 (fine) to 100 (refuse): large amounts and risky countries score higher."""
    score = min(int(request["amount"]) // 100, 80)
    if request["country"] in RISKY:
        score += 20
    return min(score, 100)
