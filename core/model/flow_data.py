"""What any door (CLI, HTTP API, client) accepts as flow data: the limits README "Limits"
states, checked in one place so every door refuses the same values with the same words."""

from __future__ import annotations

import math
import re
from typing import Any

from rustyflower.core.model.formats import MAX_DEPTH

_SURROGATE = re.compile("[\ud800-\udfff]")


def flow_data_problem(value: Any) -> str | None:
    """Why ``value`` cannot be flow data (nested deeper than ``MAX_DEPTH``, NaN or
    Infinity, a lone surrogate that is not text); None when it can."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return "holds NaN or Infinity, which JSON data cannot carry"
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return "holds a lone surrogate (\\ud800-\\udfff), which is not text"
            continue
        if isinstance(item, dict):
            children: list[Any] = [*item.keys(), *item.values()]
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth + 1 > MAX_DEPTH:
            return f"nests deeper than {MAX_DEPTH} levels"
        stack.extend((child, depth + 1) for child in children)
    return None
