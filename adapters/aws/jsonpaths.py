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
NOTHING = "$.rf.nothing"
"""A path that selects nothing where the compiler keeps its ``rf`` object next to the
data (inside a map iteration, in a continuation): what a path reads of the empty object
that a null ``input_path`` makes (selecting nothing raises the error ASL raises there)."""


class NotComposable(ValueError):
    """A path cannot be moved under a prefix without changing its meaning."""


def compose(*paths: str) -> str:
    """Join paths: ``compose("$.d", "$.a", "$.b")`` -> ``"$.d.a.b"``; ``"$"`` adds nothing."""
    segments: list[Segment] = []
    wildcard = False
    for text in paths:
        if text == "$":
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


def reach(root: str | None, *paths: str | None) -> str | None:
    """Where the data is once ``paths`` are applied in turn to the data at ``root``.

    ``None`` stands for the empty object a null ``input_path``/``output_path`` makes
    (as a path it makes the data ``{}``, as the answer it says the data is ``{}``); a
    path applied to that empty object selects nothing (:data:`NOTHING`).
    """
    at = root
    for path in paths:
        if path is None:
            at = None
        elif path != "$":
            at = compose(NOTHING if at is None else at, path)
    return at


def reach_path(root: str | None, *paths: str | None) -> str:
    """:func:`reach` for a field that must hold a path (``ItemsPath``, ``SecondsPath``):
    the empty object becomes :data:`NOTHING` (ASL raises States.Runtime there, as the
    engine does for a value that is not what the field needs)."""
    at = reach(root, *paths)
    return NOTHING if at is None else at


def move_path(text: str, base: str | None, item_value: str | None = None) -> str | None:
    """A template or rule path read under ``base`` (``$$`` paths stay, but see ``item_value``).

    ``base`` None: the path reads the empty object (``$`` is that object: None).
    """
    if text.startswith("$$"):
        if item_value is not None and (
            text == CONTEXT_ITEM_VALUE
            or text.startswith((CONTEXT_ITEM_VALUE + ".", CONTEXT_ITEM_VALUE + "["))
        ):
            return item_value + text[len(CONTEXT_ITEM_VALUE) :]
        return text
    return reach(base, text)


def move_template(template: Any, base: str | None, item_value: str | None = None) -> Any:
    """A payload template whose ``key.$`` paths read under ``base`` (None: the empty object,
    so ``"key.$": "$"`` becomes ``"key": {}``)."""
    if isinstance(template, Mapping):
        moved: dict[str, Any] = {}
        for key, value in template.items():
            if key.endswith(".$") and isinstance(value, str):
                path = move_path(value, base, item_value)
                if path is None:
                    moved[key.removesuffix(".$")] = {}
                else:
                    moved[key] = path
            else:
                moved[key] = move_template(value, base, item_value)
        return moved
    if isinstance(template, list):
        return [move_template(item, base, item_value) for item in template]
    return template


_RULE_PATH_KEYS = frozenset({"Variable"})


def move_rule(rule: Mapping[str, Any], base: str | None) -> dict[str, Any]:
    """An ASL choice rule whose ``Variable`` and ``*Path`` operands read under ``base``
    (None: the empty object a null ``input_path`` makes)."""
    moved: dict[str, Any] = {}
    for key, value in rule.items():
        if key in ("And", "Or"):
            moved[key] = [move_rule(item, base) for item in value]
        elif key == "Not":
            moved[key] = move_rule(value, base)
        elif key in _RULE_PATH_KEYS or (key.endswith("Path") and isinstance(value, str)):
            path = move_path(value, base)
            if path is None:
                raise NotComposable(
                    f"a choice rule cannot read {value!r} of the empty input a null "
                    "input_path makes here (inside a map iteration)"
                )
            moved[key] = path
        else:
            moved[key] = value
    return moved
