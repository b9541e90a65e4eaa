"""Moving user paths under a prefix, so that a state can read data kept elsewhere than ``$``.

Inside a map iteration the compiled machine keeps the user's data under ``$.d`` (next to
what the engine's position needs) and a continued state finds it under
``$.rf.node.data``; the user's paths are rewritten to match: ``$.order.id`` under
``$.d`` is ``$.d.order.id``. Composition is exact only when the prefix is a definite
path or nothing is appended to it; otherwise :class:`NotComposable` is raised.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rustyflower.core.expressions import Segment, format_segments, parse_path

CONTEXT_ITEM_VALUE = "$$.Map.Item.Value"


class NotComposable(ValueError):
    """A path cannot be moved under a prefix without changing its meaning."""


def compose(*paths: str | None) -> str:
    """Join paths: ``compose("$.d", "$.a", "$.b")`` -> ``"$.d.a.b"``.

    ``None`` and ``"$"`` add nothing.
    """
    segments: list[Segment] = []
    wildcard = False
    for text in paths:
        if text is None or text == "$":
            continue
        path = parse_path(text)
        if path.is_context:
            raise NotComposable(f"{text!r} reads the context object; it cannot be moved")
        if wildcard and path.segments:
            raise NotComposable(
                f"{text!r} cannot be applied below a path with a wildcard without changing "
                "its meaning"
            )
        segments.extend(path.segments)
        wildcard = wildcard or not path.is_definite
    return format_segments(tuple(segments))


def move_path(text: str, base: str, item_value: str | None = None) -> str:
    """A template or rule path read under ``base`` (``$$`` paths stay, but see ``item_value``)."""
    if text.startswith("$$"):
        if item_value is not None and (
            text == CONTEXT_ITEM_VALUE
            or text.startswith((CONTEXT_ITEM_VALUE + ".", CONTEXT_ITEM_VALUE + "["))
        ):
            return item_value + text[len(CONTEXT_ITEM_VALUE) :]
        return text
    return compose(base, text)


def move_template(template: Any, base: str, item_value: str | None = None) -> Any:
    """A payload template whose ``key.$`` paths read under ``base``."""
    if isinstance(template, Mapping):
        moved: dict[str, Any] = {}
        for key, value in template.items():
            if key.endswith(".$") and isinstance(value, str):
                moved[key] = move_path(value, base, item_value)
            else:
                moved[key] = move_template(value, base, item_value)
        return moved
    if isinstance(template, list):
        return [move_template(item, base, item_value) for item in template]
    return template


_RULE_PATH_KEYS = frozenset({"Variable"})


def move_rule(rule: Mapping[str, Any], base: str) -> dict[str, Any]:
    """An ASL choice rule whose ``Variable`` and ``*Path`` operands read under ``base``."""
    moved: dict[str, Any] = {}
    for key, value in rule.items():
        if key in ("And", "Or"):
            moved[key] = [move_rule(item, base) for item in value]
        elif key == "Not":
            moved[key] = move_rule(value, base)
        elif key in _RULE_PATH_KEYS or (key.endswith("Path") and isinstance(value, str)):
            moved[key] = move_path(value, base)
        else:
            moved[key] = value
    return moved
