"""Property: the engine moves data through a state as the ASL spec says, for every
combination of the five data-flow fields left out, null or set (issue 10).

``tests/harness/dataflow_paths.py`` builds the cases and holds the oracle (the spec's
"Input and Output Processing" on plain dicts); every combination of shapes is its own
test, hypothesis picks the values and the input. The same cases run on compiled ASL in
moto in tests/aws/test_dataflow_moto.py.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness.dataflow_paths import (
    Kind,
    Shape,
    engine_outcome,
    expected,
    path_cases,
    shape_id,
    shapes,
)

KINDS: tuple[Kind, ...] = ("task", "pass")
COMBINATIONS = [
    pytest.param(kind, shape, id=shape_id(kind, shape)) for kind in KINDS for shape in shapes(kind)
]


def test_every_combination_is_covered() -> None:
    # task: input/result/output path x3 (absent, null, set), parameters/selector x2
    assert len(COMBINATIONS) == 3**3 * 2**2 + 3**3 * 2


@pytest.mark.parametrize(("kind", "shape"), COMBINATIONS)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_engine_moves_data_as_the_asl_spec_says(
    kind: Kind, shape: dict[str, Shape], data: st.DataObject
) -> None:
    case = data.draw(path_cases(kind, shape), label="case")
    assert engine_outcome(case) == expected(case)
