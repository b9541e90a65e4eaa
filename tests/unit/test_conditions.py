"""Choice rules: validation, ASL comparison semantics, ASL form and JSON schema."""

from __future__ import annotations

import copy
import json
import pickle
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError

from rustyflower.core.errors import PathNotFoundError
from rustyflower.core.expressions import (
    OPERATORS,
    AllOf,
    AnyOf,
    Comparison,
    Condition,
    Not,
    condition_from_asl,
    is_rfc3339_timestamp,
)
from rustyflower.core.expressions import conditions as conditions_module

ADAPTER: TypeAdapter[Any] = TypeAdapter(Condition)


def rule(data: dict[str, Any]) -> Any:
    return ADAPTER.validate_python(data)


# --- typed comparisons: literal and _path variants ------------------------------------------

T1 = "2016-03-14T01:59:00Z"
T1_OFFSET = "2016-03-14T03:59:00+02:00"
T1_NEG = "2016-03-13T20:59:00-05:00"
T2 = "2016-03-14T01:59:00.5Z"
T2_NANO = "2016-03-14T01:59:00.000000001Z"

# (operator, variable value, operand, expected)
CASES: list[tuple[str, Any, Any, bool]] = [
    # strings
    ("string_equals", "abc", "abc", True),
    ("string_equals", "abc", "abd", False),
    ("string_equals", "", "", True),
    ("string_less_than", "abc", "abd", True),
    ("string_less_than", "abd", "abc", False),
    ("string_less_than", "abc", "abc", False),
    ("string_less_than", "B", "a", True),
    ("string_less_than", "ab", "abc", True),
    ("string_less_than", "\U0001f600", "\uffff", True),  # UTF-16 order, as Java compares
    ("string_greater_than", "b", "a", True),
    ("string_greater_than", "a", "a", False),
    ("string_greater_than", "\uffff", "\U0001f600", True),
    ("string_less_than_equals", "a", "a", True),
    ("string_less_than_equals", "a", "b", True),
    ("string_less_than_equals", "b", "a", False),
    ("string_greater_than_equals", "a", "a", True),
    ("string_greater_than_equals", "b", "a", True),
    ("string_greater_than_equals", "a", "b", False),
    # numbers
    ("numeric_equals", 1, 1, True),
    ("numeric_equals", 1, 1.0, True),
    ("numeric_equals", 1.5, 1.5, True),
    ("numeric_equals", 1, 2, False),
    ("numeric_equals", 0, -0.0, True),
    ("numeric_less_than", 1, 2, True),
    ("numeric_less_than", 2, 1.5, False),
    ("numeric_less_than", 2, 2, False),
    ("numeric_less_than", -3, -2.5, True),
    ("numeric_greater_than", 2.5, 2, True),
    ("numeric_greater_than", 2, 2, False),
    ("numeric_less_than_equals", 2, 2.0, True),
    ("numeric_less_than_equals", 3, 2, False),
    ("numeric_greater_than_equals", 2, 2, True),
    ("numeric_greater_than_equals", 1, 2, False),
    # booleans
    ("boolean_equals", True, True, True),
    ("boolean_equals", False, False, True),
    ("boolean_equals", False, True, False),
    # timestamps (compared as instants)
    ("timestamp_equals", T1, T1, True),
    ("timestamp_equals", T1, T1_OFFSET, True),
    ("timestamp_equals", T1_NEG, T1, True),
    ("timestamp_equals", T1, T2, False),
    ("timestamp_equals", "2016-03-14T01:59:00.500Z", T2, True),
    ("timestamp_less_than", T1, T2, True),
    ("timestamp_less_than", T1, T2_NANO, True),
    ("timestamp_less_than", T2, T1, False),
    ("timestamp_less_than", T1_OFFSET, T2, True),
    ("timestamp_greater_than", T2, T1_OFFSET, True),
    ("timestamp_greater_than", T1, T1_OFFSET, False),
    ("timestamp_less_than_equals", T1, T1_OFFSET, True),
    ("timestamp_less_than_equals", T2, T1, False),
    ("timestamp_greater_than_equals", T1_NEG, T1, True),
    ("timestamp_greater_than_equals", T1, T2, False),
]

