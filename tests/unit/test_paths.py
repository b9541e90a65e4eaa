"""Paths: parsing, selection, context paths, wildcards and copy-on-write placing."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rustyflower.core.errors import ExpressionError, PathNotFoundError
from rustyflower.core.expressions import (
    WILDCARD,
    Path,
    format_segments,
    parse_path,
    parse_reference_path,
    place,
)

DOC: dict[str, Any] = {
    "a": {"b": [10, {"c": "deep"}, 30], "x y": 1, "it's": 2, 'q"uote': 3},
    "list": [{"id": 1, "tags": ["p", "q"]}, {"id": 2, "tags": []}, {"other": 3}],
    "n": None,
    "s": "text",
    "": "empty key",
}
CONTEXT: dict[str, Any] = {"Map": {"Item": {"Value": {"k": 1}, "Index": 4}}, "Execution": {}}


# --- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("$", ()),
        ("$.a", ("a",)),
        ("$.a.b", ("a", "b")),
        ("$.a.b[0]", ("a", "b", 0)),
        ("$.a.b[12]", ("a", "b", 12)),
        ("$['a']", ("a",)),
        ('$["a"]', ("a",)),
        ("$['x y']", ("x y",)),
        ("$['a.b']", ("a.b",)),
        ("$['it\\'s']", ("it's",)),
        ('$["q\\"uote"]', ('q"uote',)),
        ("$['back\\\\slash']", ("back\\slash",)),
        ("$['a\"b']", ('a"b',)),
        ("$['']", ("",)),
        ("$[0]", (0,)),
        ("$[0][1]", (0, 1)),
        ("$.a[*]", ("a", WILDCARD)),
        ("$.a.*", ("a", WILDCARD)),
        ("$[*].id", (WILDCARD, "id")),
        ("$.a[*][*]", ("a", WILDCARD, WILDCARD)),
        ("$.é-ü_1$x", ("é-ü_1$x",)),
        ("$.0", ("0",)),
        ("$.a:b", ("a:b",)),
        ("$.a.b)", ("a", "b)")),
    ],
)
def test_parse_valid(text: str, segments: tuple[Any, ...]) -> None:
    path = parse_path(text)
    assert path.segments == segments
    assert path.text == text
    assert str(path) == text
    assert not path.is_context
    assert path.is_definite == (WILDCARD not in segments)


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("$$", ()),
        ("$$.Map.Item.Value", ("Map", "Item", "Value")),
        ("$$['Execution'].Id", ("Execution", "Id")),
        ("$$.Map.Item.Value[*]", ("Map", "Item", "Value", WILDCARD)),
    ],
)
def test_parse_context(text: str, segments: tuple[Any, ...]) -> None:
    path = parse_path(text)
    assert path.is_context
    assert path.segments == segments


def test_parse_is_cached_and_paths_are_immutable() -> None:
    assert parse_path("$.cached.one") is parse_path("$.cached.one")
    path = parse_path("$.a")
    with pytest.raises(AttributeError):
        path.text = "$.b"  # type: ignore[misc]
    assert hash(path) == hash(parse_path("$.a"))
    assert isinstance(path, Path)


@pytest.mark.parametrize(
    ("text", "offset", "words"),
    [
        ("", None, "must start with '$'"),
        ("a.b", 0, "must start with '$'"),
        (" $.a", 0, "must start with '$'"),
        ("$a", 1, "expected '.' or '['"),
        ("$$$", 2, "expected '.' or '['"),
        ("$.", 2, "expected a field name"),
        ("$.a.", 4, "expected a field name"),
        ("$.a..b", 3, "recursive descent"),
        ("$..a", 1, "recursive descent"),
        ("$.a[", 3, "not closed"),
        ("$.a[0", 5, "expected ']'"),
        ("$.a[0)", 5, "expected ']'"),
        ("$.a[-1]", 4, "negative indexes"),
        ("$.a[1:2]", 5, "slices"),
        ("$.a[:2]", 4, "slices"),
        ("$.a[0,1]", 5, "unions"),
        ("$['a','b']", 5, "unions"),
        ("$.a[?(@.x > 1)]", 4, "filter"),
        ("$.a[(@.length-1)]", 4, "script"),
        ("$.a[x]", 4, "expected an index"),
        ("$.a[*", 5, "expected ']'"),
        ("$.a[*x]", 5, "expected ']'"),
        ("$['abc", 2, "not closed"),
        ("$['abc'", 7, "expected ']'"),
        ("$['a\\x']", 4, "invalid escape"),
        ("$.a b", 3, "whitespace"),
        ("$.a\t", 3, "whitespace"),
        ("$.a]", 3, "expected '.' or '['"),
        ("$.a*", 3, "expected '.' or '['"),
        ("$.a.b]", 5, "expected '.' or '['"),
    ],
)
def test_parse_errors(text: str, offset: int | None, words: str) -> None:
    with pytest.raises(ExpressionError) as info:
        parse_path(text)
    message = str(info.value)
    assert repr(text) in message
    assert words in message
    if offset is not None:
        assert f"offset {offset}" in message


def test_parse_rejects_non_string() -> None:
    with pytest.raises(ExpressionError, match="must be a string"):
        parse_path(3)


def test_expression_error_is_value_error() -> None:
    with pytest.raises(ValueError, match="recursive descent"):
        parse_path("$..x")


def test_reference_path() -> None:
    assert parse_reference_path("$.a[0].b").segments == ("a", 0, "b")
    assert parse_reference_path("$").segments == ()
    with pytest.raises(ExpressionError, match="wildcard"):
        parse_reference_path("$.a[*]")
    with pytest.raises(ExpressionError, match="context object"):
        parse_reference_path("$$.Map")
    with pytest.raises(ExpressionError, match="recursive descent"):
        parse_reference_path("$..a")


# --- selection ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$", DOC),
        ("$.a.b[0]", 10),
        ("$.a.b[1].c", "deep"),
        ("$['a']['b'][2]", 30),
        ("$.a['x y']", 1),
        ("$.a['it\\'s']", 2),
        ('$.a["q\\"uote"]', 3),
        ("$.n", None),
        ("$['']", "empty key"),
        ("$.list[1].tags", []),
    ],
)
def test_select_definite(text: str, expected: Any) -> None:
    assert parse_path(text).select(DOC) == expected
    assert parse_path(text).exists(DOC)


def test_select_returns_the_node_itself() -> None:
    assert parse_path("$.a").select(DOC) is DOC["a"]
    assert parse_path("$").select(DOC) is DOC


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("$.missing", "the object at $ has no field 'missing'"),
        ("$.a.b[3]", "index 3 is out of range: the list at $.a.b has 3 item(s)"),
        ("$.a.b.c", "cannot select field 'c': the value at $.a.b is a list"),
        ("$.a[0]", "cannot select index 0: the value at $.a is an object"),
        ("$.s.x", "the value at $.s is a string"),
        ("$.n.x", "the value at $.n is null"),
        ("$.a.b[0].x", "the value at $.a.b[0] is a number"),
        ("$.a['x y'].z", "the value at $.a['x y'] is a number"),
    ],
)
def test_select_missing(text: str, detail: str) -> None:
    path = parse_path(text)
    with pytest.raises(PathNotFoundError) as info:
        path.select(DOC)
    assert info.value.path == text
    assert detail in str(info.value)
    assert not path.exists(DOC)


def test_select_on_scalar_document() -> None:
    assert parse_path("$").select(5) == 5
    with pytest.raises(PathNotFoundError, match="is a number"):
        parse_path("$.a").select(5)
    with pytest.raises(PathNotFoundError, match="is a boolean"):
        parse_path("$[0]").select(True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$.list[*].id", [1, 2]),
        ("$.list[*].tags[*]", ["p", "q"]),
        ("$.list[*].tags[0]", ["p"]),
        ("$.list.*.other", [3]),
        ("$.a.b[*]", [10, {"c": "deep"}, 30]),
        ("$.a.b[*].c", ["deep"]),
        ("$.list[*].missing", []),
        ("$.missing[*]", []),
        ("$.s[*]", []),
        ("$.n.*", []),
        ("$.a.*", [DOC["a"]["b"], 1, 2, 3]),
        ("$[*]", list(DOC.values())),
    ],
)
def test_select_wildcard(text: str, expected: list[Any]) -> None:
    path = parse_path(text)
    assert not path.is_definite
    assert path.select(DOC) == expected


def test_wildcard_exists() -> None:
    assert parse_path("$.list[*].id").exists(DOC)
    assert not parse_path("$.list[*].missing").exists(DOC)


def test_select_accepts_tuples() -> None:
    assert parse_path("$.t[1]").select({"t": (1, 2)}) == 2
    assert parse_path("$.t[*]").select({"t": (1, 2)}) == [1, 2]


def test_context_paths() -> None:
    assert parse_path("$$.Map.Item.Value").select(DOC, CONTEXT) == {"k": 1}
    assert parse_path("$$.Map.Item.Index").select({}, CONTEXT) == 4
    assert parse_path("$$").select(DOC, CONTEXT) is CONTEXT
    assert parse_path("$$.Map.*.Index").select(DOC, CONTEXT) == [4]
    assert parse_path("$$.Map.Item.Value").exists(None, CONTEXT)
    with pytest.raises(PathNotFoundError, match="no context object"):
        parse_path("$$.Map").select(DOC)
    with pytest.raises(PathNotFoundError, match=r"the object at \$\$\.Map\.Item has no field"):
        parse_path("$$.Map.Item.Missing").select(DOC, CONTEXT)
    assert not parse_path("$$.Map").exists(DOC)
    assert not parse_path("$$.Nope").exists(DOC, CONTEXT)
    # a document path ignores the context
    assert parse_path("$.s").select(DOC, CONTEXT) == "text"


# --- placing --------------------------------------------------------------------------------


def _doc() -> dict[str, Any]:
    return {"a": {"b": [1, {"c": 2}], "keep": {"big": [1, 2, 3]}}, "side": {"x": 1}}


def test_place_root_returns_value_itself() -> None:
    value = {"v": 1}
    assert place(_doc(), parse_path("$"), value) is value


def test_place_new_and_existing_fields_copy_on_write() -> None:
    doc = _doc()
    before = copy.deepcopy(doc)
    value = {"result": [1]}
    out = place(doc, parse_path("$.a.new"), value)
    assert doc == before
    assert out["a"]["new"] is value
    assert out is not doc
    assert out["a"] is not doc["a"]
    assert out["side"] is doc["side"]
    assert out["a"]["keep"] is doc["a"]["keep"]
    assert out["a"]["b"] is doc["a"]["b"]
    replaced = place(doc, parse_path("$.side"), 5)
    assert replaced == {**doc, "side": 5}
    assert doc == before


def test_place_creates_missing_objects() -> None:
    doc = _doc()
    out = place(doc, parse_path("$.x.y.z"), 1)
    assert out["x"] == {"y": {"z": 1}}
    assert "x" not in doc


def test_place_into_list() -> None:
    doc = _doc()
    before = copy.deepcopy(doc)
    out = place(doc, parse_path("$.a.b[1].c"), "new")
    assert out["a"]["b"][1] == {"c": "new"}
    assert out["a"]["b"][0] == 1
    assert out["a"]["b"] is not doc["a"]["b"]
    assert out["a"]["keep"] is doc["a"]["keep"]
    assert doc == before
    out = place(doc, parse_path("$.a.b[0]"), "first")
    assert out["a"]["b"] == ["first", {"c": 2}]
    assert out["a"]["b"][1] is doc["a"]["b"][1]


def test_place_does_not_change_value() -> None:
    value = {"inner": [1, 2]}
    out = place(_doc(), parse_path("$.v"), value)
    assert value == {"inner": [1, 2]}
    assert out["v"] is value


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("$.a.b[2]", "index 2 is out of range: the list at $.a.b has 2 item(s)"),
        ("$.a.b.x", "cannot set field 'x': the value at $.a.b is a list"),
        ("$.a.b[0].x", "cannot set field 'x': the value at $.a.b[0] is a number"),
        ("$.a[0]", "cannot set index 0: the value at $.a is an object"),
        ("$.a.missing[0]", "a missing list cannot be created"),
    ],
)
def test_place_errors(text: str, detail: str) -> None:
    doc = _doc()
    before = copy.deepcopy(doc)
    with pytest.raises(PathNotFoundError) as info:
        place(doc, parse_path(text), 1)
    assert detail in str(info.value)
    assert info.value.path == text
    assert doc == before


def test_place_into_scalar_document() -> None:
    with pytest.raises(PathNotFoundError, match=r"the value at \$ is a string"):
        place("text", parse_path("$.a"), 1)
    with pytest.raises(PathNotFoundError, match=r"the value at \$\.n is null"):
        place({"n": None}, parse_path("$.n.x"), 1)


def test_place_refuses_non_reference_paths() -> None:
    with pytest.raises(ExpressionError, match="definite"):
        place({}, parse_path("$.a[*]"), 1)
    with pytest.raises(ExpressionError, match="context"):
        place({}, parse_path("$$.a"), 1)


def test_format_segments() -> None:
    assert format_segments(()) == "$"
    assert format_segments(("a", 0, WILDCARD, "b c", "it's"), context=True) == (
        "$$.a[0][*]['b c']['it\\'s']"
    )


# --- properties ------------------------------------------------------------------------------

_KEYS = st.text(min_size=0, max_size=6)
_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
_JSON = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_KEYS, children, max_size=4),
    max_leaves=20,
)
_SEGMENTS = st.lists(_KEYS | st.integers(min_value=0, max_value=4), max_size=5)


@st.composite
def _doc_and_reachable_path(draw: st.DrawFn) -> tuple[Any, tuple[str | int, ...]]:
    """A document and a path to one of its nodes, maybe extended by new object fields."""
    doc: Any = draw(_JSON)
    node: Any = doc
    segments: list[str | int] = []
    while True:
        if isinstance(node, dict) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node)))
            segments.append(key)
            node = node[key]
        elif isinstance(node, list) and node and draw(st.booleans()):
            index = draw(st.integers(min_value=0, max_value=len(node) - 1))
            segments.append(index)
            node = node[index]
        else:
            break
    if isinstance(node, dict):
        existing = set(node)
        fresh = draw(st.lists(_KEYS, max_size=3).filter(lambda k: not k or k[0] not in existing))
        segments.extend(fresh)
    return doc, tuple(segments)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(_doc_and_reachable_path(), _JSON)
def test_property_place_then_select(case: tuple[Any, tuple[str | int, ...]], value: Any) -> None:
    doc, segments = case
    text = format_segments(segments)
    path = parse_path(text)
    assert path.segments == segments
    before = copy.deepcopy(doc)
    value_before = copy.deepcopy(value)
    out = place(doc, path, value)
    assert path.select(out) is value
    assert doc == before
    assert value == value_before


@settings(max_examples=200)
@given(_JSON, _SEGMENTS, _JSON)
def test_property_place_any_path(doc: Any, segments: list[str | int], value: Any) -> None:
    path = parse_path(format_segments(tuple(segments)))
    before = copy.deepcopy(doc)
    try:
        out = place(doc, path, value)
    except PathNotFoundError:
        pass
    else:
        assert path.select(out) is value
    assert doc == before


@given(st.lists(_KEYS | st.integers(min_value=0) | st.just(WILDCARD), max_size=6), st.booleans())
def test_property_format_then_parse(segments: list[Any], context: bool) -> None:
    path = parse_path(format_segments(tuple(segments), context=context))
    assert path.segments == tuple(segments)
    assert path.is_context == context
    assert path.is_definite == (WILDCARD not in segments)


@given(st.text(max_size=12))
def test_property_parse_never_crashes(text: str) -> None:
    try:
        path = parse_path("$" + text)
    except ExpressionError as error:
        assert "offset" in str(error)
    else:
        assert path.text == "$" + text
