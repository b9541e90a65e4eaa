"""The flow-data limits every door applies (core/model/flow_data.py)."""

from __future__ import annotations

import pytest

from rustyflower.core.model.flow_data import flow_data_problem
from rustyflower.core.model.formats import MAX_DEPTH


def _nested(levels: int) -> object:
    value: object = 1
    for _ in range(levels):
        value = [value]
    return value


def test_ordinary_data_is_fine() -> None:
    assert flow_data_problem({"order": [1, 2.5, "x", None, True, {"a": {}}]}) is None
    assert flow_data_problem(_nested(MAX_DEPTH)) is None


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (_nested(MAX_DEPTH + 1), f"deeper than {MAX_DEPTH}"),
        ({"x": float("nan")}, "NaN or Infinity"),
        ([float("-inf")], "NaN or Infinity"),
        ({"\ud800": 1}, "lone surrogate"),
        (["ok", "\udfff"], "lone surrogate"),
    ],
)
def test_what_is_refused_and_why(value: object, words: str) -> None:
    problem = flow_data_problem(value)
    assert problem is not None and words in problem
