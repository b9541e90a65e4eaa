"""Carrying out service calls: one meaning, each runtime's backends underneath.

A runtime that runs service calls as activities (on-premises, Azure, and the AWS
activity Lambda for ``http.call`` without a connection) gives :func:`with_services` its
:class:`ServiceBackends`; the service functions read the request, call the backend and
shape the portable result, so the result and the error names are the same everywhere:

============== ================================================
``queue.send``  ``{"message_id": <the platform's id>}``
``event.publish`` ``{"event_id": <the platform's id>}``
``object.put``  ``{"etag": <the store's entity tag>}``
``object.get``  the object: its JSON value, or its text
``http.call``   ``{"status": <code>, "body": <JSON value or text>}``; a status of 400 or
                more fails with the error of :func:`failure_for_status`
============== ================================================

Backends raise the :mod:`~.failures` exceptions for what goes wrong (their class names are
the portable error names); anything else a backend raises fails the call with
``ServiceFailed``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from rustyflower.core.activities import ActivityRegistry, current_call
from rustyflower.core.contract import SERVICE_KINDS, ServiceKind, service_activity
from rustyflower.core.services.failures import ServiceFailed, ServiceFailure, failure_for_status
from rustyflower.core.services.requests import (
    EventPublish,
    HttpCall,
    ObjectGet,
    ObjectPut,
    QueueSend,
    read_request,
)

MAX_CAUSE_BODY = 500


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    def content(self) -> Any:
        """The body as the task's result: parsed JSON when the response says it is JSON."""
        text = self.body.decode("utf-8", errors="replace")
        content_type = next(
            (value for name, value in self.headers.items() if name.lower() == "content-type"),
            "",
        )
        media = content_type.split(";")[0].strip().lower()
        if media == "application/json" or media.endswith("+json"):
            try:
                return json.loads(text) if text.strip() else None
            except ValueError:
                return text
        return text


class ServiceBackends(Protocol):
    """What a runtime provides to carry out service calls (each may raise a failure).

    ``key`` is the call's idempotency key (the same for a call run again after a
    failover): a backend that can, sends or stores only once per key.
    """

    def send_message(self, request: QueueSend, key: str) -> str:
        """Send ``request.body`` to the queue; the message id."""
        ...

    def publish_event(self, request: EventPublish, key: str) -> str:
        """Publish the event on the bus; the event id."""
        ...

    def put_object(self, request: ObjectPut, key: str) -> str:
        """Store ``request.data`` under ``request.key``; the entity tag."""
        ...

    def get_object(self, request: ObjectGet) -> bytes:
        """The stored bytes (ServiceNotFound when there are none)."""
        ...

    def http(self, request: HttpCall) -> HttpResponse:
        """Make the request (a response of any status is an answer, not a failure)."""
        ...


ServiceFunction = Callable[[Any], Any]


def service_functions(backends: ServiceBackends) -> dict[str, ServiceFunction]:
    """One function per service kind, by the activity name its calls are issued under."""

    def key() -> str:
        try:
            return current_call().idempotency_key
        except RuntimeError:  # called outside a runtime (a direct call in a test)
            return ""

    def guarded(function: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def call(payload: Any) -> Any:
            try:
                return function(payload)
            except ServiceFailure:
                raise
            except Exception as error:  # a backend's own failure: portable, with its text
                raise ServiceFailed(f"{type(error).__name__}: {error}") from error

        call.__name__ = getattr(function, "__name__", "service")
        return call

    def send(payload: Any) -> Any:
        request = read_request(ServiceKind.QUEUE_SEND, payload)
        assert isinstance(request, QueueSend)
        return {"message_id": backends.send_message(request, key())}

    def publish(payload: Any) -> Any:
        request = read_request(ServiceKind.EVENT_PUBLISH, payload)
        assert isinstance(request, EventPublish)
        return {"event_id": backends.publish_event(request, key())}

    def put(payload: Any) -> Any:
        request = read_request(ServiceKind.OBJECT_PUT, payload)
        assert isinstance(request, ObjectPut)
        return {"etag": backends.put_object(request, key())}

    def get(payload: Any) -> Any:
        request = read_request(ServiceKind.OBJECT_GET, payload)
        assert isinstance(request, ObjectGet)
        return request.content(backends.get_object(request))

    def call_http(payload: Any) -> Any:
        request = read_request(ServiceKind.HTTP_CALL, payload)
        assert isinstance(request, HttpCall)
        response = backends.http(request)
        if response.status >= 400:
            text = response.body[:MAX_CAUSE_BODY].decode("utf-8", errors="replace")
            raise failure_for_status(response.status)(
                f"{request.method} {request.url} answered HTTP {response.status}: {text}"
            )
        return {"status": response.status, "body": response.content()}

    functions = {
        ServiceKind.QUEUE_SEND: send,
        ServiceKind.EVENT_PUBLISH: publish,
        ServiceKind.OBJECT_PUT: put,
        ServiceKind.OBJECT_GET: get,
        ServiceKind.HTTP_CALL: call_http,
    }
    assert set(functions) == set(SERVICE_KINDS)
    return {service_activity(kind): guarded(function) for kind, function in functions.items()}


def with_services(registry: ActivityRegistry, backends: ServiceBackends) -> ActivityRegistry:
    """A registry with ``registry``'s activities and the service calls on ``backends``."""
    combined = registry.copy()
    for name, function in service_functions(backends).items():
        combined.register_builtin(name, function)
    return combined
