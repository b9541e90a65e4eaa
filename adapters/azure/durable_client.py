"""A client for the RustyFlower Function App: continue snapshots in Azure, follow them.

Two sets of HTTP endpoints are used:

- the Function App's own routes (``functions_azure/function_app.py``), authorised by a
  *function key* (``x-functions-key`` header)::

      POST /api/instances                              body: signed snapshot bytes, or
                                                       the signed handover envelope
      GET  /api/instances/{instance_id}
      POST /api/instances/{instance_id}/events/{event_name}   body: JSON event data
      POST /api/instances/{instance_id}/terminate[?reason=..][&seq=N]

- the Durable Functions HTTP management API of the same host, authorised by the
  ``durabletask_extension`` *system key* (``code`` query parameter)::

      GET  /runtime/webhooks/durabletask/instances/{id}
      POST /runtime/webhooks/durabletask/instances/{id}/raiseEvent/{event_name}
      POST /runtime/webhooks/durabletask/instances/{id}/terminate?reason=...

``route="app"`` (the default) sends status, event and terminate requests to the app's
routes, which speak in flow instance ids; ``route="management"`` sends them to the
management API (needs the system key), which speaks in Durable instance ids: a flow id
Durable does not accept (a child flow's ``parent/call``) is mapped by
``durable_instance_id`` (``adapters/azure/ids.py``, which the app uses too). A snapshot is
always continued through the app's starter, which verifies its signature. Keys never
appear in messages or ``repr``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import requests

from rustyflower.adapters.azure._secrets import redact
from rustyflower.adapters.azure.ids import durable_instance_id
from rustyflower.core.errors import RustyFlowerError

__all__ = [
    "FINISHED_STATUSES",
    "DurableClient",
    "FunctionAppAuthError",
    "FunctionAppError",
    "FunctionAppUnavailableError",
    "InstanceConflictError",
    "InstanceGoneError",
    "InstanceNotFoundError",
    "InstanceStatus",
    "SnapshotRejectedError",
    "StartedInstance",
    "WaitTimeoutError",
    "durable_instance_id",
]

MANAGEMENT_PATH = "/runtime/webhooks/durabletask/instances"
APP_PATH = "/api/instances"
FINISHED_STATUSES = frozenset({"Completed", "Failed", "Terminated", "Canceled"})
Route = Literal["app", "management"]


class FunctionAppError(RustyFlowerError):
    """The Function App answered with an error this client cannot work around.

    ``status_code`` is the HTTP status; ``error_name`` the app's own error name (for a
    refused snapshot: the ``SnapshotError`` subclass, e.g. ``SignatureInvalidError``).
    """

    def __init__(
        self, message: str, status_code: int | None = None, error_name: str | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error_name = error_name


class FunctionAppUnavailableError(FunctionAppError):
    """The Function App cannot be reached (DNS, connection refused, time-out)."""


class FunctionAppAuthError(FunctionAppError):
    """The Function App refused the function key or system key (401/403)."""


class InstanceNotFoundError(FunctionAppError, LookupError):
    """No instance has that id in the task hub (404)."""


class InstanceGoneError(FunctionAppError):
    """The instance has finished: it takes no more events and cannot be terminated (410)."""


class InstanceConflictError(FunctionAppError):
    """The app refused the request in the instance's current state (409): already
    finished, or not at the sequence number a safe-point terminate asked for."""


class SnapshotRejectedError(FunctionAppError):
    """The starter refused the snapshot (malformed, unsigned, tampered, wrong key: 400)."""


class WaitTimeoutError(FunctionAppError, TimeoutError):
    """The instance had not finished when ``wait_for_completion`` gave up."""

    def __init__(self, message: str, last: InstanceStatus | None) -> None:
        super().__init__(message)
        self.last = last


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class StartedInstance:
    """The starter's answer: the Durable check-status payload of the instance."""

    instance_id: str
    status_query_get_uri: str | None = field(default=None, repr=False)
    send_event_post_uri: str | None = field(default=None, repr=False)
    terminate_post_uri: str | None = field(default=None, repr=False)
    purge_history_delete_uri: str | None = field(default=None, repr=False)
    http_status: int = 202
    started: bool | None = None
    """True: this call started the orchestration; False: it was already there."""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_payload(
        cls, payload: Mapping[str, Any], http_status: int, started: bool | None = None
    ) -> StartedInstance:
        return cls(
            instance_id=str(payload.get("id") or payload.get("instanceId") or ""),
            status_query_get_uri=_text(payload.get("statusQueryGetUri")),
            send_event_post_uri=_text(payload.get("sendEventPostUri")),
            terminate_post_uri=_text(payload.get("terminatePostUri")),
            purge_history_delete_uri=_text(payload.get("purgeHistoryDeleteUri")),
            http_status=http_status,
            started=started,
            raw=dict(payload),
        )


