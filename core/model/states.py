"""The state kinds a flow is made of (docs/architecture.md, "core")."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    JsonValue,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from rustyflower.core.contract import (
    ServiceName,
    is_reserved_activity,
    service_activity,
)
from rustyflower.core.expressions import Condition
from rustyflower.core.model.common import (
    MODEL_CONFIG,
    ErrorName,
    PathText,
    ReferencePath,
    StateName,
    Template,
    Version,
)
from rustyflower.core.model.errors_handling import Catch, Retry
from rustyflower.core.services.requests import parameter_problems
from rustyflower.core.timeutil import parse_timestamp

_PATHS_KEPT_WHEN_WRITTEN = ("input_path", "output_path")


class _StateBase(BaseModel):
    model_config = MODEL_CONFIG

    comment: str | None = None
    # ASL: left out, a path is "$" (all of it); null is not "left out": a null InputPath
    # makes the effective input {}, a null OutputPath makes the output {} (as a null
    # result_path keeps the input, below)
    input_path: PathText | None = Field(
        default="$", description="Selects the state's input; null: the empty object {}."
    )
    output_path: PathText | None = Field(
        default="$", description="Selects the state's output; null: the empty object {}."
    )

    @model_serializer(mode="wrap")
    def _keep_paths_written_out(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> Any:
        # The definition document leaves defaults out. Before null and left-out paths were
        # told apart, "$" was not the default, so a path written out as "$" stayed in the
        # document; it still does, so that such a definition keeps its digest (and the
        # snapshots and compiled machines that carry it still match).
        data = handler(self)
        if info.exclude_defaults and isinstance(data, dict):
            for name in _PATHS_KEPT_WHEN_WRITTEN:
                if name in self.model_fields_set and getattr(self, name) == "$":
                    data.setdefault(name, "$")
        return data


class _Transition(BaseModel):
    """``next`` or ``end``: exactly one (checked with the flow graph, to report all at once)."""

    next: StateName | None = None
    end: bool = False


class _Resilient(BaseModel):
    """Retry and catch policies; their order rules are checked with the graph."""

    retry: list[Retry] = Field(default_factory=list)
    catch: list[Catch] = Field(default_factory=list)


class _ProducesResult(BaseModel):
    parameters: Template | None = None
    result_selector: Template | None = None
    result_path: ReferencePath | None = "$"


class TaskState(_StateBase, _Transition, _Resilient, _ProducesResult):
    """Run a registered activity, or a built-in service, with the state's input; its
    result becomes data. Exactly one of ``activity`` and ``service``."""

    type: Literal["task"]
    activity: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    service: ServiceName | None = Field(
        default=None,
        description="A built-in service task (docs/services.md); its parameters are the request.",
    )
    timeout_seconds: int | None = Field(default=None, ge=1, le=99_999_999)

    @model_validator(mode="after")
    def _activity_or_service(self) -> TaskState:
        if self.activity is None and self.service is None:
            raise ValueError("activity: is required (or service, for a built-in service task)")
        if self.activity is not None and self.service is not None:
            raise ValueError("a task names an activity or a service, not both")
        if self.activity is not None and is_reserved_activity(self.activity):
            raise ValueError(
                f"activity {self.activity!r}: names starting with 'service:' are reserved; "
                "write service: <kind> for a built-in service"
            )
        if self.service is not None:
            problems = parameter_problems(self.service, self.parameters)
            if problems:
                raise ValueError("; ".join(problems))
        return self

    @property
    def work_name(self) -> str:
        """The activity name a call of this task is issued under (a service's reserved one)."""
        if self.service is not None:
            return service_activity(self.service)
        assert self.activity is not None
        return self.activity


class PassState(_StateBase, _Transition):
    """Pass data on, optionally injecting a fixed ``result`` or reshaping with ``parameters``."""

    type: Literal["pass"]
    result: JsonValue = None
    parameters: Template | None = None
    result_path: ReferencePath | None = "$"


class ChoiceBranch(BaseModel):
    model_config = MODEL_CONFIG

    when: Condition
    next: StateName


class ChoiceState(_StateBase):
    """Go to the ``next`` of the first rule that holds, else to ``default``."""

    type: Literal["choice"]
    choices: list[ChoiceBranch] = Field(min_length=1)
    default: StateName | None = None


class WaitState(_StateBase, _Transition):
    """Pause for a number of seconds or until a time (exactly one of the four fields)."""

    type: Literal["wait"]
    seconds: int | None = Field(default=None, ge=0, le=99_999_999)
    timestamp: str | None = None
    seconds_path: ReferencePath | None = None
    timestamp_path: ReferencePath | None = None

    @model_validator(mode="after")
    def _exactly_one_duration(self) -> WaitState:
        given = [
            name
            for name in ("seconds", "timestamp", "seconds_path", "timestamp_path")
            if getattr(self, name) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "a wait needs exactly one of seconds, timestamp, seconds_path, timestamp_path"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.timestamp is not None and parse_timestamp(self.timestamp) is None:
            raise ValueError(f"timestamp {self.timestamp!r} is not an RFC 3339 time")
        return self


class WaitForEventState(_StateBase, _Transition):
    """Hold until an external event (for example an approval) arrives, or time out."""

    type: Literal["wait_for_event"]
    event: Annotated[str, Field(min_length=1, max_length=200)]
    timeout_seconds: int | None = Field(default=None, ge=1, le=99_999_999)
    on_timeout: StateName | None = None
    result_selector: Template | None = None
    result_path: ReferencePath | None = "$"
    catch: list[Catch] = Field(default_factory=list)


class Branch(BaseModel):
    """A self-contained state machine: the flow itself, a parallel branch or a map iterator."""

    model_config = MODEL_CONFIG

    start_at: StateName
    states: dict[str, State] = Field(min_length=1)


class ParallelState(_StateBase, _Transition, _Resilient, _ProducesResult):
    """Run every branch on the same input; the result is the list of branch outputs."""

    type: Literal["parallel"]
    branches: list[Branch] = Field(min_length=1)


class MapState(_StateBase, _Transition, _Resilient):
    """Run ``iterator`` once per item of ``items_path``; results keep the items' order."""

    type: Literal["map"]
    result_selector: Template | None = None
    result_path: ReferencePath | None = "$"
    items_path: PathText = "$"
    item_selector: Template | None = None
    iterator: Branch
    max_concurrency: int = Field(default=0, ge=0, le=10_000)


class SubFlowState(_StateBase, _Transition, _Resilient, _ProducesResult):
    """Start another registered flow as a child and wait for its output."""

    type: Literal["sub_flow"]
    flow: Annotated[str, Field(min_length=1, max_length=80)]
    version: Version | None = None
    timeout_seconds: int | None = Field(default=None, ge=1, le=99_999_999)


class SucceedState(_StateBase):
    """Finish this flow (or branch) successfully."""

    type: Literal["succeed"]


class FailState(BaseModel):
    """Finish this flow (or branch) with an error."""

    model_config = MODEL_CONFIG

    type: Literal["fail"]
    comment: str | None = None
    error: ErrorName | None = None
    cause: str | None = None
    error_path: ReferencePath | None = None
    cause_path: ReferencePath | None = None

    @model_validator(mode="after")
    def _one_source_each(self) -> FailState:
        if self.error is not None and self.error_path is not None:
            raise ValueError("give error or error_path, not both")
        if self.cause is not None and self.cause_path is not None:
            raise ValueError("give cause or cause_path, not both")
        return self


State = Annotated[
    TaskState
    | PassState
    | ChoiceState
    | WaitState
    | WaitForEventState
    | ParallelState
    | MapState
    | SubFlowState
    | SucceedState
    | FailState,
    Field(discriminator="type"),
]

STATE_TYPES: tuple[str, ...] = (
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
)

Branch.model_rebuild()


def iter_states(branch: Branch) -> Iterator[Any]:
    """Every state of ``branch`` in definition order, each parallel's branches and each
    map's iterator walked where they stand (depth first)."""
    for state in branch.states.values():
        yield state
        if isinstance(state, ParallelState):
            for nested in state.branches:
                yield from iter_states(nested)
        elif isinstance(state, MapState):
            yield from iter_states(state.iterator)


def transitions_of(state: Any) -> list[tuple[str, str]]:
    """Every (label, target) edge leaving a state given as a raw mapping or a model."""
    raw = state if isinstance(state, dict) else state.model_dump()
    edges: list[tuple[str, str]] = []
    if isinstance(raw.get("next"), str):
        edges.append(("next", raw["next"]))
    if isinstance(raw.get("default"), str):
        edges.append(("default", raw["default"]))
    if isinstance(raw.get("on_timeout"), str):
        edges.append(("on_timeout", raw["on_timeout"]))
    for key in ("choices", "catch"):
        entries = raw.get(key)
        if isinstance(entries, list):
            for index, entry in enumerate(entries):
                if isinstance(entry, dict) and isinstance(entry.get("next"), str):
                    edges.append((f"{key}[{index}].next", entry["next"]))
    return edges
