"""The conformance corpus: flows, inputs and expected results in ``flows/*.yaml``.

Each file holds one flow, the sub-flows it calls and its cases (see README.md). This
loader parses a file strictly (duplicate keys and unknown fields are errors), validates
every definition with the core model and returns typed :class:`Case` values that any
runtime harness can run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator

from rustyflower.core.errors import DefinitionError
from rustyflower.core.model import FlowDefinition, SubFlowState, parse_definition
from rustyflower.core.model.states import Branch, MapState, ParallelState

FLOWS_DIR = Path(__file__).parent / "flows"
SERVICES_DIR = Path(__file__).parent / "services"
"""Flows with built-in service tasks: run where the harness gives the runtime its
service backends (a Redis, a folder, a local HTTP endpoint; SQS, S3, EventBridge on moto;
Azurite), so kept apart from the flows every harness runs bare."""

_STRICT = ConfigDict(extra="forbid", frozen=True)


class CorpusError(ValueError):
    """A corpus file is not well formed."""


# --- the file format ---------------------------------------------------------------------


class EventSpec(BaseModel):
    model_config = _STRICT

    event: str = Field(min_length=1)
    data: JsonValue = None
    after_seconds: float = Field(default=0, ge=0)


class Effects(BaseModel):
    """What the built-in service tasks left behind (tests/conformance/services/): each
    queue's messages and each bus's events in order (a message as the JSON value it
    carries; an event as type, source, detail), each store's objects by key (a JSON
    object's value, a text object's text). A resource the case names and leaves empty is
    checked to be empty."""

    model_config = _STRICT

    messages: dict[str, list[JsonValue]] = Field(default_factory=dict)
    events: dict[str, list[dict[str, JsonValue]]] = Field(default_factory=dict)
    objects: dict[str, dict[str, JsonValue]] = Field(default_factory=dict)


class Expect(BaseModel):
    model_config = _STRICT

    status: Literal["succeeded", "failed", "cancelled"]
    output: JsonValue = None
    error: str | None = None
    cause: str | None = None
    elapsed_seconds: float | None = Field(default=None, ge=0)
    effects: Effects | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Expect:
        if self.status == "succeeded":
            if "output" not in self.model_fields_set:
                raise ValueError("a succeeded case gives its expected output")
            if self.error is not None or self.cause is not None:
                raise ValueError("a succeeded case has no error or cause")
        else:
            if self.error is None:
                raise ValueError(f"a {self.status} case gives its expected error")
            if "output" in self.model_fields_set:
                raise ValueError(f"a {self.status} case has no output")
        return self

    @property
    def checks_output(self) -> bool:
        return "output" in self.model_fields_set

    @property
    def checks_cause(self) -> bool:
        """A cause is checked only where the case gives one (``cause: null`` included)."""
        return "cause" in self.model_fields_set


class CaseSpec(BaseModel):
    model_config = _STRICT

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    description: str | None = None
    input: JsonValue = None
    events: list[EventSpec] = Field(default_factory=list)
    expect: Expect


class FileSpec(BaseModel):
    model_config = _STRICT

    description: str | None = None
    flow: dict[str, Any]
    subflows: list[dict[str, Any]] = Field(default_factory=list)
    cases: list[CaseSpec] = Field(min_length=1)


# --- typed results -------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    file: str
    """The file's stem, for example ``retries``."""
    name: str
    input: Any
    events: tuple[EventSpec, ...]
    expect: Expect
    flow: FlowDefinition | None
    """None when the core model refused a definition of the file (see ``problem``)."""
    subflows: tuple[FlowDefinition, ...] = ()
    problem: str | None = None

    @property
    def id(self) -> str:
        return f"{self.file}::{self.name}"


@dataclass(frozen=True)
class CorpusFile:
    path: Path
    flow: FlowDefinition | None
    subflows: tuple[FlowDefinition, ...]
    cases: tuple[Case, ...] = field(default=())
    problem: str | None = None
    """Why the core model refused a definition of this file; its cases cannot run.

    A corpus file states the intended semantics. When the model refuses a definition
    that the format allows (an engine bug), the file still loads, its cases carry the
    problem and the tests report it, rather than the whole corpus failing to load.
    """


# --- loading -------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys instead of keeping the last one."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *anchor`: the node's own keys may override merged ones
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise CorpusError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def _sub_flow_references(branch: Branch) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    for state in branch.states.values():
        if isinstance(state, SubFlowState):
            found.append((state.flow, state.version))
        elif isinstance(state, ParallelState):
            for nested in state.branches:
                found += _sub_flow_references(nested)
        elif isinstance(state, MapState):
            found += _sub_flow_references(state.iterator)
    return found


def load_file(path: Path) -> CorpusFile:
    """Parse and validate one corpus file."""
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)
    except yaml.YAMLError as error:
        raise CorpusError(f"{path.name}: not valid YAML: {error}") from None
    except CorpusError as error:
        raise CorpusError(f"{path.name}: {error}") from None
    try:
        spec = FileSpec.model_validate(raw)
    except ValidationError as error:
        raise CorpusError(f"{path.name}: {error}") from None
    try:
        flow = parse_definition(spec.flow, source=f"{path.name}: flow")
        subflows = tuple(
            parse_definition(raw_flow, source=f"{path.name}: subflows[{index}]")
            for index, raw_flow in enumerate(spec.subflows)
        )
    except DefinitionError as error:
        return _refused(path, spec, str(error))
    known = {(sub.name, sub.version) for sub in subflows} | {(flow.name, flow.version)}
    known_names = {name for name, _ in known}
    for definition in (flow, *subflows):
        for name, version in _sub_flow_references(definition):
            if name not in known_names or (version is not None and (name, version) not in known):
                raise CorpusError(
                    f"{path.name}: flow {definition.name!r} calls sub-flow {name!r} "
                    f"version {version!r}, which the file does not define"
                )
    names = [case.name for case in spec.cases]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise CorpusError(f"{path.name}: case names used twice: {', '.join(duplicates)}")
    cases = tuple(
        Case(
            file=path.stem,
            name=case.name,
            input=case.input,
            events=tuple(case.events),
            expect=case.expect,
            flow=flow,
            subflows=subflows,
        )
        for case in spec.cases
    )
    return CorpusFile(path=path, flow=flow, subflows=subflows, cases=cases)


def _refused(path: Path, spec: FileSpec, problem: str) -> CorpusFile:
    cases = tuple(
        Case(path.stem, case.name, case.input, tuple(case.events), case.expect, None, (), problem)
        for case in spec.cases
    )
    return CorpusFile(path=path, flow=None, subflows=(), cases=cases, problem=problem)


def load_corpus(directory: Path = FLOWS_DIR) -> list[CorpusFile]:
    """Every corpus file of ``directory``, in file name order."""
    return [load_file(path) for path in sorted(directory.glob("*.yaml"))]


def load_cases(directory: Path = FLOWS_DIR) -> list[Case]:
    """Every case of every corpus file, in file then case order."""
    return [case for corpus_file in load_corpus(directory) for case in corpus_file.cases]