# (operator, a valid operand, values of the wrong type for it)
WRONG_TYPES: list[tuple[str, Any, list[Any]]] = [
    *[
        (name, "abc", [1, 1.5, True, None, ["abc"], {"a": "abc"}])
        for name in OPERATORS
        if name.startswith("string_") and not name.endswith("_path") and name != "string_matches"
    ],
    *[
        (name, 1, ["1", True, False, None, [1], {"n": 1}])
        for name in OPERATORS
        if name.startswith("numeric_") and not name.endswith("_path")
    ],
    ("boolean_equals", True, [1, 0, "true", None, [True]]),
    *[
        (name, T1, [1, None, "not a time", "2016-03-14", "2016-03-14 01:59:00Z", [T1]])
        for name in OPERATORS
        if name.startswith("timestamp_") and not name.endswith("_path")
    ],
]


@pytest.mark.parametrize(("name", "value", "operand", "expected"), CASES)
def test_comparison_literal(name: str, value: Any, operand: Any, expected: bool) -> None:
    condition = Comparison.model_validate({"variable": "$.v", name: operand})
    assert condition.evaluate({"v": value}) is expected
    assert condition.operator == name
    assert condition.operand == operand


@pytest.mark.parametrize(("name", "value", "operand", "expected"), CASES)
def test_comparison_path_variant(name: str, value: Any, operand: Any, expected: bool) -> None:
    condition = Comparison.model_validate({"variable": "$.v", f"{name}_path": "$.other.o"})
    assert condition.evaluate({"v": value, "other": {"o": operand}}) is expected
    assert condition.paths() == ["$.v", "$.other.o"]


@pytest.mark.parametrize(("name", "operand", "wrong"), WRONG_TYPES)
def test_wrong_type_is_false(name: str, operand: Any, wrong: list[Any]) -> None:
    literal = Comparison.model_validate({"variable": "$.v", name: operand})
    by_path = Comparison.model_validate({"variable": "$.v", f"{name}_path": "$.o"})
    negated = rule({"not": {"variable": "$.v", name: operand}})
    for value in wrong:
        assert literal.evaluate({"v": value}) is False, value
        assert negated.evaluate({"v": value}) is True, value
        # wrong type on either side of a _path comparison
        assert by_path.evaluate({"v": value, "o": operand}) is False, value
        assert by_path.evaluate({"v": operand, "o": value}) is False, value


@pytest.mark.parametrize("name", [name for name in OPERATORS if name != "is_present"])
def test_missing_variable_raises(name: str) -> None:
    operand = _sample_operand(name)
    condition = Comparison.model_validate({"variable": "$.missing.deep", name: operand})
    with pytest.raises(PathNotFoundError) as info:
        condition.evaluate({"v": 1, "o": 1})
    assert info.value.path == "$.missing.deep"


@pytest.mark.parametrize("name", [name for name in OPERATORS if name.endswith("_path")])
def test_missing_operand_path_raises(name: str) -> None:
    condition = Comparison.model_validate({"variable": "$.v", name: "$.absent"})
    base = name.removesuffix("_path")
    with pytest.raises(PathNotFoundError) as info:
        condition.evaluate({"v": _sample_operand(base)})
    assert info.value.path == "$.absent"


def _sample_operand(name: str) -> Any:
    if name.endswith("_path"):
        return "$.o"
    if name.startswith(("string_", "timestamp_")):
        return T1 if name.startswith("timestamp_") else "abc"
    if name.startswith("numeric_"):
        return 1
    return True


# --- string_matches ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("foo*.log", "foo23.log", True),
        ("*.log", "zar.log", True),
        ("foo*.*", "foobar.zebra", True),
        ("foo*.log", "foo.log", True),
        ("foo*.log", "foo.log.gz", False),
        ("*", "", True),
        ("*", "anything at all", True),
        ("", "", True),
        ("", "x", False),
        ("abc", "abc", True),
        ("abc", "abcd", False),
        ("a*b*c", "aXXbYYc", True),
        ("a*b*c", "acb", False),
        ("a*a", "a", False),
        ("a*a", "aa", True),
        ("**", "x", True),
        ("a\\*b", "a*b", True),
        ("a\\*b", "aXb", False),
        ("a\\\\b", "a\\b", True),
        ("a\\\\*", "a\\anything", True),
        ("\\**", "*star", True),
        ("\\**", "star", False),
        ("line*end", "line\nbreak\nend", True),
        ("a.c", "abc", False),
        ("[ab]", "a", False),
        ("[ab]", "[ab]", True),
    ],
)
def test_string_matches(pattern: str, value: str, expected: bool) -> None:
    condition = Comparison(variable="$.v", string_matches=pattern)
    assert condition.evaluate({"v": value}) is expected


