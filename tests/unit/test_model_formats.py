"""Definitions as YAML and JSON text, round trips, and the exported JSON Schema."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
import yaml

from rustyflower.core.errors import DefinitionError
from rustyflower.core.model import FlowDefinition, parse_definition
from rustyflower.core.model.formats import (
    definition_schema,
    detect_format,
    dump_definition,
    load_definition,
)

try:
    import jsonschema  # type: ignore[import-untyped]
except ImportError:  # not a dependency: a small validator below stands in for it
    jsonschema = None

RICH: dict[str, Any] = {
    "name": "orders",
    "version": "3",
    "description": "every kind of state, policy and schedule",
    "timeout_seconds": 3600,
    "default_retry": [
        {
            "errors": ["Net"],
            "interval_seconds": 2,
            "max_attempts": 4,
            "backoff_rate": 1.5,
            "max_delay_seconds": 30,
            "jitter": "full",
        }
    ],
    "on_error": [{"errors": ["States.ALL"], "next": "Failed", "result_path": "$.error"}],
    "schedules": [
        {
            "name": "nightly",
            "cron": "0 2 * * *",
            "timezone": "Europe/Paris",
            "input": {"a": 1},
            "overlap": "buffer_one",
            "catch_up": "all",
            "enabled": False,
        }
    ],
    "start_at": "Prepare",
    "states": {
        "Prepare": {
            "type": "pass",
            "comment": "ünïcode ✓",
            "result": {"x": [1, 2.5, "s", None, True]},
            "result_path": "$.prep",
            "next": "Charge",
        },
        "Charge": {
            "type": "task",
            "activity": "charge",
            "input_path": "$.order",
            "parameters": {"amount.$": "$.total", "fixed": 1, "nested": {"id.$": "$$.Execution"}},
            "result_selector": {"id.$": "$.id"},
            "result_path": "$.payment",
            "output_path": "$",
            "timeout_seconds": 30,
            "retry": [{"errors": ["Boom", "Bang"], "max_attempts": 2}, {"errors": ["States.ALL"]}],
            "catch": [
                {"errors": ["Declined"], "next": "Failed", "result_path": None},
                {"next": "Failed"},
            ],
            "next": "Route",
        },
        "Route": {
            "type": "choice",
            "choices": [
                {
                    "when": {
                        "and": [
                            {"variable": "$.total", "numeric_greater_than": 100},
                            {"not": {"variable": "$.vip", "boolean_equals": True}},
                        ]
                    },
                    "next": "Approve",
                },
                {
                    "when": {
                        "or": [
                            {"variable": "$.when", "timestamp_less_than": "2020-01-01T00:00:00Z"},
                            {"variable": "$.name", "string_matches": "a*"},
                            {"variable": "$.x", "numeric_less_than_path": "$.y"},
                        ]
                    },
                    "next": "Pause",
                },
            ],
            "default": "Ship",
        },
        "Approve": {
            "type": "wait_for_event",
            "event": "approved",
            "timeout_seconds": 60,
            "on_timeout": "Failed",
            "result_selector": {"ok.$": "$.ok"},
            "result_path": "$.approval",
            "catch": [{"next": "Failed"}],
            "next": "Pause",
        },
        "Pause": {"type": "wait", "seconds_path": "$.delay", "next": "Ship"},
        "Ship": {
            "type": "parallel",
            "branches": [
                {
                    "start_at": "Label",
                    "states": {"Label": {"type": "task", "activity": "label", "end": True}},
                },
                {
                    "start_at": "Notify",
                    "states": {
                        "Notify": {"type": "wait", "timestamp": "2030-01-01T00:00:00Z", "end": True}
                    },
                },
            ],
            "result_path": "$.shipping",
            "retry": [{"max_attempts": 1}],
            "next": "Lines",
        },
        "Lines": {
            "type": "map",
            "items_path": "$.lines",
            "item_selector": {"line.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index"},
            "max_concurrency": 2,
            "iterator": {
                "start_at": "Pick",
                "states": {
                    "Pick": {"type": "task", "activity": "pick", "next": "Done"},
                    "Done": {"type": "succeed"},
                },
            },
            "result_path": "$.picked",
            "next": "Child",
        },
        "Child": {
            "type": "sub_flow",
            "flow": "invoice",
            "version": "2",
            "timeout_seconds": 100,
            "next": "Wait until",
        },
        "Wait until": {"type": "wait", "timestamp_path": "$.until", "next": "Finish"},
        "Finish": {"type": "succeed", "output_path": "$.payment"},
        "Failed": {"type": "fail", "error_path": "$.error.Error", "cause_path": "$.error.Cause"},
    },
}


@pytest.fixture(scope="module")
def rich() -> FlowDefinition:
    return parse_definition(copy.deepcopy(RICH))


def test_rich_definition_is_valid(rich: FlowDefinition) -> None:
    assert rich.key == "orders@3"
    assert len(rich.states) == len(RICH["states"])


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_round_trip_through_text_is_identity(rich: FlowDefinition, fmt: str) -> None:
    text = dump_definition(rich, fmt)  # type: ignore[arg-type]
    again = load_definition(text, fmt=fmt)  # type: ignore[arg-type]
    assert again == rich
    assert again.document() == rich.document()
    assert dump_definition(again, fmt) == text  # type: ignore[arg-type]


@pytest.mark.parametrize(("fmt", "source"), [("yaml", "f.yml"), ("json", "f.json")])
def test_format_detected_from_source_or_text(rich: FlowDefinition, fmt: str, source: str) -> None:
    text = dump_definition(rich, fmt)  # type: ignore[arg-type]
    assert detect_format(source, text) == fmt
    assert detect_format(None, text) == fmt
    assert load_definition(text, source) == rich


def test_dumped_text_is_plain_yaml_and_json(rich: FlowDefinition) -> None:
    assert yaml.safe_load(dump_definition(rich, "yaml")) == rich.document()
    assert json.loads(dump_definition(rich, "json")) == rich.document()
    assert "ünïcode ✓" in dump_definition(rich, "json")


def test_document_leaves_defaults_out(rich: FlowDefinition) -> None:
    document = rich.document()
    assert "end" not in document["states"]["Charge"]
    assert document["states"]["Charge"]["retry"][1] == {}  # States.ALL is the default
    assert document["states"]["Charge"]["catch"][0]["result_path"] is None
    assert parse_definition(document) == rich


def test_model_equals_its_document_parsed_again(rich: FlowDefinition) -> None:
    assert parse_definition(rich) is rich
    assert parse_definition(rich.document()) == rich
    assert parse_definition(json.loads(json.dumps(rich.document()))) == rich


def test_yaml_numbers_as_versions() -> None:
    text = "name: f\nversion: 2\nstart_at: A\nstates: {A: {type: succeed}}\n"
    definition = load_definition(text)
    assert definition.version == "2"
    assert load_definition(dump_definition(definition)) == definition


def test_definitions_are_frozen(rich: FlowDefinition) -> None:
    with pytest.raises(Exception, match="frozen"):
        rich.name = "other"  # type: ignore[misc]


def test_load_reports_problems_of_the_text_source() -> None:
    with pytest.raises(DefinitionError) as caught:
        load_definition("name: f\nstart_at: B\nstates: {A: {type: succeed}}\n", "x.yaml")
    assert caught.value.source == "x.yaml"
    assert [str(p) for p in caught.value.problems] == [
        "flow: start_at 'B' is not a state of this flow",
    ]


# --- JSON Schema ---------------------------------------------------------------------------


class _Invalid(Exception):
    pass


def _resolve(root: dict[str, Any], ref: str) -> dict[str, Any]:
    assert ref.startswith("#/"), ref
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _check(root: dict[str, Any], schema: dict[str, Any], value: Any, where: str) -> None:
    """A small validator for the keywords the exported schema uses."""
    if "$ref" in schema:
        _check(root, _resolve(root, schema["$ref"]), value, where)
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[kind](value) for kind in kinds):
            raise _Invalid(f"{where}: not {kinds}")
    if "const" in schema and value != schema["const"]:
        raise _Invalid(f"{where}: not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        raise _Invalid(f"{where}: not one of {schema['enum']}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise _Invalid(f"{where}: does not match {schema['pattern']}")
        if len(value) < schema.get("minLength", 0):
            raise _Invalid(f"{where}: too short")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise _Invalid(f"{where}: too long")
    if _TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            raise _Invalid(f"{where}: below minimum")
        if "maximum" in schema and value > schema["maximum"]:
            raise _Invalid(f"{where}: above maximum")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            raise _Invalid(f"{where}: too few items")
        if "items" in schema:
            for index, item in enumerate(value):
                _check(root, schema["items"], item, f"{where}[{index}]")
    if isinstance(value, dict):
        if len(value) < schema.get("minProperties", 0):
            raise _Invalid(f"{where}: too few properties")
        for name in schema.get("required", []):
            if name not in value:
                raise _Invalid(f"{where}: {name} is required")
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in properties:
                _check(root, properties[name], item, f"{where}.{name}")
            elif extra is False:
                raise _Invalid(f"{where}: {name} is not allowed")
            elif isinstance(extra, dict):
                _check(root, extra, item, f"{where}.{name}")
    for keyword in ("anyOf", "oneOf"):
        if keyword in schema:
            passed = 0
            for option in schema[keyword]:
                try:
                    _check(root, option, value, where)
                    passed += 1
                except _Invalid:
                    pass
            if passed == 0 or (keyword == "oneOf" and passed > 1):
                raise _Invalid(f"{where}: {passed} {keyword} options match")
    if "allOf" in schema:
        for option in schema["allOf"]:
            _check(root, option, value, where)


def schema_accepts(schema: dict[str, Any], document: Any) -> bool:
    if jsonschema is None:
        try:
            _check(schema, schema, document, "$")
        except _Invalid:
            return False
        return True
    validator = jsonschema.Draft202012Validator(schema)
    return validator.is_valid(document)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        for value in node.values():
            found += _refs(value)
        return found
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []


def test_schema_is_a_json_schema_document() -> None:
    schema = definition_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "RustyFlower flow definition"
    assert schema["type"] == "object"
    assert set(schema["required"]) >= {"name", "start_at", "states"}
    assert schema["additionalProperties"] is False
    json.dumps(schema)  # plain JSON
    for ref in _refs(schema):
        assert isinstance(_resolve(schema, ref), dict), ref
    if jsonschema is not None:
        jsonschema.Draft202012Validator.check_schema(schema)


def test_schema_names_every_state_kind() -> None:
    schema = definition_schema()
    mapping = schema["properties"]["states"]["additionalProperties"]["discriminator"]["mapping"]
    assert set(mapping) == {
        "task",
        "pass",
        "choice",
        "wait",
        "wait_for_event",
        "parallel",
        "map",
        "sub_flow",
        "succeed",
        "fail",
    }


def test_schema_accepts_a_valid_definition(rich: FlowDefinition) -> None:
    schema = definition_schema()
    assert schema_accepts(schema, rich.document())
    assert schema_accepts(schema, copy.deepcopy(RICH))
    minimal = {"name": "f", "start_at": "A", "states": {"A": {"type": "succeed"}}}
    assert schema_accepts(schema, minimal)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("states"),
        lambda d: d.update(unknown=1),
        lambda d: d["states"]["Charge"].update(type="teleport"),
        lambda d: d["states"]["Charge"].update(activity=7),
        lambda d: d["states"]["Charge"]["retry"][0].update(backoff_rate=0.5),
        lambda d: d.update(states={}),
    ],
    ids=["no-states", "unknown-field", "unknown-type", "bad-activity", "bad-retry", "empty"],
)
def test_schema_rejects_what_validation_rejects(mutate: Any) -> None:
    document = copy.deepcopy(RICH)
    mutate(document)
    with pytest.raises(DefinitionError):
        parse_definition(document)
    assert not schema_accepts(definition_schema(), document)
