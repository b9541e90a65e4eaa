"""The HTTP endpoints' logic, over any Durable client (the real one, or a test fake).

* ``POST /api/instances``: continue a snapshot in Azure. The body is the snapshot's bytes
  as written by ``encode_snapshot``, or the site's handover envelope
  (``core.snapshot.handover``: the snapshot, its children in flight, the sub-flow
  definitions it may start, and the envelope's signature over them). Everything is
  verified with the app's keys; any bad snapshot or unsigned definition is a 400 naming
  the problem, and the sub-flows the app ships win over the request's. The
  orchestration's instance id is the flow's (see ``ids``); when that orchestration already
  exists (running, pending or completed) no second one is started: the answer is the
  existing one's check-status response.
* ``GET /api/instances/{instance_id}``: Durable status and the flow's custom status.
* ``POST /api/instances/{instance_id}/events/{event_name}``: raise an event (JSON body).
* ``POST /api/instances/{instance_id}/terminate[?reason=..][&seq=N]``: terminate; with
  ``seq`` only while the instance is still at that sequence number (a safe point).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import azure.functions as func

from functions_azure.flows import BundleError, FlowBundle
from functions_azure.payloads import Options, OrchestrationInput, snapshot_text
from functions_azure.settings import ORCHESTRATOR, AppSettings
from rustyflower.adapters.azure.ids import durable_instance_id
from rustyflower.core.errors import DefinitionError, SnapshotError
from rustyflower.core.settings import SettingsError
from rustyflower.core.snapshot.handover import HandoverError, HandoverRequest, decode_handover
from rustyflower.core.snapshot.keys import SnapshotKeys

EXISTING = frozenset({"Running", "Pending", "Completed", "ContinuedAsNew", "Suspended"})
"""Durable runtime statuses for which a repeated start returns the existing instance."""
ENDED = frozenset({"Completed", "Failed", "Terminated", "Canceled"})


class DurableClient(Protocol):
    """The part of ``DurableOrchestrationClient`` the endpoints use."""

    async def start_new(
        self,
        orchestration_function_name: str,
        instance_id: str | None = None,
        client_input: Any | None = None,
    ) -> str: ...

    async def get_status(self, instance_id: str) -> Any: ...

    async def raise_event(
        self, instance_id: str, event_name: str, event_data: Any = None
    ) -> None: ...

    async def terminate(self, instance_id: str, reason: str) -> None: ...

    def create_check_status_response(
        self, request: func.HttpRequest, instance_id: str
    ) -> func.HttpResponse: ...


class RequestError(Exception):
    """A request the endpoint refuses: ``status`` and a specific ``error`` name."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


def json_response(status: int, body: Any) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


def error_response(error: RequestError) -> func.HttpResponse:
    return json_response(error.status, {"error": error.error, "message": error.message})


def runtime_status(status: Any) -> str | None:
    """The runtime status name of a DurableOrchestrationStatus (None: no such instance)."""
    if not status:
        return None
    value = getattr(status, "runtime_status", None)
    if value is None:
        return None
    return str(getattr(value, "value", value))


# --- POST /api/instances --------------------------------------------------------------------


def parse_start_request(body: bytes, keys: SnapshotKeys) -> HandoverRequest:
    """The verified handover (``core.snapshot.handover``) of a start request; raises
    RequestError naming the problem."""
    try:
        return decode_handover(body, keys)
    except SnapshotError as error:
        raise RequestError(400, type(error).__name__, str(error)) from None
    except HandoverError as error:
        raise RequestError(400, "BadRequest", str(error)) from None
    except DefinitionError as error:
        raise RequestError(400, "DefinitionError", str(error)) from None