@pytest.mark.parametrize("wrong", [1, None, True, ["a"], {"a": 1}])
def test_string_matches_wrong_type(wrong: Any) -> None:
    assert Comparison(variable="$.v", string_matches="*").evaluate({"v": wrong}) is False


@pytest.mark.parametrize("pattern", ["a\\b", "trailing\\", "\\n"])
def test_string_matches_bad_escape(pattern: str) -> None:
    with pytest.raises(ValidationError, match="backslash"):
        Comparison(variable="$.v", string_matches=pattern)


_GLOB_TOKENS = st.sampled_from(["a", "b", "*", "\\*", "\\\\", "."])


@given(st.lists(_GLOB_TOKENS, max_size=8), st.text(alphabet="ab*\\.", max_size=10))
def test_property_string_matches_agrees_with_regex(tokens: list[str], value: str) -> None:
    pattern = "".join(tokens)
    regex = "".join(
        ".*" if token == "*" else re.escape(token[-1] if token.startswith("\\") else token)
        for token in tokens
    )
    expected = re.fullmatch(regex, value, re.DOTALL) is not None
    assert Comparison(variable="$.v", string_matches=pattern).evaluate({"v": value}) is expected


# --- type tests -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "holds"),
    [
        ("is_null", None, True),
        ("is_null", 0, False),
        ("is_null", "", False),
        ("is_null", False, False),
        ("is_numeric", 1, True),
        ("is_numeric", 1.5, True),
        ("is_numeric", -0.0, True),
        ("is_numeric", True, False),
        ("is_numeric", "1", False),
        ("is_numeric", None, False),
        ("is_string", "", True),
        ("is_string", "x", True),
        ("is_string", 1, False),
        ("is_string", None, False),
        ("is_boolean", True, True),
        ("is_boolean", False, True),
        ("is_boolean", 0, False),
        ("is_boolean", "true", False),
        ("is_timestamp", T1, True),
        ("is_timestamp", T1_OFFSET, True),
        ("is_timestamp", T1_NEG, True),
        ("is_timestamp", T2_NANO, True),
        ("is_timestamp", "2016-03-14T01:59:00-00:00", True),
        ("is_timestamp", "2016-03-14t01:59:00Z", False),
        ("is_timestamp", "2016-03-14T01:59:00z", False),
        ("is_timestamp", "2016-03-14T01:59:00", False),
        ("is_timestamp", "2016-03-14 01:59:00Z", False),
        ("is_timestamp", "2016-03-14T01:59Z", False),
        ("is_timestamp", "2016-03-14", False),
        ("is_timestamp", "2016-02-30T01:59:00Z", False),
        ("is_timestamp", "2016-03-14T24:00:00Z", False),
        ("is_timestamp", "2016-03-14T01:59:00+24:00", False),
        ("is_timestamp", "2016-03-14T01:59:00+0200", False),
        ("is_timestamp", "2016-03-14T01:59:00.Z", False),
        ("is_timestamp", "٢٠١٦-03-14T01:59:00Z", False),
        ("is_timestamp", 1457920740, False),
        ("is_timestamp", None, False),
    ],
)
def test_type_tests(name: str, value: Any, holds: bool) -> None:
    assert (
        Comparison.model_validate({"variable": "$.v", name: True}).evaluate({"v": value}) is holds
    )
    negative = Comparison.model_validate({"variable": "$.v", name: False})
    assert negative.evaluate({"v": value}) is (not holds)


