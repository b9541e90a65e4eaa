"""The API's request and response bodies (pydantic), which its OpenAPI document shows.

Requests refuse unknown fields, so a misspelt one is an error naming it rather than a
setting silently ignored. Flow data (``input``, ``data``) is any JSON value within the
limits every other door applies (README "Limits"): nested at most 64 levels, finite
numbers only, text that is Unicode.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from rustyflower.core.ids import instance_id_problem
from rustyflower.core.model.flow_data import flow_data_problem

MAX_BULK = 10_000
"""Instances one bulk start may create (``POST /v1/instances/bulk``)."""


def _flow_data(value: Any) -> Any:
    problem = flow_data_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _instance_id(value: str) -> str:
    problem = instance_id_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


FlowData = Annotated[Any, AfterValidator(_flow_data)]
InstanceId = Annotated[str, AfterValidator(_instance_id)]
Priority = Literal["high", "normal", "low"]
Cloud = Literal["aws", "azure"]
FinishStatus = Literal["succeeded", "failed", "cancelled"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StartRequest(_Request):
    flow: str = Field(min_length=1, max_length=80, description="A registered flow's name.")
    input: FlowData = Field(default=None, description="The instance's input (any JSON).")
    id: InstanceId | None = Field(
        default=None, description="The instance id; starting an existing id returns it."
    )
    version: str | None = Field(default=None, min_length=1, description="Default: the latest.")
    priority: Priority = "normal"
    concurrency_key: str | None = Field(default=None, min_length=1, max_length=256)


class BulkStartRequest(_Request):
    flow: str = Field(min_length=1, max_length=80)
    inputs: list[FlowData] = Field(min_length=1, max_length=MAX_BULK)
    version: str | None = Field(default=None, min_length=1)
    priority: Priority = "normal"
    concurrency_key: str | None = Field(default=None, min_length=1, max_length=256)


class SignalRequest(_Request):
    event: str = Field(min_length=1, max_length=256, description="The event's name.")
    data: FlowData = Field(default=None, description="Its payload (any JSON).")


class ReasonRequest(_Request):
    reason: str | None = Field(default=None, max_length=1000, description="Kept in the history.")


class FailoverRequest(_Request):
    to: Cloud
    instance_ids: list[InstanceId] = Field(default_factory=list, max_length=MAX_BULK)
    all: bool = Field(default=False, description="Every eligible running instance.")


class FailbackRequest(_Request):
    source: Cloud = Field(alias="from")
    instance_ids: list[InstanceId] = Field(default_factory=list, max_length=MAX_BULK)
    all: bool = False


def _every_status() -> list[FinishStatus]:
    return ["succeeded", "failed", "cancelled"]


class WebhookRequest(_Request):
    url: str = Field(
        pattern=r"^https?://[^\s/?#]+[^\s]*$",
        max_length=2048,
        description="Where to POST (http or https).",
    )
    events: list[FinishStatus] = Field(default_factory=_every_status, min_length=1)
    flows: list[str] = Field(default_factory=list, description="Only these flows (all if empty).")
    secret: str | None = Field(
        default=None, min_length=16, max_length=256, description="Default: a random one."
    )


# --- responses ---------------------------------------------------------------------------


class Waiting(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    position: str
    kind: str
    text: str


class InstanceRow(BaseModel):
    instance_id: str
    flow: str
    version: str
    status: str
    held: bool
    seq: int
    epoch: int
    priority: str
    owner: str
    created_at: str
    updated_at: str


class InstanceOut(InstanceRow):
    positions: list[str]
    waiting_for: list[Waiting]
    input: Any = None
    output: Any = None
    error: str | None = None
    cause: str | None = None
    failed_position: str | None = None
    finished_at: str | None = None
    parent: str | None = None


class StartedOut(InstanceOut):
    created: bool = Field(description="False: an instance with this id existed already.")


class BulkStartedOut(BaseModel):
    instance_ids: list[str]


class InstancePageOut(BaseModel):
    items: list[InstanceRow]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class HistoryEntryOut(BaseModel):
    seq: int
    at: str
    kind: str
    position: str
    detail: Any = None


class SignalOut(BaseModel):
    instance_id: str
    event: str
    delivered_to: str = Field(description="`local`, or the cloud the instance lives in.")
    detail: str | None = None
    instance: InstanceOut | None = Field(description="Where it stands now (when local).")


class OutcomeOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    instance_id: str
    action: str
    cloud: str
    result: str
    error: str | None = None


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[str]
    flows: list[str]
    created_at: float


class WebhookCreatedOut(WebhookOut):
    secret: str = Field(
        description="Shown once: it signs every delivery (X-RustyFlower-Signature)."
    )


class FlowOut(BaseModel):
    name: str
    versions: list[str]
    latest: str


class ErrorDetail(BaseModel):
    status: int
    code: str
    message: str
    field: str | None
    problems: list[dict[str, Any]]


class ErrorOut(BaseModel):
    error: ErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in (
        (400, "Bad input (invalid JSON, a bad cursor)"),
        (401, "No or wrong bearer token"),
        (404, "No such instance, flow or webhook"),
        (409, "Refused in the instance's state (nothing waits for the event...)"),
        (413, "The body is too large"),
        (422, "A field is missing, of the wrong type or out of range"),
        (503, "Redis (or a cloud) cannot be reached"),
    )
}
