"""Flow definitions as YAML or JSON text (reading files is the caller's job: core does no I/O)."""

from __future__ import annotations

import json
from typing import Any, Literal

import yaml

from rustyflower.core.errors import DefinitionError, Problem
from rustyflower.core.model.definition import FlowDefinition, parse_definition

Format = Literal["yaml", "json"]


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that records duplicate keys instead of silently keeping the last one."""

    duplicates: list[Problem]


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, str | int | float | bool) and key in seen:
            loader.duplicates.append(
                Problem(
                    f"line {key_node.start_mark.line + 1}",
                    f"duplicate key {key!r} (a second state or field with the same name)",
                )
            )
        seen.add(key) if isinstance(key, str | int | float | bool) else None
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def detect_format(source: str | None, text: str) -> Format:
    if source and source.lower().endswith(".json"):
        return "json"
    if source and source.lower().endswith((".yaml", ".yml")):
        return "yaml"
    return "json" if text.lstrip().startswith("{") else "yaml"


def load_definition(
    text: str, source: str | None = None, fmt: Format | None = None
) -> FlowDefinition:
    """Parse YAML or JSON text into a validated definition, reporting every problem at once."""
    fmt = fmt or detect_format(source, text)
    raw, problems = _parse_text(text, fmt)
    if raw is None:
        raise DefinitionError(problems, source)
    try:
        definition = parse_definition(raw, source)
    except DefinitionError as error:
        raise DefinitionError(problems + error.problems, source) from None
    if problems:
        raise DefinitionError(problems, source)
    return definition


def _parse_text(text: str, fmt: Format) -> tuple[Any, list[Problem]]:
    if fmt == "json":
        duplicates: list[Problem] = []

        def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
            keys = [key for key, _ in items]
            for key in sorted({k for k in keys if keys.count(k) > 1}):
                duplicates.append(Problem("json", f"duplicate key {key!r}"))
            return dict(items)

        try:
            return json.loads(text, object_pairs_hook=pairs), duplicates
        except json.JSONDecodeError as error:
            where = f"line {error.lineno} column {error.colno}"
            return None, [Problem(where, f"not valid JSON: {error.msg}")]
    loader = _StrictLoader(text)
    loader.duplicates = []
    try:
        raw = loader.get_single_data()
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark else "yaml"
        reason = getattr(error, "problem", None) or str(error)
        return None, [Problem(where, f"not valid YAML: {reason}")]
    finally:
        loader.dispose()
    if raw is None:
        return None, [Problem("flow", "the document is empty")]
    return raw, loader.duplicates


def dump_definition(definition: FlowDefinition, fmt: Format = "yaml") -> str:
    """Text that ``load_definition`` turns back into an equal definition."""
    document = definition.document()
    if fmt == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


def definition_schema() -> dict[str, Any]:
    """The JSON Schema of the definition format (for editors and CI checks)."""
    schema = FlowDefinition.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "RustyFlower flow definition"
    return schema
