"""``/v1/instances``: start, list, read and operate instances (all through ``AsyncClient``).

An instance id may hold ``/`` (a sub-flow's id is its parent's, ``/`` and the call), so
the routes take the id as a path and the ones with a suffix (``/history``, ``/hold``...)
are declared before the bare ``/v1/instances/{id}``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request, Response

from rustyflower.adapters.web.auth import require_token
from rustyflower.adapters.web.errors import ApiError
from rustyflower.adapters.web.models import (
    ERRORS,
    BulkStartedOut,
    BulkStartRequest,
    HistoryEntryOut,
    InstanceOut,
    InstancePageOut,
    InstanceRow,
    InstanceStatusOut,
    ReasonRequest,
    SignalOut,
    SignalRequest,
    StartedOut,
    StartRequest,
    StepOut,
)
from rustyflower.client import AsyncClient, InstanceStatus
from rustyflower.core.ids import instance_id_problem

router = APIRouter(
    prefix="/v1/instances", tags=["instances"], dependencies=[Depends(require_token)]
)


async def client_of(request: Request) -> AsyncClient:
    client: AsyncClient = request.app.state.client
    return client


Client = Annotated[AsyncClient, Depends(client_of)]


def _checked(instance_id: str) -> str:
    problem = instance_id_problem(instance_id)
    if problem is not None:
        raise ApiError(422, "invalid_request", f"path.instance_id: {problem}", "path.instance_id")
    return instance_id


def _with(
    base: dict[int | str, dict[str, Any]], more: dict[int | str, dict[str, Any]]
) -> dict[int | str, dict[str, Any]]:
    return {**base, **more}


def _out(status: InstanceStatus) -> dict[str, Any]:
    return status.as_dict()


@router.post(
    "",
    status_code=201,
    response_model=StartedOut,
    responses=_with(ERRORS, {200: {"model": StartedOut, "description": "The id existed"}}),
    summary="Start an instance",
)
async def start(body: StartRequest, client: Client, response: Response) -> dict[str, Any]:
    handle = await client.start(
        body.flow,
        body.input,
        id=body.id,
        version=body.version,
        priority=body.priority,
        concurrency_key=body.concurrency_key,
    )
    status = await handle.status()
    if not handle.created:
        response.status_code = 200
    response.headers["Location"] = f"/v1/instances/{handle.id}"
    return _out(status) | {"created": bool(handle.created)}


@router.post(
    "/bulk",
    status_code=201,
    response_model=BulkStartedOut,
    responses=ERRORS,
    summary="Start one instance per input",
)
async def start_many(body: BulkStartRequest, client: Client) -> dict[str, Any]:
    handles = await client.start_many(
        body.flow,
        body.inputs,
        version=body.version,
        priority=body.priority,
        concurrency_key=body.concurrency_key,
    )
    return {"instance_ids": [handle.id for handle in handles]}


@router.get("", response_model=InstancePageOut, responses=ERRORS, summary="List instances")
async def list_instances(
    client: Client,
    *,
    status: Annotated[
        Literal["running", "succeeded", "failed", "cancelled"] | None, Query()
    ] = None,
    flow: Annotated[str | None, Query(min_length=1, max_length=80)] = None,
    held: Annotated[bool | None, Query(description="Only held (true) or not held (false).")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> dict[str, Any]:
    """Newest first; pass the answer's `next_cursor` as `cursor` for the next page."""
    page = await client.list_instances(
        status=status, flow=flow, held=held, limit=limit, cursor=cursor
    )
    rows = [InstanceRow.model_validate(info, from_attributes=True) for info in page.items]
    return {"items": rows, "next_cursor": page.next_cursor}


@router.get(
    "/{instance_id:path}/history",
    response_model=list[HistoryEntryOut],
    responses=ERRORS,
    summary="An instance's history",
)
async def history(instance_id: str, client: Client) -> list[dict[str, Any]]:
    entries = await client.history(_checked(instance_id))
    return [
        {
            "seq": entry.seq,
            "at": entry.at,
            "kind": entry.kind,
            "position": entry.position,
            "detail": entry.detail,
        }
        for entry in entries
    ]


