"""Expressions: paths that select and place data, payload templates and Choice rules.

Everything here is parsed, never evaluated as code, and has the meaning the Amazon
States Language (JSONPath mode) gives it, so flows behave the same on every runtime.
"""

from rustyflower.core.expressions.conditions import (
    OPERATORS,
    AllOf,
    AnyOf,
    Comparison,
    Condition,
    Not,
    condition_from_asl,
    is_rfc3339_timestamp,
)
from rustyflower.core.expressions.paths import (
    WILDCARD,
    Path,
    Segment,
    format_segments,
    parse_path,
    parse_reference_path,
    place,
)
from rustyflower.core.expressions.templates import Template, compile_template

__all__ = [
    "OPERATORS",
    "WILDCARD",
    "AllOf",
    "AnyOf",
    "Comparison",
    "Condition",
    "Not",
    "Path",
    "Segment",
    "Template",
    "compile_template",
    "condition_from_asl",
    "format_segments",
    "is_rfc3339_timestamp",
    "parse_path",
    "parse_reference_path",
    "place",
]
