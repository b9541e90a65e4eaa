"""A chainable Python way to write flows; it produces the same model as YAML and JSON.

    flow = (
        Flow("order", version="2")
        .task("Charge", "charge_card", result_path="$.payment", retry=[Retry(max_attempts=5)])
        .choice("Big?", [when(var("$.total").gt(100), "Approve")], default="Ship")
        .wait_for_event("Approve", "approval", timeout_seconds=3600, on_timeout="Ship")
        .task("Ship", "ship_order")
        .build()
    )

A state given neither ``next`` nor ``end`` flows into the state added after it; the last
one ends the flow. ``build()`` validates everything at once, like a YAML file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

from pydantic import BaseModel

from rustyflower.core.errors import DefinitionError, Problem
from rustyflower.core.model import Catch, FlowDefinition, Retry, Schedule, parse_definition

__all__ = [
    "Catch",
    "Flow",
    "Ref",
    "Retry",
    "Schedule",
    "Steps",
    "Var",
    "all_of",
    "any_of",
    "not_",
    "ref",
    "var",
    "when",
]

_CHAINING = {"task", "pass", "wait", "wait_for_event", "parallel", "map", "sub_flow"}
_NULLABLE_PATHS = frozenset({"input_path", "output_path", "result_path"})


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_defaults=True)
    if isinstance(value, Steps):
        return value.branch_document()
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


class Steps:
    """An ordered list of states: a parallel branch or a map iterator (and the base of Flow)."""

    def __init__(self, start_at: str | None = None) -> None:
        self._start_at = start_at
        self._states: dict[str, dict[str, Any]] = {}
        self._duplicates: list[str] = []

    def _add(self, name: str, kind: str, fields: dict[str, Any]) -> Self:
        if name in self._states:
            self._duplicates.append(name)
        state = {"type": kind}
        # None means "not given", except for the path fields, where it is ASL's null
        # (result_path: discard the result; input_path/output_path: the empty object)
        state.update(
            {
                key: _plain(value)
                for key, value in fields.items()
                if value is not None or key in _NULLABLE_PATHS
            }
        )
        self._states[name] = state
        return self

    # --- states -------------------------------------------------------------------------

    def task(
        self,
        name: str,
        activity: str,
        *,
        parameters: dict[str, Any] | None = None,
        result_path: str | None = "$",
        retry: list[Retry] | None = None,
        catch: list[Catch] | None = None,
        timeout_seconds: int | None = None,
        next: str | None = None,
        end: bool | None = None,
        **more: Any,
    ) -> Self:
        """Run ``activity``; its result lands at ``result_path`` (None keeps the input)."""
        return self._add(
            name,
            "task",
            {
                "activity": activity,
                "parameters": parameters,
                "retry": retry,
                "catch": catch,
                "timeout_seconds": timeout_seconds,
                "next": next,
                "end": end,
                **_result_path(result_path),
                **more,
            },
        )

    def pass_(
        self,
        name: str,
        *,
        result: Any = None,
        parameters: dict[str, Any] | None = None,
        result_path: str | None = "$",
        next: str | None = None,
        end: bool | None = None,
        **more: Any,
    ) -> Self:
        fields = {"result": result, "parameters": parameters, "next": next, "end": end, **more}
        return self._add(name, "pass", {**fields, **_result_path(result_path)})

    def choice(
        self, name: str, choices: list[dict[str, Any]], *, default: str | None = None, **more: Any
    ) -> Self:
        """``choices`` are ``when(condition, next)`` entries; the first that holds wins."""
        return self._add(name, "choice", {"choices": choices, "default": default, **more})

    def wait(
        self,
        name: str,
        *,
        seconds: int | None = None,
        timestamp: str | None = None,
        seconds_path: str | None = None,
        timestamp_path: str | None = None,
        next: str | None = None,
        end: bool | None = None,
        **more: Any,
    ) -> Self:
        return self._add(
            name,
            "wait",
            {
                "seconds": seconds,
                "timestamp": timestamp,
                "seconds_path": seconds_path,
                "timestamp_path": timestamp_path,
                "next": next,
                "end": end,
                **more,
            },
        )

    def wait_for_event(
        self,
        name: str,
        event: str,
        *,
        timeout_seconds: int | None = None,
        on_timeout: str | None = None,
        result_path: str | None = "$",
        next: str | None = None,
        end: bool | None = None,
        **more: Any,
    ) -> Self:
        """Hold until ``event`` arrives (an approval, a callback), or time out."""
        fields = {
            "event": event,
            "timeout_seconds": timeout_seconds,
            "on_timeout": on_timeout,
            "next": next,
            "end": end,
            **more,
        }
        return self._add(name, "wait_for_event", {**fields, **_result_path(result_path)})

    def parallel(
        self,
        name: str,
        branches: list[Steps],
        *,
        result_path: str | None = "$",
        retry: list[Retry] | None = None,
        catch: list[Catch] | None = None,
        next: str | None = None,
        end: bool | None = None,
        **more: Any,
    ) -> Self:
        fields = {
            "branches": branches,
            "retry": retry,
            "catch": catch,
            "next": next,
            "end": end,
            **more,
        }
        return self._add(name, "parallel", {**fields, **_result_path(result_path)})

    def map(
        self,
        name: str,
        iterator: Steps,
        *,
        items_path: str = "$",
        item_selector: dict[str, Any] | None = None,
        max_concurrency: int = 0,
        result_path: str | None = "$",
        retry: list[Retry] | None = None,
        catch: list[Catch] | None = None,
        next: str | None = None,
        end: bool | None = None,
        **more: Any,
    ) -> Self:
        fields = {
            "iterator": iterator,
            "items_path": items_path,
            "item_selector": item_selector,
            "max_concurrency": max_concurrency or None,
            "retry": retry,
            "catch": catch,
            "next": next,
            "end": end,
            **more,
        }
        return self._add(name, "map", {**fields, **_result_path(result_path)})

    def sub_flow(
        self,
        name: str,
        flow: str,
        *,
        version: str | None = None,
        result_path: str | None = "$",
        next: str | None = None,
        end: bool | None = None,
        **more: Any,
    ) -> Self:
        fields = {"flow": flow, "version": version, "next": next, "end": end, **more}
        return self._add(name, "sub_flow", {**fields, **_result_path(result_path)})

    def succeed(self, name: str, **more: Any) -> Self:
        return self._add(name, "succeed", more)

    def fail(self, name: str, error: str | None = None, cause: str | None = None) -> Self:
        return self._add(name, "fail", {"error": error, "cause": cause})

    # --- output -------------------------------------------------------------------------

    def branch_document(self) -> dict[str, Any]:
        names = list(self._states)
        states: dict[str, dict[str, Any]] = {}
        for index, name in enumerate(names):
            state = dict(self._states[name])
            chains = state["type"] in _CHAINING and "next" not in state and not state.get("end")
            if chains:
                if index + 1 < len(names):
                    state["next"] = names[index + 1]
                else:
                    state["end"] = True
            states[name] = state
        start_at = self._start_at or (names[0] if names else "")
        return {"start_at": start_at, "states": states}

    def duplicate_problems(self, where: str = "flow") -> list[Problem]:
        return [Problem(where, f"state {name!r} was added twice") for name in self._duplicates]


class Flow(Steps):
    """A whole flow: its states plus name, version, timeout, retry and error handlers."""

    def __init__(
        self,
        name: str,
        *,
        version: str = "1",
        start_at: str | None = None,
        description: str | None = None,
        timeout_seconds: int | None = None,
        default_retry: list[Retry] | None = None,
        on_error: list[Catch] | None = None,
        schedules: list[Schedule] | None = None,
    ) -> None:
        super().__init__(start_at)
        self._flow_fields = {
            "name": name,
            "version": version,
            "description": description,
            "timeout_seconds": timeout_seconds,
            "default_retry": default_retry,
            "on_error": on_error,
            "schedules": schedules,
        }

    def document(self) -> dict[str, Any]:
        fields = {key: _plain(value) for key, value in self._flow_fields.items() if value}
        return {**fields, **self.branch_document()}

    def build(self) -> FlowDefinition:
        """Validate and return the definition; raises DefinitionError listing every problem."""
        duplicates = self.duplicate_problems()
        try:
            definition = parse_definition(
                self.document(), source=f"flow {self._flow_fields['name']!r}"
            )
        except DefinitionError as error:
            raise DefinitionError(duplicates + error.problems, error.source) from None
        if duplicates:
            raise DefinitionError(duplicates)
        return definition


def _result_path(value: str | None) -> dict[str, Any]:
    # "$" is the default and is left out; None means "discard the result" and must be kept.
    if value == "$":
        return {}
    return {"result_path": value}


# --- conditions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """Compare with another value of the document: ``var("$.total").gt(ref("$.limit"))``."""

    path: str
    kind: str = "numeric"


def ref(path: str, kind: str = "numeric") -> Ref:
    return Ref(path, kind)


def _kind_of(value: Any) -> str:
    if isinstance(value, Ref):
        return value.kind
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "numeric"
    if isinstance(value, str):
        return "string"
    raise TypeError(f"cannot compare with {type(value).__name__}; use a str, number or bool")


@dataclass(frozen=True)
class Var:
    """A value of the document to test in a Choice rule."""

    path: str

    def _compare(self, operation: str, value: Any, kind: str | None = None) -> dict[str, Any]:
        kind = kind or _kind_of(value)
        if isinstance(value, Ref):
            return {"variable": self.path, f"{kind}_{operation}_path": value.path}
        return {"variable": self.path, f"{kind}_{operation}": value}

    def eq(self, value: Any) -> dict[str, Any]:
        return self._compare("equals", value)

    def ne(self, value: Any) -> dict[str, Any]:
        return not_(self.eq(value))

    def lt(self, value: Any) -> dict[str, Any]:
        return self._compare("less_than", value)

    def le(self, value: Any) -> dict[str, Any]:
        return self._compare("less_than_equals", value)

    def gt(self, value: Any) -> dict[str, Any]:
        return self._compare("greater_than", value)

    def ge(self, value: Any) -> dict[str, Any]:
        return self._compare("greater_than_equals", value)

    def before(self, timestamp: str) -> dict[str, Any]:
        return self._compare("less_than", timestamp, "timestamp")

    def after(self, timestamp: str) -> dict[str, Any]:
        return self._compare("greater_than", timestamp, "timestamp")

    def at(self, timestamp: str) -> dict[str, Any]:
        return self._compare("equals", timestamp, "timestamp")

    def matches(self, pattern: str) -> dict[str, Any]:
        """Wildcard match: ``*`` is any text, ``\\*`` a literal star."""
        return {"variable": self.path, "string_matches": pattern}

    def is_present(self, expected: bool = True) -> dict[str, Any]:
        return {"variable": self.path, "is_present": expected}

    def is_null(self, expected: bool = True) -> dict[str, Any]:
        return {"variable": self.path, "is_null": expected}

    def is_numeric(self, expected: bool = True) -> dict[str, Any]:
        return {"variable": self.path, "is_numeric": expected}

    def is_string(self, expected: bool = True) -> dict[str, Any]:
        return {"variable": self.path, "is_string": expected}

    def is_boolean(self, expected: bool = True) -> dict[str, Any]:
        return {"variable": self.path, "is_boolean": expected}

    def is_timestamp(self, expected: bool = True) -> dict[str, Any]:
        return {"variable": self.path, "is_timestamp": expected}


def var(path: str) -> Var:
    return Var(path)


def all_of(*conditions: dict[str, Any]) -> dict[str, Any]:
    return {"and": list(conditions)}


def any_of(*conditions: dict[str, Any]) -> dict[str, Any]:
    return {"or": list(conditions)}


def not_(condition: dict[str, Any]) -> dict[str, Any]:
    return {"not": condition}


def when(condition: dict[str, Any], next: str) -> dict[str, Any]:
    """One Choice rule: go to ``next`` when ``condition`` holds."""
    return {"when": condition, "next": next}
