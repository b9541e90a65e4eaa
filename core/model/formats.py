"""Flow definitions as YAML or JSON text (reading files is the caller's job: core does no I/O).

Limits, checked before anything is built from the text, so that no document can make a
reader spend minutes or gigabytes (README.md, "Limits"):

* ``MAX_DEFINITION_BYTES``: the text is at most 1 MiB of UTF-8, the size AWS Step
  Functions allows a state machine definition (Developer Guide, "Step Functions service
  quotas": maximum definition size, 1 MB);
* ``MAX_DEPTH``: mappings and lists nest at most 64 levels (the default maximum depth of
  .NET's JSON readers, which the Azure Functions host is built on);
* ``MAX_ALIAS_NODES``: YAML aliases (``*name``) may add at most 100,000 nodes in all
  when each is counted as the copy of what it refers to, and may not refer to a node that
  contains them. A "billion laughs" file of a few hundred bytes expands to 10**9 nodes.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Literal

import yaml
from yaml.composer import ComposerError
from yaml.nodes import MappingNode, Node, SequenceNode

from rustyflower.core.errors import DefinitionError, Problem
from rustyflower.core.model.definition import FlowDefinition, parse_definition

Format = Literal["yaml", "json"]

MAX_DEFINITION_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_ALIAS_NODES = 100_000


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that records duplicate keys instead of silently keeping the last one,
    and refuses documents nested deeper than ``MAX_DEPTH`` while it composes them."""

    duplicates: list[Problem]
    depth: int = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.ScalarEvent, yaml.AliasEvent):
            return super().compose_node(parent, index)  # a leaf: no deeper than its parent
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


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
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_DEFINITION_BYTES:
        raise DefinitionError(
            [Problem("flow", f"the document is {size} bytes; at most {MAX_DEFINITION_BYTES}")],
            source,
        )
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
            counts = Counter(key for key, _ in items)
            for key in sorted(key for key, count in counts.items() if count > 1):
                duplicates.append(Problem("json", f"duplicate key {key!r}"))
            return dict(items)

        try:
            raw = json.loads(text, object_pairs_hook=pairs)
        except json.JSONDecodeError as error:
            where = f"line {error.lineno} column {error.colno}"
            return None, [Problem(where, f"not valid JSON: {error.msg}")]
        except RecursionError:  # far deeper than MAX_DEPTH: the parser gave up first
            return None, [Problem("json", f"nested deeper than {MAX_DEPTH} levels")]
        if nesting_depth(raw) > MAX_DEPTH:
            return None, [Problem("json", f"nested deeper than {MAX_DEPTH} levels")]
        return raw, duplicates
    loader = _StrictLoader(text)
    loader.duplicates = []
    try:
        node = loader.get_single_node()
        alias_problem = _alias_problem(node) if node is not None else None
        if alias_problem is not None:
            return None, [Problem("yaml", alias_problem)]
        raw = loader.construct_document(node) if node is not None else None
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


def nesting_depth(value: Any) -> int:
    """How deep mappings and lists nest in ``value`` (a scalar is 0, ``[]`` is 1).

    Iterative, so that any depth can be measured without the recursion limit.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def _alias_problem(root: Node) -> str | None:
    """Too many nodes added by aliases, or an alias inside what it refers to; None if fine.

    Counts, once per distinct node, the size the document would have with every alias
    replaced by a copy of its target (linear in the distinct nodes, whatever the size).
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            continue
        if key in sizes:
            continue
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                return "an alias refers to a node that contains it (a recursive document)"
            if id(child) not in sizes:
                stack.append((child, False))
    added = sizes[id(root)] - len(sizes)
    if added > MAX_ALIAS_NODES:
        return (
            f"aliases expand the document by {added} nodes; at most {MAX_ALIAS_NODES} "
            "(a YAML alias bomb?)"
        )
    return None


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
