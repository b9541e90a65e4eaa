"""Payload templates (ASL Parameters / ResultSelector / ItemSelector)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from rustyflower.core.errors import ExpressionError, PathNotFoundError
from rustyflower.core.expressions import Template, compile_template

DOC: dict[str, Any] = {
    "order": {"id": "o-1", "items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 1}]},
    "customer": {"name": "Ada"},
}
CONTEXT: dict[str, Any] = {"Map": {"Item": {"Index": 3, "Value": {"sku": "z"}}}}


def test_flat_template() -> None:
    template = compile_template({"id.$": "$.order.id", "kind": "order", "n": 1})
    assert template.render(DOC) == {"id": "o-1", "kind": "order", "n": 1}
    assert template.paths == ("$.order.id",)
    assert not template.is_static


def test_nested_objects_and_arrays() -> None:
    source: dict[str, Any] = {
        "outer": {"who.$": "$.customer.name", "fixed": {"deep": [1, 2]}},
        "list": [
            {"sku.$": "$.order.items[0].sku"},
            "literal",
            [{"q.$": "$.order.items[1].qty"}],
        ],
        "all.$": "$.order.items[*].sku",
        "index.$": "$$.Map.Item.Index",
        "whole.$": "$",
    }
    template = compile_template(source)
    out = template.render(DOC, CONTEXT)
    assert out == {
        "outer": {"who": "Ada", "fixed": {"deep": [1, 2]}},
        "list": [{"sku": "a"}, "literal", [{"q": 1}]],
        "all": ["a", "b"],
        "index": 3,
        "whole": DOC,
    }
    # literal parts are shared, selected parts are the document's own nodes
    assert out["outer"]["fixed"] is source["outer"]["fixed"]
    assert out["whole"] is DOC
    assert template.paths == (
        "$.customer.name",
        "$.order.items[0].sku",
        "$.order.items[1].qty",
        "$.order.items[*].sku",
        "$$.Map.Item.Index",
        "$",
    )


def test_render_does_not_change_inputs_and_builds_fresh_containers() -> None:
    source = {"a.$": "$.order", "b": [{"c.$": "$.customer"}]}
    source_copy = copy.deepcopy(source)
    doc_copy = copy.deepcopy(DOC)
    template = compile_template(source)
    first = template.render(DOC)
    second = template.render(DOC)
    assert first == second
    assert first is not second
    assert first["b"] is not second["b"]
    assert source == source_copy
    assert doc_copy == DOC
    assert template.source is source


def test_static_template_renders_its_source() -> None:
    source = {"a": [1, {"b": "c"}], "d.e": None}
    template = compile_template(source)
    assert template.is_static
    assert template.render(DOC) is source
    assert template.paths == ()


@pytest.mark.parametrize("value", ["text", 3, 2.5, True, None, [1, "x"], []])
def test_non_object_templates(value: Any) -> None:
    assert compile_template(value).render(DOC) == value


def test_top_level_array_with_paths() -> None:
    assert compile_template([{"x.$": "$.customer.name"}, 1]).render(DOC) == [{"x": "Ada"}, 1]


def test_key_with_dollar_in_the_middle_is_literal() -> None:
    template = compile_template({"a.$b": "$.x", "$": "$.y"})
    assert template.render({}) == {"a.$b": "$.x", "$": "$.y"}


def test_missing_path_raises() -> None:
    template = compile_template({"a": {"x.$": "$.nope"}})
    with pytest.raises(PathNotFoundError, match="nope"):
        template.render(DOC)
    with pytest.raises(PathNotFoundError, match="no context object"):
        compile_template({"i.$": "$$.Map.Item.Index"}).render(DOC)


def test_wildcard_without_matches_gives_empty_list() -> None:
    assert compile_template({"x.$": "$.none[*]"}).render(DOC) == {"x": []}


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ({"a.$": 3}, "'a.$' at the top level: a key ending in '.$' needs a path string"),
        ({"a.$": "order.id"}, "'a.$' at the top level: invalid path 'order.id'"),
        ({"a.$": "$..id"}, "recursive descent"),
        ({"o": {"a.$": "$.x", "a": 1}}, "'a.$' at $.o: both 'a.$' and 'a' are given"),
        ({"l": [0, {"b.$": None}]}, "'b.$' at $.l[1]"),
        ({".$": "$.x"}, "the name before '.$' is empty"),
        ({"f.$": "States.Format('{}', $.x)"}, "intrinsic functions are not supported yet"),
        ({"f.$": "States.Array($.x)"}, "intrinsic functions are not supported yet"),
        ({1: "x"}, "is not a string"),
        ({"a": {"b": {1, 2}}}, "at $.a.b is a set, not a JSON value"),
    ],
)
def test_compile_errors(source: Any, words: str) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_template(source)
    assert words in str(info.value)


def test_template_equality_and_repr() -> None:
    first = compile_template({"a.$": "$.x"})
    assert first == compile_template({"a.$": "$.x"})
    assert first != compile_template({"a.$": "$.y"})
    assert hash(first) == hash(compile_template({"a.$": "$.x"}))
    assert "a.$" in repr(first)
    assert isinstance(first, Template)
