"""The API's request and response bodies (pydantic), which its OpenAPI document shows.

Requests refuse unknown fields, so a misspelt one is an error naming it rather than a
setting silently ignored. Flow data (``input``, ``data``) is any JSON value within the
limits every other door applies (README "Limits"): nested at most 64 levels, finite
numbers only, text that is Unicode.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

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
    force: bool = Field(
        default=False,
        description="Take them back even when the cloud cannot be reached or will not stop "
        "(epoch + 1; from the site's snapshot if the cloud's cannot be read: the outcome's "
        "detail.source and detail.warning say so). Needs reason.",
    )
    reason: str | None = Field(
        default=None,
        max_length=1000,
        description="With force (and only with it): why; kept in each instance's history.",
    )
    hold: bool | None = Field(
        default=None,
        description="Azure only: hold the instance there first, so it settles at a "
        "checkpoint (default true).",
    )
    safe_point_timeout: float | None = Field(
        default=None,
        ge=1.0,
        le=3600.0,
        description="Azure only: seconds to wait for the instance to stand still at a "
        "checkpoint (default 60).",
    )


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
    owner: str = Field(description="`local`, or the cloud it failed over to (`aws`, `azure`).")
    owner_since: str | None = Field(
        default=None, description="When the owner last changed (None: it never did)."
    )
    created_at: str
    updated_at: str

    @field_validator("owner_since", mode="before")
    @classmethod
    def _never_is_none(cls, value: Any) -> Any:
        return value or None  # the store's "never" is an empty field


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


class CloudViewOut(BaseModel):
    """What the cloud an instance lives in says of it (``rustyflower status --json``'s
    ``cloud``)."""

    cloud: str = Field(description="aws or azure.")
    asked: bool = Field(description="False: it could not be asked (see problem).")
    status: str | None = Field(
        default=None, description="Its run's status there (RUNNING... on AWS, Running... on Azure)."
    )
    positions: list[str] = Field(default_factory=list, description="The states it is at there.")
    where: str | None = Field(
        default=None, description="The execution's ARN (AWS) or the orchestration's id (Azure)."
    )
    seq: int | None = Field(default=None, description="The seq it reached there, when told.")
    problem: str | None = Field(
        default=None, description="Why it was not asked, or 'could not be asked: ...'."
    )


class InstanceStatusOut(InstanceOut):
    cloud: CloudViewOut | None = Field(
        default=None,
        description="With ?ask_cloud=true, for an instance living in a cloud: what the cloud "
        "says (the rest is the site's view, as at failover time); null otherwise.",
    )


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


class StepOut(BaseModel):
    position: str = Field(description="Where, as in the instance's positions.")
    state: str
    entered_at: str | None = Field(description="None when the entry was trimmed off the log.")
    entered_seq: int | None
    input: Any = Field(default=None, description="The data the state received.")
    input_omitted: int | None = Field(description="Bytes of an input too large to log.")
    left_at: str | None = Field(description="None while the instance is at this state.")
    left_seq: int | None
    output: Any = Field(default=None, description="What the next state received.")
    output_omitted: int | None


class SignalOut(BaseModel):
    instance_id: str
    event: str
    delivered_to: str = Field(description="`local`, or the cloud the instance lives in.")
    detail: str | None = None
    instance: InstanceOut | None = Field(description="Where it stands now (when local).")


class OutcomeOut(BaseModel):
    """What one failover or failback did to one instance (``rustyflower failover --json``'s
    rows)."""

    model_config = ConfigDict(extra="allow")
    instance_id: str
    action: str = Field(description="failover or failback.")
    cloud: str
    result: str = Field(
        description="started (the cloud started it), existing (it was there already), "
        "resumed (failed back, running here again), reclaimed (failed back before the "
        "cloud started it), failed (see error)."
    )
    ok: bool = Field(description="False when result is failed.")
    flow: str = ""
    epoch: int | None = Field(
        default=None, description="The instance's epoch after the move (fenced at + 1)."
    )
    seq: int | None = None
    status: str | None = Field(default=None, description="Its status after the move.")
    where: str | None = Field(
        default=None,
        description="The execution's ARN (AWS) or the orchestration's instance id (Azure).",
    )
    error: str | None = None
    detail: dict[str, Any] = Field(
        default_factory=dict,
        description="What the cloud said (failback from AWS: execution_status, ...); a "
        "forced failback's: source (cloud: its state; site: the site's snapshot, the "
        "cloud's progress lost), reason, cloud_error and warning.",
    )


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


class FlowDefinitionOut(BaseModel):
    name: str
    version: str
    definition: dict[str, Any] = Field(description="The definition document (as in YAML).")


class ScheduleOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    flow: str
    cron: str
    paused: bool = False
    next_fire: str | None = Field(description="None when paused.")
    last_fire: str | None
    last_instance_id: str | None


class WorkerThreadOut(BaseModel):
    name: str
    healthy: bool = Field(description="Alive and its last round did not fail.")
    alive: bool
    rounds: int
    failures: int
    restarts: int
    failing_since: float | None
    last_error: str | None


class WorkerOut(BaseModel):
    name: str
    host: str | None
    pid: int | None
    alive: bool = Field(description="Its heartbeat is under 15 s old.")
    healthy: bool
    heartbeat_age_seconds: float
    last_heartbeat: str = Field(description="RFC 3339.")
    started_at: str | None
    concurrency: int | None
    activities: list[str]
    threads: list[WorkerThreadOut]
    problems: list[str]
    stats: dict[str, int]


class RoutedWorkOut(BaseModel):
    activity: str
    messages: int
    workers: list[str] = Field(description="Running workers that have the activity.")


class WorkersOut(BaseModel):
    workers: list[WorkerOut]
    alive: int
    routed: list[RoutedWorkOut] = Field(description="Work waiting for a worker with its activity.")


class PriorityQueueOut(BaseModel):
    priority: str
    waiting: int = Field(description="Queued, not yet taken by a worker (the group's lag).")
    in_progress: int = Field(description="Taken by a worker, not yet acknowledged.")


class TimersOut(BaseModel):
    scheduled: int
    overdue: int = Field(description="Past their time and not fired yet.")
    lag_seconds: float = Field(description="How late the most overdue one is.")


class QueuesOut(BaseModel):
    queues: list[PriorityQueueOut]
    waiting: int
    in_progress: int
    deferred: int = Field(description="Parked by a concurrency or rate limit.")
    timers: TimersOut
    dead_letters: int
    routed: list[RoutedWorkOut]


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