def test_is_present() -> None:
    present = Comparison(variable="$.a.b", is_present=True)
    absent = Comparison(variable="$.a.b", is_present=False)
    for doc, exists in [
        ({"a": {"b": None}}, True),
        ({"a": {"b": 0}}, True),
        ({"a": {}}, False),
        ({}, False),
        ({"a": 5}, False),
        ({"a": [1]}, False),
        (None, False),
    ]:
        assert present.evaluate(doc) is exists
        assert absent.evaluate(doc) is (not exists)
    index = Comparison(variable="$.l[1]", is_present=True)
    assert index.evaluate({"l": [1, 2]})
    assert not index.evaluate({"l": [1]})


def test_is_rfc3339_timestamp_helper() -> None:
    assert is_rfc3339_timestamp(T1)
    assert not is_rfc3339_timestamp("yesterday")
    assert not is_rfc3339_timestamp(3)


# --- combinators -----------------------------------------------------------------------------


def test_and_or_not() -> None:
    condition = rule(
        {
            "and": [
                {"variable": "$.n", "numeric_greater_than_equals": 10},
                {
                    "or": [
                        {"variable": "$.s", "string_equals": "x"},
                        {"variable": "$.b", "is_null": True},
                    ]
                },
                {"not": {"variable": "$.flag", "boolean_equals": True}},
            ]
        }
    )
    assert isinstance(condition, AllOf)
    assert condition.evaluate({"n": 10, "s": "x", "b": 1, "flag": False})
    assert condition.evaluate({"n": 11, "s": "y", "b": None, "flag": False})
    assert not condition.evaluate({"n": 9, "s": "x", "b": None, "flag": False})
    assert not condition.evaluate({"n": 10, "s": "y", "b": 1, "flag": False})
    assert not condition.evaluate({"n": 10, "s": "x", "b": 1, "flag": True})
    assert condition.paths() == ["$.n", "$.s", "$.b", "$.flag"]


def test_combinators_stop_at_the_deciding_rule() -> None:
    true = {"variable": "$.a", "is_present": True}
    false = {"variable": "$.a", "is_present": False}
    missing = {"variable": "$.missing", "numeric_equals": 1}
    assert rule({"or": [true, missing]}).evaluate({"a": 1}) is True
    assert rule({"and": [false, missing]}).evaluate({"a": 1}) is False
    with pytest.raises(PathNotFoundError):
        rule({"and": [true, missing]}).evaluate({"a": 1})
    with pytest.raises(PathNotFoundError):
        rule({"not": missing}).evaluate({"a": 1})


def test_python_construction_by_name_and_instances() -> None:
    inner = Comparison(variable="$.x", numeric_less_than=3)
    assert AllOf(all_of=[inner]).evaluate({"x": 1})
    assert AnyOf(any_of=[inner, Not(negated=inner)]).evaluate({"x": 5})
    assert not Not(negated=inner).evaluate({"x": 1})
    assert rule({"all_of": [inner]}) == AllOf(all_of=[inner])
    assert rule({"negated": {"variable": "$.x", "is_null": True}}) == Not(
        negated=Comparison(variable="$.x", is_null=True)
    )
    for built in (inner, AllOf(all_of=[inner]), AnyOf(any_of=[inner]), Not(negated=inner)):
        assert ADAPTER.validate_python(built) is built


# --- validation errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"variable": "$.x"}, "exactly one operator, none given; use one of: string_equals"),
        ({"variable": "$.x", "is_null": None}, "none given"),
        (
            {"variable": "$.x", "is_null": True, "numeric_equals": 1},
            "exactly one operator, got 2 (numeric_equals, is_null)",
        ),
        ({"variable": "$.x", "numeric_greater": 1}, "did you mean 'numeric_greater_than'"),
        ({"Variable": "$.x", "IsNull": True}, "unknown key(s)"),
        ({"numeric_equals": 1}, "variable"),
        ({"variable": "$.x[*]", "is_null": True}, "wildcard"),
        ({"variable": "$$.Map.Item", "is_null": True}, "context object"),
        ({"variable": "x", "is_null": True}, "must start with '$'"),
        ({"variable": "$..x", "is_null": True}, "recursive descent"),
        ({"variable": 3, "is_null": True}, "string"),
        ({"variable": "$.x", "numeric_equals": True}, "numeric_equals"),
        ({"variable": "$.x", "numeric_equals": "5"}, "numeric_equals"),
        ({"variable": "$.x", "numeric_equals": float("inf")}, "numeric_equals"),
        ({"variable": "$.x", "string_equals": 5}, "string_equals"),
        ({"variable": "$.x", "boolean_equals": 1}, "boolean_equals"),
        ({"variable": "$.x", "is_null": "yes"}, "is_null"),
        ({"variable": "$.x", "timestamp_equals": "2016-03-14"}, "not an RFC 3339 timestamp"),
        ({"variable": "$.x", "timestamp_less_than": 5}, "timestamp_less_than"),
        ({"variable": "$.x", "numeric_equals_path": "$.a[*]"}, "wildcard"),
        ({"variable": "$.x", "string_equals_path": "nope"}, "must start with '$'"),
        ({"variable": "$.x", "string_equals_path": "$$.Map"}, "context object"),
        ({"and": []}, "at least 1 item"),
        ({"or": []}, "at least 1 item"),
        ({"and": [{"variable": "$.x", "is_null": True}], "extra": 1}, "Extra inputs"),
        ({"not": [{"variable": "$.x", "is_null": True}]}, "not"),
        ({"and": [{"variable": "$.x"}]}, "none given"),
    ],
)
def test_validation_errors(data: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError) as info:
        rule(data)
    assert words in str(info.value)


