"""Everything but single instances: flows, reports, the lifeboat, health."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from rustyflower.adapters.web.auth import require_token
from rustyflower.adapters.web.errors import ApiError
from rustyflower.adapters.web.instances import Client
from rustyflower.adapters.web.models import (
    ERRORS,
    FailbackRequest,
    FailoverRequest,
    FlowDefinitionOut,
    FlowOut,
    OutcomeOut,
)
from rustyflower.client import ReclaimReasonError
from rustyflower.core.reports import parse_since
from rustyflower.core.timeutil import parse_timestamp

router = APIRouter(dependencies=[Depends(require_token)])
health = APIRouter()


@router.get("/v1/flows", response_model=list[FlowOut], responses=ERRORS, tags=["flows"])
async def flows(client: Client) -> list[dict[str, Any]]:
    """The registered flows and their versions."""
    return await client.flows()


@router.get("/v1/flows/{name}", response_model=FlowDefinitionOut, responses=ERRORS, tags=["flows"])
async def flow_definition(
    name: str,
    client: Client,
    version: Annotated[str | None, Query(min_length=1, description="Default: the latest.")] = None,
) -> dict[str, Any]:
    """A registered flow's definition document."""
    definition = await client.definition(name, version)
    return {
        "name": definition.name,
        "version": definition.version,
        "definition": definition.document(),
    }


@router.get("/v1/reports", responses=ERRORS, tags=["reports"])
async def report(
    client: Client,
    since: Annotated[
        str, Query(max_length=64, description="A span back from now (30m, 24h, 7d) or a time.")
    ] = "24h",
    until: Annotated[
        str | None, Query(max_length=64, description="RFC 3339; default: now.")
    ] = None,
) -> dict[str, Any]:
    """Per flow: started, finished, success rate, p50/p95 duration; the slowest and the
    most failing steps (what `rustyflower report --json` prints)."""
    now = datetime.now(UTC)
    end = now
    if until is not None:
        parsed = parse_timestamp(until)
        if parsed is None:
            raise ApiError(
                422, "invalid_request", "query.until: not an RFC 3339 time", "query.until"
            )
        end = parsed
    try:
        start = parse_since(since, now)
    except ValueError as error:
        raise ApiError(422, "invalid_request", f"query.since: {error}", "query.since") from None
    if start > end:
        raise ApiError(422, "invalid_request", "query.since: after until", "query.since")
    return (await client.report(start, end)).as_dict()


@router.post("/v1/failover", response_model=list[OutcomeOut], responses=ERRORS, tags=["lifeboat"])
async def failover(body: FailoverRequest, client: Client) -> list[dict[str, Any]]:
    """Continue instances in AWS or Azure (docs/failover.md); one outcome per instance.
    The cloud's settings are the server's (its environment)."""
    _one_of(body.instance_ids, body.all)
    outcomes = await client.failover(body.instance_ids, to=body.to, every=body.all)
    return [outcome.as_dict() for outcome in outcomes]


@router.post("/v1/failback", response_model=list[OutcomeOut], responses=ERRORS, tags=["lifeboat"])
async def failback(body: FailbackRequest, client: Client) -> list[dict[str, Any]]:
    """Bring instances back from AWS or Azure and resume them here. `force` (with a
    `reason`) takes them back even when the cloud is gone (docs/failover.md, "When the
    cloud is gone"); `hold` and `safe_point_timeout` are Azure's."""
    _one_of(body.instance_ids, body.all)
    try:
        outcomes = await client.failback(
            body.instance_ids,
            source=body.source,
            every=body.all,
            settings=_azure_settings(body),
            force=body.force,
            reason=body.reason,
        )
    except ReclaimReasonError as error:  # the client's rule: force needs a reason, and back
        field = f"body.{error.field}"
        raise ApiError(422, "invalid_request", f"{field}: {error}", field) from None
    return [outcome.as_dict() for outcome in outcomes]


def _azure_settings(body: FailbackRequest) -> dict[str, Any] | None:
    """``hold`` and ``safe_point_timeout``, given: Azure's settings (refused for AWS)."""
    given = {
        name: value
        for name, value in (("hold", body.hold), ("safe_point_timeout", body.safe_point_timeout))
        if value is not None
    }
    if given and body.source != "azure":
        name = next(iter(given))
        raise ApiError(
            422, "invalid_request", f"body.{name}: Azure only (from is aws)", f"body.{name}"
        )
    return given or None


def _one_of(instance_ids: list[str], every: bool) -> None:
    if bool(instance_ids) == every:
        raise ApiError(
            422,
            "invalid_request",
            "body.instance_ids: give instance ids or all (not both)",
            "body.instance_ids",
        )


@health.get("/healthz", tags=["health"])
async def healthz(request: Request) -> dict[str, Any]:
    """Liveness for load balancers (no token): whether Redis answers."""
    client = request.app.state.client
    await client.flows()
    return {"ok": True}
