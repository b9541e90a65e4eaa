"""FlowDefinition: the portable description of a flow, and its validation."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

from pydantic import Field, ValidationError, model_validator

from rustyflower.core.errors import DefinitionError, Problem
from rustyflower.core.model.common import FLOW_NAME_PATTERN, Version
from rustyflower.core.model.errors_handling import Catch, Retry
from rustyflower.core.model.graph import flow_problems, state_location
from rustyflower.core.model.schedule import Schedule
from rustyflower.core.model.states import STATE_TYPES, Branch, WaitForEventState, iter_states
from rustyflower.core.model.triggers import Trigger
from rustyflower.core.schedules.spec import declared_schedule_problems


def version_key(version: str) -> tuple[tuple[int, int, str], ...]:
    """Orders versions as people read them: ``1.10`` after ``1.9``, numbers before words."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in version.split(".")
    )


class FlowDefinition(Branch):
    """A named, versioned flow: its states plus flow-wide timeout, retry and error handlers."""

    name: str = Field(pattern=FLOW_NAME_PATTERN)
    version: Version = "1"
    description: str | None = None
    timeout_seconds: int | None = Field(default=None, ge=1, le=99_999_999)
    default_retry: list[Retry] = Field(default_factory=list)
    on_error: list[Catch] = Field(default_factory=list)
    schedules: list[Schedule] = Field(default_factory=list)
    triggers: list[Trigger] = Field(default_factory=list)

    @model_validator(mode="after")
    def _valid_as_a_whole(self) -> FlowDefinition:
        problems = flow_problems(self.document())
        # the names its schedules get include the flow's name: checked here, with the
        # rules every runtime names them by, so the definition can always be registered
        problems += [
            Problem("flow", f"schedules[{index}].name: {message}")
            for index, message in declared_schedule_problems(self)
        ]
        problems += [Problem("flow", message) for message in _trigger_problems(self)]
        if problems:
            # Not a ValueError on purpose: it passes through pydantic with every problem intact.
            raise DefinitionError(problems)
        return self

    def document(self) -> dict[str, Any]:
        """The canonical JSON document: defaults left out, so adding a default keeps digests."""
        return self.model_dump(mode="json", exclude_defaults=True)

    @cached_property
    def key(self) -> str:
        return f"{self.name}@{self.version}"


def _trigger_problems(definition: FlowDefinition) -> list[str]:
    """Trigger names are unique; a signal trigger's event is one the flow waits for."""
    problems: list[str] = []
    seen: set[str] = set()
    waited = {
        state.event for state in iter_states(definition) if isinstance(state, WaitForEventState)
    }
    for index, trigger in enumerate(definition.triggers):
        if trigger.name in seen:
            problems.append(f"triggers[{index}].name: {trigger.name!r} is used twice")
        seen.add(trigger.name)
        if trigger.action == "signal" and trigger.event not in waited:
            problems.append(
                f"triggers[{index}].event: the flow never waits for {trigger.event!r} "
                f"(its wait_for_event states wait for: {', '.join(sorted(waited)) or 'none'})"
            )
    return problems


def parse_definition(raw: Any, source: str | None = None) -> FlowDefinition:
    """Validate a raw mapping (from YAML, JSON or code); report every problem at once."""
    if isinstance(raw, FlowDefinition):
        return raw
    if not isinstance(raw, Mapping):
        raise DefinitionError(
            [Problem("flow", f"a flow definition is a mapping, not {type(raw).__name__}")], source
        )
    try:
        return FlowDefinition.model_validate(raw)
    except DefinitionError as error:
        raise DefinitionError(error.problems, source) from None
    except ValidationError as error:
        problems = _pydantic_problems(error)
        seen = set(problems)
        for problem in flow_problems(raw):
            if problem not in seen:
                problems.append(problem)
        raise DefinitionError(problems, source) from None


def _pydantic_problems(error: ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    for detail in error.errors(include_url=False):
        location, field = _describe_location(detail["loc"])
        message = detail["msg"].removeprefix("Value error, ")
        if detail["type"] == "missing":
            message = "is required"
        elif detail["type"] == "extra_forbidden":
            message = "is not a known field"
        text = f"{field}: {message}" if field else message
        problems.append(Problem(location, text))
    return problems


def _describe_location(loc: tuple[int | str, ...]) -> tuple[str, str]:
    """Turn pydantic's loc into ('state 'A' > branches[0] > state 'B'', 'retry[0].max_attempts')."""
    prefix = ""
    field_parts: list[str] = []
    parts = list(loc)
    index = 0
    while index < len(parts):
        part = parts[index]
        if part == "states" and index + 1 < len(parts):
            prefix = state_location(prefix, str(parts[index + 1]))
            field_parts = []
            index += 2
            # skip the discriminator tag pydantic inserts after the state name
            if index < len(parts) and isinstance(parts[index], str) and _is_tag(parts[index]):
                index += 1
            continue
        if part in ("branches", "iterator"):
            label = f"branches[{parts[index + 1]}]" if part == "branches" else "iterator"
            prefix = f"{prefix} > {label}" if prefix else label
            field_parts = []
            index += 2 if part == "branches" else 1
            continue
        if isinstance(part, int):
            if field_parts:
                field_parts[-1] += f"[{part}]"
            else:
                field_parts.append(f"[{part}]")
        elif not _is_union_noise(str(part)):
            field_parts.append(str(part))
        index += 1
    return (prefix or "flow"), ".".join(field_parts)


def _is_tag(part: int | str) -> bool:
    return part in STATE_TYPES


def _is_union_noise(part: str) -> bool:
    # pydantic names union members in locations (e.g. "Comparison", "function-after[...]").
    return part[:1].isupper() or part.startswith(("function-", "tagged-union", "comparison"))


def validate_definition(definition: Any, source: str | None = None) -> list[Problem]:
    """Every problem of a definition, or an empty list when it is valid."""
    try:
        parse_definition(definition, source)
    except DefinitionError as error:
        return error.problems
    return []
