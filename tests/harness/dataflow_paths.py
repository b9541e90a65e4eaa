"""The five data-flow fields of a state, every one absent, null or set: cases and an oracle.

Shared by the engine's property tests (tests/unit/test_dataflow_properties.py) and the
same properties on compiled ASL in moto (tests/aws/test_dataflow_moto.py); no tests here.

A :class:`PathCase` is one ``task`` (activity ``echo``: its result is its effective input)
or ``pass`` state with its ``input_path``, ``parameters``, ``result_selector`` (task
only), ``result_path`` and ``output_path`` each left out, null (the paths) or set, and an
input. :func:`expected` is the oracle: the Amazon States Language spec's "Input and Output
Processing" written out on plain dicts, for the few definite paths the cases use, so it
shares no code with the engine:

* InputPath selects the effective input from the raw input (left out: ``$``; null: ``{}``;
  selecting nothing: ``States.Runtime``);
* Parameters, a payload template, reshapes it (a ``.$`` path selecting nothing:
  ``States.ParameterPathFailure``);
* the result (the effective input, echoed) goes through ResultSelector (the same template
  rule), then ResultPath places it into the **raw** input (left out or ``$``: the result is
  the output; null: the raw input is; missing objects on the way are created; a value on
  the way that is not an object: ``States.ResultPathMatchFailure``);
* OutputPath selects the output (null: ``{}``; selecting nothing: ``States.Runtime``).

The value choices keep clear of moto's known bugs (tests/aws/moto_bugs.py): no ResultPath
through a number, no index into an empty list.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from hypothesis import strategies as st

from rustyflower.core.engine import ActivityCompleted, FinishFlow, RunActivity, advance, start
from rustyflower.core.model import FlowDefinition, parse_definition

Kind = Literal["task", "pass"]
Shape = Literal["absent", "null", "set"]

PATH_FIELDS = ("input_path", "result_path", "output_path")
TEMPLATE_FIELDS = ("parameters", "result_selector")
FIELDS = ("input_path", "parameters", "result_selector", "result_path", "output_path")

INPUT_PATHS = ["$", "$.order", "$.order.items", "$.n", "$.missing"]
PARAMETERS: list[dict[str, Any]] = [
    {"all.$": "$"},
    {"id.$": "$.id", "k": 1},
    {"first.$": "$.items[0]", "fixed": "x"},
    {"nested": {"n.$": "$.n"}, "list": [1, 2]},
]
RESULT_SELECTORS: list[dict[str, Any]] = [
    {"r.$": "$"},
    {"id.$": "$.id"},
    {"v.$": "$.all"},
    {"k.$": "$.k", "c": True},
]
RESULT_PATHS = ["$", "$.result", "$.order.result", "$.deep.er"]
OUTPUT_PATHS = ["$", "$.result", "$.order", "$.missing", "$.order.id"]
VALUES: dict[str, list[Any]] = {
    "input_path": INPUT_PATHS,
    "parameters": PARAMETERS,
    "result_selector": RESULT_SELECTORS,
    "result_path": RESULT_PATHS,
    "output_path": OUTPUT_PATHS,
}


def shapes(kind: Kind) -> list[dict[str, Shape]]:
    """Every combination of the fields a ``kind`` state has: paths absent, null or set;
    templates absent or set (ASL has no null template)."""
    fields = [f for f in FIELDS if kind == "task" or f != "result_selector"]
    choices = [
        ("absent", "null", "set") if field in PATH_FIELDS else ("absent", "set") for field in fields
    ]
    return [dict(zip(fields, combo, strict=True)) for combo in itertools.product(*choices)]


def shape_id(kind: Kind, shape: dict[str, Shape]) -> str:
    return kind + "-" + "-".join(f"{field.split('_')[0]}:{how}" for field, how in shape.items())


@dataclass(frozen=True)
class PathCase:
    kind: Kind
    fields: dict[str, Any]
    """The state's data-flow fields as written: a key left out is absent, None is null."""
    input: Any

    def state(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.kind, "end": True, **self.fields}
        if self.kind == "task":
            body["activity"] = "echo"
        return body

    def definition(self, name: str = "paths") -> FlowDefinition:
        return parse_definition({"name": name, "start_at": "S", "states": {"S": self.state()}})