@pytest.mark.parametrize("data", ["$.x", 3, None, ["and"]])
def test_non_object_condition(data: Any) -> None:
    with pytest.raises(ValidationError, match="a condition must be an object"):
        rule(data)


def test_models_are_frozen() -> None:
    condition = Comparison(variable="$.x", is_null=True)
    with pytest.raises(ValidationError, match="frozen"):
        condition.variable = "$.y"  # type: ignore[misc]
    assert hash(condition) == hash(Comparison(variable="$.x", is_null=True))


def test_pickle_and_copy() -> None:
    condition = rule(
        {
            "or": [
                {"variable": "$.v", "numeric_less_than_path": "$.o"},
                {"not": {"variable": "$.s", "string_matches": "a*"}},
            ]
        }
    )
    for clone in (
        pickle.loads(pickle.dumps(condition)),
        copy.deepcopy(condition),
        copy.copy(condition),
    ):
        assert clone == condition
        assert clone.evaluate({"v": 1, "o": 2, "s": "b"})
        assert not clone.evaluate({"v": 3, "o": 2, "s": "abc"})


def test_model_copy_with_update_recompiles() -> None:
    condition = Comparison(variable="$.v", numeric_equals=1)
    changed = condition.model_copy(update={"numeric_equals": 2})
    assert changed.evaluate({"v": 2})
    assert not condition.evaluate({"v": 2})
    assert condition.model_copy() == condition


def test_evaluate_does_not_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    condition = Comparison(variable="$.v", numeric_equals_path="$.o")

    def explode(text: str) -> Any:
        raise AssertionError(f"parsed {text} during evaluation")

    monkeypatch.setattr(conditions_module, "parse_path", explode)
    assert condition.evaluate({"v": 1, "o": 1.0})


