"""How data moves through a state, with ASL's InputPath/Parameters/ResultPath/OutputPath meaning."""

from __future__ import annotations

from typing import Any

from rustyflower.core.contract import ReservedError
from rustyflower.core.engine.structure import FlowStructure
from rustyflower.core.errors import PathNotFoundError
from rustyflower.core.expressions import parse_path, parse_reference_path, place


class StateError(Exception):
    """An error raised at a state: it goes through retry, catch and propagation."""

    def __init__(self, error: str, cause: str | None) -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause


def select(path: str | None, document: Any, what: str) -> Any:
    """What ``path`` selects in ``document``; a null ``input_path``/``output_path`` (None)
    selects the empty object (ASL, "InputPath, Parameters and OutputPath")."""
    if path is None:
        return {}
    if path == "$":
        return document
    try:
        return parse_path(path).select(document)
    except PathNotFoundError as problem:
        raise StateError(ReservedError.RUNTIME, f"{what} {path!r}: {problem}") from None


def effective_input(
    structure: FlowStructure,
    state: Any,
    data: Any,
    context: dict[str, Any] | None = None,
) -> Any:
    """The value a state works on: InputPath, then Parameters."""
    value = select(state.input_path, data, "input_path")
    parameters = getattr(state, "parameters", None)
    if parameters is None:
        return value
    try:
        return structure.template(parameters).render(value, context)
    except PathNotFoundError as problem:
        raise StateError(ReservedError.PARAMETER_PATH_FAILURE, f"parameters: {problem}") from None


def state_output(structure: FlowStructure, state: Any, data: Any, result: Any) -> Any:
    """The output: ResultSelector on the result, ResultPath into the raw input, OutputPath."""
    selector = getattr(state, "result_selector", None)
    if selector is not None:
        try:
            result = structure.template(selector).render(result)
        except PathNotFoundError as problem:
            raise StateError(
                ReservedError.PARAMETER_PATH_FAILURE, f"result_selector: {problem}"
            ) from None
    combined = merge_result(data, getattr(state, "result_path", "$"), result)
    return select(state.output_path, combined, "output_path")


def merge_result(data: Any, result_path: str | None, result: Any) -> Any:
    if result_path is None:
        return data
    if result_path == "$":
        return result
    try:
        return place(data, parse_reference_path(result_path), result)
    except PathNotFoundError as problem:
        raise StateError(
            ReservedError.RESULT_PATH_MATCH_FAILURE, f"result_path: {problem}"
        ) from None