def inputs() -> st.SearchStrategy[dict[str, Any]]:
    numbers = st.integers(min_value=-5, max_value=99)
    order = st.fixed_dictionaries(
        {"id": numbers, "items": st.lists(numbers, min_size=1, max_size=3)},
        optional={"result": numbers},
    )
    return st.fixed_dictionaries(
        {"n": numbers}, optional={"order": order, "k": st.text(max_size=3)}
    )


@st.composite
def path_cases(draw: st.DrawFn, kind: Kind, shape: dict[str, Shape]) -> PathCase:
    fields: dict[str, Any] = {}
    for field, how in shape.items():
        if how == "null":
            fields[field] = None
        elif how == "set":
            fields[field] = draw(st.sampled_from(VALUES[field]))
    return PathCase(kind, fields, draw(inputs()))


def any_path_cases() -> st.SearchStrategy[PathCase]:
    """A case of any kind and any shape."""
    kinds: tuple[Kind, ...] = ("task", "pass")
    every = [(kind, shape) for kind in kinds for shape in shapes(kind)]
    return st.sampled_from(every).flatmap(lambda pair: path_cases(pair[0], pair[1]))


# --- the oracle -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    status: Literal["succeeded", "failed"]
    output: Any = None
    error: str | None = None


class _Missing(Exception):
    pass


class _NotAnObject(Exception):
    pass


_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def _steps(path: str) -> list[str | int]:
    assert path.startswith("$"), path
    rest, steps, at = path[1:], [], 0
    while at < len(rest):
        found = _STEP.match(rest, at)
        assert found is not None, f"the oracle reads simple paths only, not {path!r}"
        steps.append(found[1] if found[1] is not None else int(found[2]))
        at = found.end()
    return steps


def _select(path: str | None, document: Any) -> Any:
    if path is None:
        return {}
    value = document
    for step in _steps(path):
        if isinstance(step, int):
            if not isinstance(value, list) or step >= len(value):
                raise _Missing(path)
            value = value[step]
        else:
            if not isinstance(value, dict) or step not in value:
                raise _Missing(path)
            value = value[step]
    return value


def _render(template: Any, document: Any) -> Any:
    if isinstance(template, dict):
        rendered = {}
        for key, value in template.items():
            if key.endswith(".$"):
                rendered[key[:-2]] = _select(value, document)
            else:
                rendered[key] = _render(value, document)
        return rendered
    if isinstance(template, list):
        return [_render(item, document) for item in template]
    return template


def _place(document: Any, path: str, value: Any) -> Any:
    steps = _steps(path)
    if not steps:
        return value
    root = _copy(document)
    holder = root
    for step in steps[:-1]:
        if not isinstance(holder, dict) or not isinstance(step, str):
            raise _NotAnObject(path)
        holder = holder.setdefault(step, {})
    if not isinstance(holder, dict) or not isinstance(steps[-1], str):
        raise _NotAnObject(path)
    holder[steps[-1]] = value
    return root


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def engine_outcome(case: PathCase) -> Outcome:
    """The case run by the engine: its echo activity answers with the call's input."""
    now = datetime(2024, 1, 1, tzinfo=UTC)
    transition = start(case.definition(), case.input, "paths-1", now)
    for command in transition.commands:
        if isinstance(command, RunActivity):
            echoed = ActivityCompleted(command.call_id, command.input)
            transition = advance(transition.snapshot, echoed, now)
    finish = transition.commands[-1]
    assert isinstance(finish, FinishFlow), transition.commands
    if finish.status == "succeeded":
        return Outcome("succeeded", output=finish.output)
    assert finish.status == "failed", finish
    return Outcome("failed", error=finish.error)


def expected(case: PathCase) -> Outcome:
    """What the ASL spec says the state outputs (or which error it raises)."""
    fields, raw = case.fields, case.input
    try:
        effective = _select(fields.get("input_path", "$"), raw)
    except _Missing:
        return Outcome("failed", error="States.Runtime")
    try:
        if "parameters" in fields:
            effective = _render(fields["parameters"], effective)
        result = effective  # echo, or a pass without a result
        if "result_selector" in fields:
            result = _render(fields["result_selector"], result)
    except _Missing:
        return Outcome("failed", error="States.ParameterPathFailure")
    result_path = fields.get("result_path", "$")
    try:
        combined = raw if result_path is None else _place(raw, result_path, result)
    except _NotAnObject:
        return Outcome("failed", error="States.ResultPathMatchFailure")
    try:
        return Outcome("succeeded", output=_select(fields.get("output_path", "$"), combined))
    except _Missing:
        return Outcome("failed", error="States.Runtime")