# --- ASL form, serialisation and schema --------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "asl"),
    [
        (
            {"variable": "$.s", "string_equals": "x"},
            {"Variable": "$.s", "StringEquals": "x"},
        ),
        (
            {"variable": "$.s", "string_greater_than_equals_path": "$.t"},
            {"Variable": "$.s", "StringGreaterThanEqualsPath": "$.t"},
        ),
        (
            {"variable": "$.s", "string_matches": "a*\\*"},
            {"Variable": "$.s", "StringMatches": "a*\\*"},
        ),
        (
            {"variable": "$.n", "numeric_greater_than": 5},
            {"Variable": "$.n", "NumericGreaterThan": 5},
        ),
        (
            {"variable": "$.n", "numeric_less_than_equals": 2.5},
            {"Variable": "$.n", "NumericLessThanEquals": 2.5},
        ),
        (
            {"variable": "$.n", "numeric_greater_than_equals_path": "$.m"},
            {"Variable": "$.n", "NumericGreaterThanEqualsPath": "$.m"},
        ),
        (
            {"variable": "$.b", "boolean_equals": False},
            {"Variable": "$.b", "BooleanEquals": False},
        ),
        (
            {"variable": "$.b", "boolean_equals_path": "$['c d']"},
            {"Variable": "$.b", "BooleanEqualsPath": "$['c d']"},
        ),
        (
            {"variable": "$.t", "timestamp_less_than": T1},
            {"Variable": "$.t", "TimestampLessThan": T1},
        ),
        (
            {"variable": "$.t", "timestamp_equals_path": "$.u"},
            {"Variable": "$.t", "TimestampEqualsPath": "$.u"},
        ),
        ({"variable": "$.x", "is_present": True}, {"Variable": "$.x", "IsPresent": True}),
        ({"variable": "$.x", "is_null": False}, {"Variable": "$.x", "IsNull": False}),
        ({"variable": "$.x", "is_timestamp": True}, {"Variable": "$.x", "IsTimestamp": True}),
        (
            {
                "and": [
                    {"variable": "$.x", "is_numeric": True},
                    {"variable": "$.y", "is_string": True},
                ]
            },
            {
                "And": [
                    {"Variable": "$.x", "IsNumeric": True},
                    {"Variable": "$.y", "IsString": True},
                ]
            },
        ),
        (
            {"or": [{"not": {"variable": "$.x", "is_boolean": True}}]},
            {"Or": [{"Not": {"Variable": "$.x", "IsBoolean": True}}]},
        ),
    ],
)
def test_to_asl_and_back(data: dict[str, Any], asl: dict[str, Any]) -> None:
    condition = rule(data)
    assert condition.to_asl() == asl
    assert condition_from_asl(asl) == condition
    assert ADAPTER.dump_python(condition) == data
    assert rule(json.loads(ADAPTER.dump_json(condition))) == condition


@pytest.mark.parametrize("name", OPERATORS)
def test_every_operator_has_an_asl_name(name: str) -> None:
    operand = _sample_operand(name)
    asl = Comparison.model_validate({"variable": "$.v", name: operand}).to_asl()
    expected = "".join(part.capitalize() for part in name.split("_"))
    assert asl == {"Variable": "$.v", expected: operand}
    assert condition_from_asl({**asl, "Next": "Somewhere"}).to_asl() == asl


def test_operator_list_is_complete() -> None:
    assert len(OPERATORS) == 39
    assert len(set(OPERATORS)) == 39
    assert set(OPERATORS) == set(Comparison.model_fields) - {"variable"}


def test_condition_from_asl_errors() -> None:
    with pytest.raises(ValueError, match="unknown field 'Nope'"):
        condition_from_asl({"Variable": "$.x", "Nope": 1})
    with pytest.raises(ValueError, match="needs a list"):
        condition_from_asl({"And": {"Variable": "$.x", "IsNull": True}})
    with pytest.raises(ValueError, match="not an object"):
        condition_from_asl({"Not": "x"})
    with pytest.raises(ValidationError):
        condition_from_asl({"Variable": "$.x"})


def test_repr_is_short() -> None:
    assert (
        repr(Comparison(variable="$.x", is_null=True)) == "Comparison(variable='$.x', is_null=True)"
    )


def test_json_schema() -> None:
    schema = ADAPTER.json_schema()
    text = json.dumps(schema)
    assert set(schema["$defs"]) == {"Comparison", "AllOf", "AnyOf", "Not"}
    assert schema["$defs"]["AllOf"]["properties"]["and"]["minItems"] == 1
    assert "or" in schema["$defs"]["AnyOf"]["properties"]
    assert "not" in schema["$defs"]["Not"]["properties"]
    comparison = schema["$defs"]["Comparison"]
    assert comparison["required"] == ["variable"]
    assert comparison["additionalProperties"] is False
    assert set(comparison["properties"]) == {"variable", *OPERATORS}
    assert "numeric_greater_than" in text

    class Rule(BaseModel):
        when: Condition
        next: str

    parent = Rule.model_json_schema(by_alias=True)
    assert "when" in parent["properties"]
    assert {"Comparison", "AllOf", "AnyOf", "Not"} <= set(parent["$defs"])
    assert Rule.model_json_schema(mode="serialization")
    loaded = Rule.model_validate(
        {"when": {"not": {"variable": "$.x", "is_null": True}}, "next": "A"}
    )
    assert isinstance(loaded.when, Not)
    assert loaded.model_dump() == {
        "when": {"not": {"variable": "$.x", "is_null": True}},
        "next": "A",
    }
