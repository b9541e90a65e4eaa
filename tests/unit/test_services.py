"""The built-in service tasks in the model and the engine (core.services, core.contract)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from rustyflower.core.activities import ActivityRegistry, perform
from rustyflower.core.contract import SERVICE_KINDS, ServiceError, service_activity, service_kind
from rustyflower.core.engine import ActivityFailed, RunActivity, start
from rustyflower.core.errors import DefinitionError
from rustyflower.core.model import parse_definition
from rustyflower.core.services import (
    FAILURES,
    HttpCall,
    ServiceInvalidRequest,
    failure_for_status,
    read_request,
)
from rustyflower.core.services.calls import HttpResponse, with_services

NOW = datetime(2024, 1, 1, tzinfo=UTC)


def flow(task: dict[str, Any]) -> dict[str, Any]:
    return {"name": "f", "start_at": "A", "states": {"A": {"type": "task", "end": True, **task}}}


def problems(task: dict[str, Any]) -> list[str]:
    with pytest.raises(DefinitionError) as raised:
        parse_definition(flow(task))
    return [problem.message for problem in raised.value.problems]


def test_a_service_task_is_issued_under_its_reserved_activity_name() -> None:
    definition = parse_definition(
        flow({"service": "queue.send", "parameters": {"queue": "orders", "message.$": "$"}})
    )
    transition = start(definition, {"a": 1}, "i-1", NOW)
    (command,) = [c for c in transition.commands if isinstance(c, RunActivity)]
    assert command.activity == "service:queue.send" == service_activity("queue.send")
    assert command.input == {"queue": "orders", "message": {"a": 1}}
    assert service_kind(command.activity) == "queue.send"
    assert service_kind("charge_card") is None
    assert ActivityRegistry().missing(definition) == []


@pytest.mark.parametrize(
    ("task", "fragment"),
    [
        ({}, "activity: is required (or service"),
        ({"activity": "a", "service": "object.get"}, "not both"),
        ({"service": "object.get"}, "needs parameters"),
        ({"service": "queue.send", "parameters": {"queue": "orders"}}, "message is required"),
        (
            {"service": "queue.send", "parameters": {"queue": "Orders!", "message": 1}},
            "is not a resource name",
        ),
        (
            {"service": "queue.send", "parameters": {"queue.$": "$.q", "message": 1}},
            "queue is fixed in the definition",
        ),
        (
            {"service": "object.get", "parameters": {"store": "s3s", "key": "../up"}},
            "must be relative",
        ),
        (
            {"service": "object.get", "parameters": {"store": "abc", "key": "k", "format": "x"}},
            "'x' is not one of json, text",
        ),
        (
            {"service": "http.call", "parameters": {"method": "GET", "url": "ftp://x"}},
            "not an http:// or https:// address",
        ),
        (
            {"service": "http.call", "parameters": {"method": "GET", "url": "http://x", "b": 1}},
            "b is not a field of http.call",
        ),
        ({"activity": "service:queue.send"}, "reserved"),
    ],
)
def test_the_definition_refuses_what_no_runtime_could_bind(
    task: dict[str, Any], fragment: str
) -> None:
    found = problems(task)
    assert any(fragment in message for message in found), found


def test_no_activity_may_take_a_reserved_name() -> None:
    registry = ActivityRegistry()
    with pytest.raises(ValueError, match="reserved"):
        registry.register(lambda payload: payload, name="service:queue.send")


@pytest.mark.parametrize(
    ("kind", "value", "fragment"),
    [
        ("queue.send", [], "is an object"),
        ("queue.send", {"queue": "orders"}, "missing message"),
        ("queue.send", {"queue": "orders", "message": "x" * 50_000}, "larger than"),
        ("event.publish", {"bus": "b-1", "type": "t", "detail": [1]}, "detail is an object"),
        ("object.put", {"store": "abc", "key": "", "body": 1}, "non-empty text"),
        ("object.put", {"store": "abc", "key": "a//b", "body": 1}, "must be relative"),
        ("object.put", {"store": "abc", "key": "k", "body": 1, "format": "text"}, "text body"),
        ("http.call", {"method": "BREW", "url": "http://x"}, "is not one of"),
        ("http.call", {"method": "GET", "url": "http://x", "headers": {"a": 1}}, "of text"),
    ],
)
def test_a_request_the_data_makes_invalid_is_service_invalid_request(
    kind: str, value: Any, fragment: str
) -> None:
    with pytest.raises(ServiceInvalidRequest, match=fragment):
        read_request(kind, value)


def test_failures_are_named_after_the_portable_errors() -> None:
    assert {failure.__name__ for failure in FAILURES} == {
        ServiceError.NOT_FOUND,
        ServiceError.ACCESS_DENIED,
        ServiceError.THROTTLED,
        ServiceError.UNAVAILABLE,
        ServiceError.INVALID_REQUEST,
        ServiceError.FAILED,
    }
    assert [failure_for_status(s).__name__ for s in (404, 410, 401, 403, 429, 500, 503, 400)] == [
        "ServiceNotFound",
        "ServiceNotFound",
        "ServiceAccessDenied",
        "ServiceAccessDenied",
        "ServiceThrottled",
        "ServiceUnavailable",
        "ServiceUnavailable",
        "ServiceInvalidRequest",
    ]


class Answering:
    """Backends that answer every HTTP request with one response (nothing else is used)."""

    def __init__(self, response: HttpResponse) -> None:
        self.response = response
        self.requests: list[HttpCall] = []

    def http(self, request: HttpCall) -> HttpResponse:
        self.requests.append(request)
        return self.response

    def send_message(self, request: Any, key: str) -> str:
        raise RuntimeError("the disk is on fire")

    publish_event = put_object = send_message

    def get_object(self, request: Any) -> bytes:
        raise AssertionError("not used")


def call(registry: ActivityRegistry, kind: str, payload: Any) -> Any:
    command = RunActivity("A~1", service_activity(kind), payload, "A", 1, "i:A:1:1")
    return perform(registry, "i", command)


def test_an_http_error_status_fails_the_call_with_its_portable_name() -> None:
    backends = Answering(HttpResponse(503, b"busy", {"Content-Type": "text/plain"}))
    registry = with_services(ActivityRegistry(), backends)
    answer = call(registry, "http.call", {"method": "GET", "url": "http://h/x"})
    assert isinstance(answer, ActivityFailed)
    assert answer.error == "ServiceUnavailable"
    assert "HTTP 503: busy" in (answer.cause or "")


def test_a_json_answer_is_parsed_and_the_status_kept() -> None:
    backends = Answering(HttpResponse(201, b'{"ok": true}', {"content-type": "application/json"}))
    registry = with_services(ActivityRegistry(), backends)
    answer = call(registry, "http.call", {"method": "POST", "url": "http://h", "body": [1]})
    assert answer.output == {"status": 201, "body": {"ok": True}}
    assert backends.requests[0].body_bytes == b"[1]"


def test_any_other_backend_failure_is_service_failed() -> None:
    registry = with_services(ActivityRegistry(), Answering(HttpResponse(200)))
    answer = call(registry, "queue.send", {"queue": "orders", "message": 1})
    assert isinstance(answer, ActivityFailed)
    assert (answer.error, answer.cause) == ("ServiceFailed", "RuntimeError: the disk is on fire")


def test_every_kind_has_a_service_function() -> None:
    registry = with_services(ActivityRegistry(), Answering(HttpResponse(200)))
    assert set(registry.names()) == {service_activity(kind) for kind in SERVICE_KINDS}