@dataclass(frozen=True)
class InstanceStatus:
    """An orchestration's status as Durable Functions reports it.

    Read from the app's ``GET /api/instances/{id}`` (snake_case, with the flow id and
    the Durable id) or from the management API (camelCase, Durable id only).
    ``custom_status`` is what the orchestrator shows: flow, status, seq, epoch, positions.
    """

    instance_id: str
    runtime_status: str
    durable_instance_id: str | None = None
    name: str | None = None
    custom_status: Any = None
    output: Any = None
    created_time: str | None = None
    last_updated_time: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def finished(self) -> bool:
        return self.runtime_status in FINISHED_STATUSES

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], instance_id: str) -> InstanceStatus:
        status = payload.get("runtimeStatus", payload.get("runtime_status"))
        if status is None:
            raise FunctionAppError(
                f"status of instance {instance_id!r} has no runtimeStatus: {sorted(payload)[:10]}"
            )
        custom = payload.get("customStatus", payload.get("custom_status"))
        durable_id = payload.get("durable_instance_id") or payload.get("instanceId")
        return cls(
            instance_id=str(payload.get("instance_id") or instance_id),
            runtime_status=str(status),
            durable_instance_id=_text(durable_id),
            name=_text(payload.get("name")),
            custom_status=custom,
            output=payload.get("output"),
            created_time=_text(payload.get("created_time") or payload.get("createdTime")),
            last_updated_time=_text(
                payload.get("last_updated_time") or payload.get("lastUpdatedTime")
            ),
            raw=dict(payload),
        )