@router.get(
    "/{instance_id:path}/steps",
    response_model=list[StepOut],
    responses=ERRORS,
    summary="The states an instance visited, with their input and output",
)
async def steps(instance_id: str, client: Client) -> list[dict[str, Any]]:
    """Oldest first: each visit of a state, when it was entered and left, the data it
    received and the data it passed on (the runner keeps about the last 500 visits; a
    value over 16 KiB of JSON is left out, with its size in `*_omitted`)."""
    return [visit.as_dict() for visit in await client.steps(_checked(instance_id))]


@router.get(
    "/{instance_id:path}/snapshot",
    response_class=Response,
    responses=_with(ERRORS, {200: {"content": {"application/json": {}}, "description": "It"}}),
    summary="Download an instance's snapshot (signed when keys are set)",
)
async def snapshot(instance_id: str, client: Client) -> Response:
    data = await client.snapshot(_checked(instance_id))
    name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in instance_id)[:120]
    return Response(
        data,
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{name}.snapshot.json"'},
    )


@router.post(
    "/{instance_id:path}/signal",
    response_model=SignalOut,
    responses=ERRORS,
    summary="Deliver an event to an instance that waits for it",
)
async def signal(instance_id: str, body: SignalRequest, client: Client) -> dict[str, Any]:
    receipt = await client.signal(_checked(instance_id), body.event, body.data)
    return {
        "instance_id": receipt.instance_id,
        "event": receipt.event,
        "delivered_to": receipt.cloud or "local",
        "detail": receipt.detail,
        "instance": _out(receipt.status) if receipt.status is not None else None,
    }


Reason = Annotated[ReasonRequest | None, Body()]


@router.post(
    "/{instance_id:path}/hold",
    response_model=InstanceOut,
    responses=ERRORS,
    summary="Hold: dispatch nothing new until released",
)
async def hold(instance_id: str, client: Client, body: Reason = None) -> dict[str, Any]:
    reason = body.reason if body is not None else None
    return _out(await client.hold(_checked(instance_id), reason))


@router.post(
    "/{instance_id:path}/release",
    response_model=InstanceOut,
    responses=ERRORS,
    summary="Release a held instance",
)
async def release(instance_id: str, client: Client) -> dict[str, Any]:
    return _out(await client.release(_checked(instance_id)))


@router.post(
    "/{instance_id:path}/cancel",
    response_model=InstanceOut,
    responses=ERRORS,
    summary="Cancel an instance",
)
async def cancel(instance_id: str, client: Client, body: Reason = None) -> dict[str, Any]:
    reason = body.reason if body is not None else None
    return _out(await client.cancel(_checked(instance_id), reason))


@router.post(
    "/{instance_id:path}/retry",
    response_model=InstanceOut,
    responses=ERRORS,
    summary="Run a failed instance again from the step that failed",
)
async def retry(instance_id: str, client: Client) -> dict[str, Any]:
    return _out(await client.retry(_checked(instance_id)))


@router.get(
    "/{instance_id:path}",
    response_model=InstanceStatusOut,
    responses=ERRORS,
    summary="Where an instance stands",
)
async def status(
    instance_id: str,
    client: Client,
    ask_cloud: Annotated[
        bool,
        Query(
            description="For an instance living in a cloud, ask the cloud too (`cloud`; "
            "once, briefly: 'could not be asked: ...' when it cannot be reached)."
        ),
    ] = False,
) -> dict[str, Any]:
    found = _out(await client.status(_checked(instance_id)))
    if ask_cloud and found["owner"] != "local":
        view = await client.ask_cloud(instance_id)
        found["cloud"] = view.as_dict() if view is not None else None
    return found
