"""Property: compiled ASL on moto moves data through a state as the engine (and the ASL
spec) does, for every combination of the five data-flow fields left out, null or set.

The cases and the oracle are tests/harness/dataflow_paths.py (the engine's side is
tests/unit/test_dataflow_properties.py). Each case is a one-state flow, compiled and run
on moto's Step Functions executor with the real Lambda handlers (``moto_harness``);
its outcome must be the engine's and the oracle's. Every combination of shapes runs
once, side by side (values and input rotate through the case's choices), then
hypothesis draws a few more cases of any shape; moto runs executions in real time, so
the numbers stay small. moto raises States.Runtime where Step Functions raises
States.ParameterPathFailure (``moto_bugs.MOTO_ERROR_NAMES``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from rustyflower.adapters.aws import fresh_input
from tests.aws.moto_bugs import MOTO_ERROR_NAMES
from tests.aws.moto_harness import MotoWorld, moto_world
from tests.harness.dataflow_paths import (
    VALUES,
    Kind,
    Outcome,
    PathCase,
    any_path_cases,
    engine_outcome,
    expected,
    shape_id,
    shapes,
)

pytestmark = [pytest.mark.emulator, pytest.mark.slow]

RICH = {"n": 3, "order": {"id": 7, "items": [1, 2], "result": 0}, "k": "x"}
SPARSE = {"n": 4}
_names = itertools.count()


@pytest.fixture(scope="module")
def world() -> Iterator[MotoWorld]:
    with moto_world() as opened:
        yield opened


def as_moto_says(outcome: Outcome) -> Outcome:
    """The outcome Step Functions gives, as moto gives it (its known error names)."""
    if outcome.error is None:
        return outcome
    return Outcome(outcome.status, error=MOTO_ERROR_NAMES.get(outcome.error, outcome.error))


def start_on_moto(world: MotoWorld, case: PathCase) -> str:
    name = f"paths-{next(_names)}"
    arn = world.deploy(case.definition(name))
    return world.start(arn, fresh_input(name, case.input), name)


def moto_outcome(world: MotoWorld, execution_arn: str) -> Outcome:
    ended = world.wait(execution_arn, timeout=120)
    if ended.status == "SUCCEEDED":
        return Outcome("succeeded", output=ended.output)
    assert ended.status == "FAILED", ended
    return Outcome("failed", error=ended.error)


def every_combination() -> list[tuple[str, PathCase]]:
    """One case per combination of shapes: the n-th takes the n-th value of each field
    (cycling) and, every other one, an input without ``order`` (paths then select nothing)."""
    cases = []
    kinds: tuple[Kind, ...] = ("task", "pass")
    for index, (kind, shape) in enumerate((k, s) for k in kinds for s in shapes(k)):
        fields: dict[str, Any] = {}
        for field, how in shape.items():
            if how == "null":
                fields[field] = None
            elif how == "set":
                fields[field] = VALUES[field][index % len(VALUES[field])]
        data = RICH if index % 2 == 0 else SPARSE
        cases.append((shape_id(kind, shape), PathCase(kind, fields, data)))
    return cases


def test_every_combination_runs_on_moto_as_on_the_engine(world: MotoWorld) -> None:
    cases = every_combination()
    assert len(cases) == 3**3 * 2**2 + 3**3 * 2
    started = [(label, case, start_on_moto(world, case)) for label, case in cases]
    differences = []
    for label, case, execution_arn in started:
        oracle = expected(case)
        engine = engine_outcome(case)
        moto = moto_outcome(world, execution_arn)
        if not (engine == oracle and moto == as_moto_says(oracle)):
            differences.append(f"{label} {case}: oracle {oracle}, engine {engine}, moto {moto}")
    assert differences == []


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(case=any_path_cases())
def test_random_cases_run_on_moto_as_on_the_engine(world: MotoWorld, case: PathCase) -> None:
    oracle = expected(case)
    assert engine_outcome(case) == oracle
    assert moto_outcome(world, start_on_moto(world, case)) == as_moto_says(oracle)