class DurableClient:
    """Continue snapshots in the Function App at ``base_url`` and follow the instances.

    ``function_key`` authorises the app's routes (``x-functions-key``); ``system_key``
    (the host's ``durabletask_extension`` key) the management API. ``task_hub`` and
    ``connection`` are passed to the management API when the app's defaults are not
    the ones meant.
    """

    def __init__(
        self,
        base_url: str,
        *,
        function_key: str | None = None,
        system_key: str | None = None,
        route: Route = "app",
        task_hub: str | None = None,
        connection: str | None = None,
        timeout: float = 30.0,
        session: requests.Session | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise FunctionAppError(
                f"{base_url!r} is not a Function App URL (https://<app>.azurewebsites.net)"
            )
        if route == "management" and not system_key:
            raise FunctionAppError(
                "route='management' needs the Durable Functions system key "
                "(az functionapp keys list ... --query systemKeys.durabletask_extension)"
            )
        self.base_url = base_url.rstrip("/")
        self.route: Route = route
        self.task_hub = task_hub
        self.connection = connection
        self.timeout = timeout
        self._function_key = function_key
        self._system_key = system_key
        self._session = session or requests.Session()

    def __repr__(self) -> str:
        return f"DurableClient({self.base_url!r}, route={self.route!r})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> DurableClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- operations --------------------------------------------------------------------

    def continue_snapshot(self, request: bytes) -> StartedInstance:
        """Hand a signed snapshot to the starter; the instance continues in Azure.

        ``request`` is a sealed snapshot, or the handover envelope
        (``core.snapshot.handover.encode_handover``) that adds the sub-flow definitions
        it may start and its child flows in flight, signed by the site. Idempotent per
        instance id: when the orchestration is already there the starter answers with it
        (``started`` is then False).
        """
        body = bytes(request)
        response = self._request(
            "POST",
            APP_PATH,
            "continuing a snapshot",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        if response.status_code in {400, 422}:
            raise SnapshotRejectedError(
                f"the Function App refused the snapshot: {self._detail(response)}",
                response.status_code,
                self._error_name(response),
            )
        self._check(response, "continuing a snapshot")
        header = response.headers.get("X-RustyFlower-Started", "").strip().lower()
        started = StartedInstance.from_payload(
            self._json(response),
            response.status_code,
            {"true": True, "false": False}.get(header),
        )
        if not started.instance_id:
            raise FunctionAppError(
                "the starter's answer names no instance id", response.status_code
            )
        return started

    def status(self, instance_id: str) -> InstanceStatus:
        """The instance's Durable status (``runtime_status``, ``custom_status``, ``output``)."""
        doing = f"reading the status of instance {instance_id!r}"
        if self.route == "management":
            response = self._request(
                "GET",
                f"{MANAGEMENT_PATH}/{_segment(durable_instance_id(instance_id))}",
                doing,
                management=True,
                params={"showInput": "false"},
            )
        else:
            response = self._request("GET", f"{APP_PATH}/{_segment(instance_id)}", doing)
        # The management API answers 400/500 with a status body for failed/terminated
        # instances: a body with a runtimeStatus is a status, whatever the HTTP code.
        payload = self._json_or_none(response)
        if (
            response.status_code not in (401, 403, 404)
            and isinstance(payload, dict)
            and ("runtimeStatus" in payload or "runtime_status" in payload)
        ):
            return InstanceStatus.from_payload(payload, instance_id)
        self._check(response, doing, instance_id)
        raise FunctionAppError(
            f"{doing}: the answer is not an instance status: {self._detail(response)}",
            response.status_code,
        )

    def raise_event(self, instance_id: str, name: str, data: Any = None) -> None:
        """Deliver event ``name`` with JSON ``data`` to the instance (WaitForEvent states)."""
        doing = f"raising event {name!r} on instance {instance_id!r}"
        body = json.dumps(data).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.route == "management":
            durable_id = _segment(durable_instance_id(instance_id))
            path = f"{MANAGEMENT_PATH}/{durable_id}/raiseEvent/{_segment(name)}"
            response = self._request(
                "POST", path, doing, management=True, data=body, headers=headers
            )
        else:
            path = f"{APP_PATH}/{_segment(instance_id)}/events/{_segment(name)}"
            response = self._request("POST", path, doing, data=body, headers=headers)
        self._check(response, doing, instance_id)

    def terminate(self, instance_id: str, reason: str = "", *, seq: int | None = None) -> None:
        """Stop the instance where it stands (its history stays in the task hub).

        With ``seq`` (app route only) the app terminates only while the instance is still
        at that sequence number, the safe point of a failback: otherwise
        ``InstanceConflictError``, and the checkpoint should be read again.
        """
        doing = f"terminating instance {instance_id!r}"
        params = {"reason": reason} if reason else {}
        if self.route == "management":
            if seq is not None:
                raise FunctionAppError(
                    "a safe-point terminate (seq=...) needs the app route: the management "
                    "API does not know RustyFlower sequence numbers"
                )
            path = f"{MANAGEMENT_PATH}/{_segment(durable_instance_id(instance_id))}/terminate"
            response = self._request("POST", path, doing, management=True, params=params)
        else:
            if seq is not None:
                params["seq"] = str(seq)
            path = f"{APP_PATH}/{_segment(instance_id)}/terminate"
            response = self._request("POST", path, doing, params=params)
        self._check(response, doing, instance_id)

    def wait_for_completion(
        self,
        instance_id: str,
        timeout: float = 300.0,
        poll_interval: float = 1.0,
        *,
        max_interval: float = 15.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> InstanceStatus:
        """Poll ``status`` until the instance is finished; ``WaitTimeoutError`` after ``timeout``.

        The interval grows by half each poll up to ``max_interval``. A 404 right after a
        start is tolerated until the deadline (the host may not have created it yet).
        """
        deadline = clock() + timeout
        interval = poll_interval
        last: InstanceStatus | None = None
        while True:
            try:
                last = self.status(instance_id)
                if last.finished:
                    return last
            except InstanceNotFoundError:
                if clock() >= deadline:
                    raise
            remaining = deadline - clock()
            if remaining <= 0:
                where = "not found" if last is None else f"still {last.runtime_status}"
                raise WaitTimeoutError(f"instance {instance_id!r} {where} after {timeout:g}s", last)
            sleep(min(interval, remaining))
            interval = min(interval * 1.5, max_interval)

    # --- HTTP --------------------------------------------------------------------------

    def _secrets(self) -> list[str]:
        return [key for key in (self._function_key, self._system_key) if key]

    def _request(
        self,
        method: str,
        path: str,
        doing: str,
        *,
        management: bool = False,
        params: Mapping[str, str] | None = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        query: dict[str, str] = dict(params or {})
        sent_headers: dict[str, str] = {"Accept": "application/json", **(headers or {})}
        if management:
            if self.task_hub:
                query["taskHub"] = self.task_hub
            if self.connection:
                query["connection"] = self.connection
            if self._system_key:
                query["code"] = self._system_key
        elif self._function_key:
            sent_headers["x-functions-key"] = self._function_key
        try:
            return self._session.request(
                method,
                self.base_url + path,
                params=query,
                data=data,
                headers=sent_headers,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.Timeout as error:
            raise FunctionAppUnavailableError(
                f"the Function App at {self.base_url} did not answer in {self.timeout:g}s "
                f"while {doing}: {redact(str(error), self._secrets())}"
            ) from None
        except requests.RequestException as error:
            raise FunctionAppUnavailableError(
                f"cannot reach the Function App at {self.base_url} while {doing}: "
                f"{redact(str(error), self._secrets())}"
            ) from None

    def _check(
        self, response: requests.Response, doing: str, instance_id: str | None = None
    ) -> None:
        code = response.status_code
        if code < 300:
            return
        detail = self._detail(response)
        if code in (401, 403):
            which = "system key" if "/runtime/webhooks/" in (response.url or "") else "function key"
            raise FunctionAppAuthError(
                f"the Function App at {self.base_url} refused the {which} ({code}) while {doing}",
                code,
            )
        if code == 404 and instance_id is not None:
            raise InstanceNotFoundError(
                f"no instance {instance_id!r} in the Function App at {self.base_url}", code
            )
        name = self._error_name(response)
        if code == 410:
            raise InstanceGoneError(
                f"instance {instance_id!r} has finished: {doing} is no longer possible ({detail})",
                code,
                name,
            )
        if code == 409:
            raise InstanceConflictError(f"{doing} refused: {detail}", code, name)
        if code in (502, 503, 504):
            raise FunctionAppUnavailableError(
                f"the Function App at {self.base_url} is unavailable ({code}) while {doing}: "
                f"{detail}",
                code,
            )
        raise FunctionAppError(f"{doing} failed with HTTP {code}: {detail}", code, name)

    def _json_or_none(self, response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            return None

    def _json(self, response: requests.Response) -> dict[str, Any]:
        payload = self._json_or_none(response)
        if not isinstance(payload, dict):
            raise FunctionAppError(
                f"expected a JSON object from {self.base_url}, got: {self._detail(response)}",
                response.status_code,
            )
        return payload

    def _error_name(self, response: requests.Response) -> str | None:
        payload = self._json_or_none(response)
        if isinstance(payload, dict) and isinstance(payload.get("error"), str):
            return str(payload["error"])
        return None

    def _detail(self, response: requests.Response) -> str:
        """The app's ``{"error": name, "message": text}`` (or whatever it sent), redacted."""
        payload = self._json_or_none(response)
        if isinstance(payload, dict):
            message = next(
                (payload[key] for key in ("message", "Message", "detail") if payload.get(key)),
                None,
            )
            error = payload.get("error")
            if message and error:
                text = f"{error}: {message}"
            elif message or error:
                text = str(message or error)
            else:
                text = json.dumps(payload)[:300]
        else:
            text = (response.text or response.reason or "").strip()[:300]
        return redact(str(text), self._secrets()) or f"HTTP {response.status_code}"


def _segment(value: str) -> str:
    """One URL path segment: ``/`` and every other reserved character escaped."""
    return quote(value, safe="")