def orchestration_input(
    request: HandoverRequest, app_flows: FlowBundle, settings: AppSettings
) -> OrchestrationInput:
    """The first generation's input; raises RequestError for missing or bad sub-flows.

    The sub-flows the app ships win: a definition in the request of a flow version the
    app ships is not used (the request may add versions and flows the app does not have;
    ``decode_handover`` made sure the site signed them).
    """
    snapshot = request.snapshot
    try:
        pool = FlowBundle(app_flows.definitions())
        for travelling in request.flows:
            if pool.find(travelling.name, travelling.version) is None:
                pool.add(travelling)
        pool.add(snapshot.definition)
        bundle = pool.reachable_from(snapshot.definition)
        by_id: dict[str, str] = {}
        for child in request.children:
            pool.add(child.definition)
            bundle = bundle.merged(pool.reachable_from(child.definition))
            by_id[child.instance_id] = snapshot_text(child)
    except DefinitionError as error:
        raise RequestError(400, "DefinitionError", str(error)) from None
    except BundleError as error:
        raise RequestError(400, "BundleError", str(error)) from None
    return OrchestrationInput(
        snapshot=snapshot_text(snapshot),
        flows=tuple(bundle.documents()),
        children=by_id,
        options=Options(
            continue_as_new_after=settings.continue_as_new_after,
            checkpoint_every=settings.checkpoint_every,
        ),
    )


async def continue_snapshot(
    req: func.HttpRequest,
    client: DurableClient,
    environ: Mapping[str, str],
    app_flows: Callable[[], FlowBundle],
) -> func.HttpResponse:
    """``POST /api/instances``: verify a snapshot and continue it (idempotently)."""
    try:
        keys = SnapshotKeys.from_env(environ)
        settings = AppSettings.from_env(environ)
        shipped = app_flows()
    except (ValueError, SettingsError, DefinitionError) as error:
        # the app is misconfigured (keys, settings, its own flow files): not the caller's fault
        return json_response(500, {"error": "Configuration", "message": str(error)})
    try:
        request = parse_start_request(req.get_body(), keys)
        payload = orchestration_input(request, shipped, settings)
    except RequestError as error:
        return error_response(error)
    durable_id = durable_instance_id(request.snapshot.instance_id)
    existing = runtime_status(await client.get_status(durable_id))
    if existing in EXISTING:
        return _check_status(client, req, durable_id, started=False)
    try:
        await client.start_new(ORCHESTRATOR, durable_id, payload.to_json())
    except Exception:
        # a concurrent start won the race (the extension refuses to replace a running
        # instance): answer with that one, as a repeated start would
        if runtime_status(await client.get_status(durable_id)) in EXISTING:
            return _check_status(client, req, durable_id, started=False)
        raise
    return _check_status(client, req, durable_id, started=True)


def _check_status(
    client: DurableClient, req: func.HttpRequest, durable_id: str, *, started: bool
) -> func.HttpResponse:
    response = client.create_check_status_response(req, durable_id)
    response.headers["X-RustyFlower-Started"] = "true" if started else "false"
    return response


# --- the other endpoints -------------------------------------------------------------------


def _route_instance(req: func.HttpRequest) -> tuple[str, str]:
    flow_id = req.route_params.get("instance_id", "")
    if not flow_id:
        raise RequestError(400, "BadRequest", "the route names no instance")
    return flow_id, durable_instance_id(flow_id)


async def _status_or_404(client: DurableClient, flow_id: str, durable_id: str) -> Any:
    status = await client.get_status(durable_id)
    if runtime_status(status) is None:
        raise RequestError(404, "NotFound", f"no instance {flow_id!r} runs in this app")
    return status


def describe(flow_id: str, durable_id: str, status: Any) -> dict[str, Any]:
    def moment(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "instance_id": flow_id,
        "durable_instance_id": durable_id,
        "runtime_status": runtime_status(status),
        "custom_status": getattr(status, "custom_status", None),
        "output": getattr(status, "output", None),
        "created_time": moment(getattr(status, "created_time", None)),
        "last_updated_time": moment(getattr(status, "last_updated_time", None)),
    }


async def get_instance(req: func.HttpRequest, client: DurableClient) -> func.HttpResponse:
    """``GET /api/instances/{instance_id}``."""
    try:
        flow_id, durable_id = _route_instance(req)
        status = await _status_or_404(client, flow_id, durable_id)
    except RequestError as error:
        return error_response(error)
    return json_response(200, describe(flow_id, durable_id, status))


