"""Field types shared by every part of the flow model."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field

from rustyflower.core.expressions import compile_template, parse_path, parse_reference_path
from rustyflower.core.ids import CONTROL_CHARACTERS

MODEL_CONFIG = ConfigDict(
    extra="forbid",
    frozen=True,
    serialize_by_alias=True,
    validate_by_name=True,
    validate_by_alias=True,
)

STATE_NAME_PATTERN = rf"^[^/\[\]~:#{CONTROL_CHARACTERS}]{{1,80}}$"
"""State names end up in positions, ASL state names, idempotency keys and child flows'
instance ids: no separators, none of the characters instance ids exclude (``core.ids``)."""

FLOW_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_\-]{0,79}$"


def _check_path(text: str) -> str:
    parse_path(text)
    return text


def _check_reference_path(text: str) -> str:
    parse_reference_path(text)
    return text


def _check_template(value: dict[str, Any]) -> dict[str, Any]:
    compile_template(value)
    return value


def _version_to_text(value: Any) -> Any:
    # YAML reads `version: 2` as an int; versions are labels, so accept numbers as text.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


PathText = Annotated[str, AfterValidator(_check_path)]
"""A JSONPath (subset) that selects data, for example ``$.order.items``."""

ReferencePath = Annotated[str, AfterValidator(_check_reference_path)]
"""A definite JSONPath that names one place to write a result, for example ``$.payment``."""

Template = Annotated[dict[str, Any], AfterValidator(_check_template)]
"""An object whose ``key.$`` entries are filled from paths (ASL ``Parameters``)."""

StateName = Annotated[str, Field(pattern=STATE_NAME_PATTERN)]
Version = Annotated[str, BeforeValidator(_version_to_text), Field(min_length=1, max_length=40)]
ErrorName = Annotated[str, Field(min_length=1, max_length=256)]
