"""The documented limits of definition text (core.model.formats; README.md "Limits").

Each case was a hang, a memory blow-up or a traceback before the limits: a YAML alias
bomb validated for seconds while it grew to hundreds of megabytes, and text nested
100,000 deep ended in RecursionError.
"""

from __future__ import annotations

import json
import time

import pytest

from rustyflower.core.errors import DefinitionError
from rustyflower.core.model.formats import (
    MAX_ALIAS_NODES,
    MAX_DEFINITION_BYTES,
    MAX_DEPTH,
    load_definition,
    nesting_depth,
)

HEAD = "name: f\nstart_at: A\nstates:\n  A:\n    type: pass\n    end: true\n"


def problems(text: str, source: str = "f.yaml") -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        load_definition(text, source)
    return [str(problem) for problem in caught.value.problems]


def alias_bomb(levels: int) -> str:
    """A valid definition whose pass result is 9**levels strings once aliases expand."""
    lines = [
        HEAD + "    result:",
        '      l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
    ]
    for level in range(1, levels):
        refs = ",".join([f"*l{level - 1}"] * 9)
        lines.append(f"      l{level}: &l{level} [{refs}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_before_it_expands() -> None:
    text = alias_bomb(7)  # 4.8 million strings from under 600 bytes
    assert len(text) < 600
    began = time.monotonic()
    found = problems(text)
    assert time.monotonic() - began < 5  # it was accepted, after 7 s and 250 MB
    assert len(found) == 1 and "aliases expand the document by" in found[0]
    assert f"at most {MAX_ALIAS_NODES}" in found[0]


def test_a_recursive_alias_is_refused() -> None:
    found = problems(HEAD + "    result: &loop [1, *loop]\n")
    assert found == ["yaml: an alias refers to a node that contains it (a recursive document)"]


def test_ordinary_anchors_are_welcome() -> None:
    text = (
        "name: f\nstart_at: A\nstates:\n"
        "  A: {type: task, activity: a, retry: &policy [{errors: [Net]}], next: B}\n"
        "  B: {type: task, activity: b, retry: *policy, end: true}\n"
    )
    definition = load_definition(text, "f.yaml")
    assert definition.states["A"].retry == definition.states["B"].retry


@pytest.mark.parametrize(
    ("text", "source"),
    [
        ("x: " + "[" * 100_000 + "]" * 100_000 + "\n", "deep.yaml"),
        ('{"x": ' + "[" * 100_000 + "]" * 100_000 + "}", "deep.json"),
        ('{"x": ' + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "}", "just-too-deep.json"),
        ("x: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n", "just-too-deep.yaml"),
    ],
    ids=["yaml-100k", "json-100k", "json-65", "yaml-65"],
)
def test_nesting_deeper_than_the_limit_is_refused(text: str, source: str) -> None:
    """Before: RecursionError (a traceback) for the 100,000-deep ones."""
    found = problems(text, source)
    assert len(found) == 1 and f"nested deeper than {MAX_DEPTH} levels" in found[0]


def test_nesting_up_to_the_limit_is_accepted() -> None:
    deep = '[[["innermost"]]]'.replace("[", "[" * (MAX_DEPTH - 5), 1)  # in states > A > result
    deep = deep.replace("]", "]" * (MAX_DEPTH - 5), 1)
    document = {"name": "f", "start_at": "A", "states": {"A": {"type": "pass", "end": True}}}
    document["states"]["A"]["result"] = json.loads(deep)
    text = json.dumps(document)
    assert nesting_depth(json.loads(text)) == MAX_DEPTH
    assert load_definition(text, "f.json").name == "f"
    assert load_definition(text, "f.yaml").name == "f"  # YAML reads JSON text too


def test_text_over_the_size_limit_is_refused_unread() -> None:
    text = HEAD + "description: " + "x" * MAX_DEFINITION_BYTES + "\n"
    found = problems(text)
    assert found == [f"flow: the document is {len(text)} bytes; at most {MAX_DEFINITION_BYTES}"]


def test_nesting_depth() -> None:
    assert nesting_depth(1) == 0
    assert nesting_depth([]) == 1
    assert nesting_depth({"a": [{"b": 2}]}) == 3
    deep: list[object] = []
    for _ in range(4999):
        deep = [deep]
    assert nesting_depth(deep) == 5000  # no recursion limit