async def raise_flow_event(req: func.HttpRequest, client: DurableClient) -> func.HttpResponse:
    """``POST /api/instances/{instance_id}/events/{event_name}`` (JSON body: the data)."""
    try:
        flow_id, durable_id = _route_instance(req)
        event_name = req.route_params.get("event_name", "")
        if not event_name:
            raise RequestError(400, "BadRequest", "the route names no event")
        body = req.get_body()
        try:
            data = json.loads(body) if body.strip() else None
        except (ValueError, UnicodeDecodeError):
            raise RequestError(400, "BadRequest", "the event data is not JSON") from None
        status = await _status_or_404(client, flow_id, durable_id)
        if runtime_status(status) in ENDED:
            raise RequestError(
                410, "Gone", f"instance {flow_id!r} is {runtime_status(status)}; it takes no events"
            )
        try:
            await client.raise_event(durable_id, event_name, data)
        except Exception as error:
            text = str(error)
            if "No instance" in text:
                raise RequestError(404, "NotFound", text) from None
            if "gone" in text:
                raise RequestError(410, "Gone", text) from None
            raise
    except RequestError as error:
        return error_response(error)
    return json_response(
        202, {"instance_id": flow_id, "durable_instance_id": durable_id, "event": event_name}
    )


async def terminate_instance(req: func.HttpRequest, client: DurableClient) -> func.HttpResponse:
    """``POST /api/instances/{instance_id}/terminate[?reason=..][&seq=N]``."""
    try:
        flow_id, durable_id = _route_instance(req)
        status = await _status_or_404(client, flow_id, durable_id)
        state = runtime_status(status)
        if state in ENDED:
            raise RequestError(409, "Conflict", f"instance {flow_id!r} is already {state}")
        wanted = req.params.get("seq")
        if wanted is not None:
            custom = getattr(status, "custom_status", None)
            at = custom.get("seq") if isinstance(custom, dict) else None
            if str(at) != wanted.strip():
                raise RequestError(
                    409,
                    "Conflict",
                    f"instance {flow_id!r} is at seq {at}, not {wanted}: read its "
                    "checkpoint again before terminating",
                )
        reason = req.params.get("reason") or "terminated through the RustyFlower API"
        await client.terminate(durable_id, reason)
        children = await _terminate_children(client, status, reason)
    except RequestError as error:
        return error_response(error)
    return json_response(
        202,
        {
            "instance_id": flow_id,
            "durable_instance_id": durable_id,
            "terminated": True,
            "children_terminated": children,
        },
    )


async def _terminate_children(client: DurableClient, status: Any, reason: str) -> list[str]:
    """Terminate the running child flows a custom status lists, and theirs (Durable does not
    cascade a termination to sub-orchestrations)."""
    custom = getattr(status, "custom_status", None)
    children = custom.get("children") if isinstance(custom, dict) else None
    done: list[str] = []
    for child_id in children or []:
        child = await client.get_status(str(child_id))
        if runtime_status(child) in (None, *ENDED):
            continue
        await client.terminate(str(child_id), f"{reason} (its parent was terminated)")
        done.append(str(child_id))
        done += await _terminate_children(client, child, reason)
    return done


async def signal_instance(request: Any, client: DurableClient) -> dict[str, Any]:
    """The ``rustyflower_signal`` activity: raise an event to another orchestration.

    Used to cancel a child flow its parent no longer waits for. Never raises: a child that
    already ended cannot take the event, which is fine.
    """
    if not isinstance(request, dict):
        return {"ok": False, "error": "the signal request is not an object"}
    try:
        await client.raise_event(
            str(request["instance_id"]), str(request["event"]), request.get("data")
        )
    except Exception as error:  # the target ended or is unknown: nothing left to signal
        return {"ok": False, "error": str(error)}
    return {"ok": True, "error": None}
