"""What each service task asks for: its fields, checked in the definition and at run time.

A service task's ``parameters`` build its request, as they build an activity's input.
Names of resources (``queue``, ``bus``, ``store``) and the ``format`` and ``method`` are
fixed in the definition (:func:`parameter_problems` checks them with the flow), so each
runtime can bind them to its own resources before the flow runs; the other fields may
come from the data (``key.$: $.order_id``) and are checked when the call is made
(:func:`read_request`, raising :class:`ServiceInvalidRequest`).

============== ==================================================================
``queue.send``  ``queue``, ``message`` (any JSON value)
``event.publish`` ``bus``, ``type`` (text), ``detail`` (an object), ``source`` (text,
                default ``rustyflower``)
``object.put``  ``store``, ``key``, ``body``, ``format`` (``json``, default, or ``text``)
``object.get``  ``store``, ``key``, ``format``
``http.call``   ``method``, ``url``, ``headers`` and ``query`` (objects of text),
                ``body`` (any JSON value, sent as JSON)
============== ==================================================================
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from rustyflower.core.contract import ServiceKind
from rustyflower.core.services.failures import ServiceInvalidRequest

RESOURCE_NAME: Final = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){1,61}[a-z0-9]$")
"""A queue's, bus's or store's name: 3 to 63 lower-case letters, digits and single
hyphens, starting and ending with a letter or digit. Within these rules every platform
takes the name as it is (an Azure queue or container, an S3 bucket, an SQS queue, an
EventBridge bus, a Redis key, a folder), so the default bindings need no renaming."""
MAX_KEY_LENGTH: Final = 1024
MAX_MESSAGE_BYTES: Final = 48 * 1024
"""A queue message's JSON text at most: an Azure Storage Queue message holds 64 KiB once
base64-encoded (SQS takes 256 KiB; the smallest platform sets the portable limit)."""
MAX_DETAIL_BYTES: Final = 256 * 1024
HTTP_METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
FORMATS: Final = ("json", "text")
DEFAULT_SOURCE: Final = "rustyflower"

_FIELDS: Final[Mapping[str, tuple[frozenset[str], frozenset[str]]]] = {
    # kind: (required fields, optional fields)
    ServiceKind.QUEUE_SEND: (frozenset({"queue", "message"}), frozenset()),
    ServiceKind.EVENT_PUBLISH: (frozenset({"bus", "type", "detail"}), frozenset({"source"})),
    ServiceKind.OBJECT_PUT: (frozenset({"store", "key", "body"}), frozenset({"format"})),
    ServiceKind.OBJECT_GET: (frozenset({"store", "key"}), frozenset({"format"})),
    ServiceKind.HTTP_CALL: (
        frozenset({"method", "url"}),
        frozenset({"headers", "query", "body"}),
    ),
}
_FIXED: Final = frozenset({"queue", "bus", "store", "format", "method"})
"""Fields the definition must fix (no ``.$``): each runtime binds them before it runs."""
RESOURCE_FIELD: Final[Mapping[str, str]] = {
    ServiceKind.QUEUE_SEND: "queue",
    ServiceKind.EVENT_PUBLISH: "bus",
    ServiceKind.OBJECT_PUT: "store",
    ServiceKind.OBJECT_GET: "store",
}
"""The field naming the resource a kind works on (``http.call`` names none)."""


# --- the requests ------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueSend:
    queue: str
    message: Any

    @property
    def body(self) -> str:
        """The message as it travels: the JSON text of ``message`` (compact)."""
        return json_text(self.message)


@dataclass(frozen=True)
class EventPublish:
    bus: str
    type: str
    detail: dict[str, Any]
    source: str = DEFAULT_SOURCE

    @property
    def detail_text(self) -> str:
        return json_text(self.detail)


@dataclass(frozen=True)
class ObjectPut:
    store: str
    key: str
    body: Any
    format: str = "json"

    @property
    def data(self) -> bytes:
        """The object's bytes: the JSON text of ``body``, or ``body`` itself as text."""
        text = self.body if self.format == "text" else json_text(self.body)
        return str(text).encode("utf-8")

    @property
    def content_type(self) -> str:
        return "text/plain; charset=utf-8" if self.format == "text" else "application/json"


@dataclass(frozen=True)
class ObjectGet:
    store: str
    key: str
    format: str = "json"

    def content(self, data: bytes) -> Any:
        """The object's bytes as the task's result: parsed JSON, or the text."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ServiceInvalidRequest(
                f"object {self.key!r} of store {self.store!r} is not UTF-8 text"
            ) from None
        if self.format == "text":
            return text
        try:
            return json.loads(text)
        except ValueError:
            raise ServiceInvalidRequest(
                f"object {self.key!r} of store {self.store!r} is not JSON (read it with "
                "format: text)"
            ) from None


@dataclass(frozen=True)
class HttpCall:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    body: Any = None
    has_body: bool = False

    @property
    def body_bytes(self) -> bytes | None:
        return json_text(self.body).encode("utf-8") if self.has_body else None


Request = QueueSend | EventPublish | ObjectPut | ObjectGet | HttpCall


def json_text(value: Any) -> str:
    """Compact JSON text, as Step Functions' ``States.JsonToString`` writes it."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ServiceInvalidRequest(f"not a JSON value: {error}") from None


def read_request(kind: str, value: Any) -> Request:
    """The request of a ``kind`` call from its input; ServiceInvalidRequest when it is not one."""
    if kind not in _FIELDS:
        raise ServiceInvalidRequest(f"unknown service {kind!r}")
    if not isinstance(value, Mapping):
        raise ServiceInvalidRequest(
            f"a {kind} request is an object (its parameters), not {type(value).__name__}"
        )
    required, optional = _FIELDS[kind]
    missing = sorted(required - value.keys())
    unknown = sorted(value.keys() - required - optional)
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown {', '.join(unknown)}")
        raise ServiceInvalidRequest(f"{kind} request: {'; '.join(parts)}")
    if kind == ServiceKind.QUEUE_SEND:
        send = QueueSend(_resource(value, "queue"), value["message"])
        if len(send.body.encode("utf-8")) > MAX_MESSAGE_BYTES:
            raise ServiceInvalidRequest(
                f"the message to queue {send.queue!r} is larger than {MAX_MESSAGE_BYTES} bytes"
            )
        return send
    if kind == ServiceKind.EVENT_PUBLISH:
        detail = value["detail"]
        if not isinstance(detail, dict):
            raise ServiceInvalidRequest(
                f"an event's detail is an object, not {type(detail).__name__}"
            )
        event = EventPublish(
            _resource(value, "bus"),
            _text(value, "type", 256),
            detail,
            _text(value, "source", 256) if "source" in value else DEFAULT_SOURCE,
        )
        if len(event.detail_text.encode("utf-8")) > MAX_DETAIL_BYTES:
            raise ServiceInvalidRequest(f"the event's detail is larger than {MAX_DETAIL_BYTES}")
        return event
    if kind == ServiceKind.OBJECT_PUT:
        put = ObjectPut(
            _resource(value, "store"), object_key(value["key"]), value["body"], _format(value)
        )
        if put.format == "text" and not isinstance(put.body, str):
            raise ServiceInvalidRequest(
                f"format text stores a text body, not {type(put.body).__name__}"
            )
        return put
    if kind == ServiceKind.OBJECT_GET:
        return ObjectGet(_resource(value, "store"), object_key(value["key"]), _format(value))
    return _http_call(value)


def _http_call(value: Mapping[str, Any]) -> HttpCall:
    method = value["method"]
    if method not in HTTP_METHODS:
        raise ServiceInvalidRequest(f"method {method!r} is not one of {', '.join(HTTP_METHODS)}")
    url = value["url"]
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ServiceInvalidRequest(f"url {url!r} is not an http:// or https:// address")
    return HttpCall(
        method,
        url,
        _text_map(value, "headers"),
        _text_map(value, "query"),
        value.get("body"),
        "body" in value,
    )


def object_key(key: Any) -> str:
    """A key every store takes the same way: relative, no ``.``/``..`` parts, no ``\\``."""
    if not isinstance(key, str) or not key:
        raise ServiceInvalidRequest(f"an object key is non-empty text, not {key!r}")
    if len(key) > MAX_KEY_LENGTH:
        raise ServiceInvalidRequest(f"an object key has at most {MAX_KEY_LENGTH} characters")
    parts = key.split("/")
    if (
        key.startswith("/")
        or "\\" in key
        or any(part in ("", ".", "..") for part in parts)
        or any(ord(char) < 32 or ord(char) == 127 for char in key)
    ):
        raise ServiceInvalidRequest(
            f"object key {key!r} must be relative, without empty, '.' or '..' parts, "
            "backslashes or control characters"
        )
    return key


def _resource(value: Mapping[str, Any], name: str) -> str:
    found = value[name]
    if not isinstance(found, str) or not RESOURCE_NAME.match(found):
        raise ServiceInvalidRequest(f"{name} {found!r} is not a resource name")
    return found


def _text(value: Mapping[str, Any], name: str, limit: int) -> str:
    found = value[name]
    if not isinstance(found, str) or not found or len(found) > limit:
        raise ServiceInvalidRequest(f"{name} is text of 1 to {limit} characters, not {found!r}")
    return found


def _format(value: Mapping[str, Any]) -> str:
    found = value.get("format", "json")
    if found not in FORMATS:
        raise ServiceInvalidRequest(f"format {found!r} is not one of {', '.join(FORMATS)}")
    return str(found)


def _text_map(value: Mapping[str, Any], name: str) -> dict[str, str]:
    found = value.get(name, {})
    if not isinstance(found, dict) or not all(
        isinstance(key, str) and isinstance(item, str) for key, item in found.items()
    ):
        raise ServiceInvalidRequest(f"{name} is an object of text values")
    return dict(found)


# --- the definition -----------------------------------------------------------------------------


def parameter_problems(kind: str, parameters: Mapping[str, Any] | None) -> list[str]:
    """What is wrong with a service task's ``parameters`` before it ever runs (empty: nothing).

    Every required field is given (as itself or as ``field.$``), none is unknown, and the
    fields a runtime binds ahead of time (resource names, ``format``, ``method``) are fixed
    values that are valid here.
    """
    if kind not in _FIELDS:
        return [f"unknown service {kind!r}"]
    if parameters is None:
        listed = ", ".join(sorted(_FIELDS[kind][0]))
        return [f"a {kind} task needs parameters ({listed})"]
    required, optional = _FIELDS[kind]
    given = {key.removesuffix(".$"): key for key in parameters}
    problems = [f"parameters: {name} is required" for name in sorted(required - given.keys())]
    problems += [
        f"parameters: {name} is not a field of {kind} "
        f"(fields: {', '.join(sorted(required | optional))})"
        for name in sorted(given.keys() - required - optional)
    ]
    for name, key in sorted(given.items()):
        if name in _FIXED and key.endswith(".$"):
            problems.append(
                f"parameters: {name} is fixed in the definition (each runtime binds it "
                "before the flow runs), not read from the data"
            )
            continue
        value = parameters[key]
        if key.endswith(".$"):
            continue
        problem = _static_problem(name, value)
        if problem:
            problems.append(f"parameters: {name}: {problem}")
    return problems


def _static_problem(name: str, value: Any) -> str | None:
    if name in ("queue", "bus", "store"):
        if not isinstance(value, str) or not RESOURCE_NAME.match(value):
            return (
                f"{value!r} is not a resource name (3-63 lower-case letters, digits and "
                "single hyphens, starting and ending with a letter or digit)"
            )
    elif name == "format" and value not in FORMATS:
        return f"{value!r} is not one of {', '.join(FORMATS)}"
    elif name == "method" and value not in HTTP_METHODS:
        return f"{value!r} is not one of {', '.join(HTTP_METHODS)}"
    elif name == "url" and (
        not isinstance(value, str) or not value.startswith(("http://", "https://"))
    ):
        return f"{value!r} is not an http:// or https:// address"
    elif name == "key":
        try:
            object_key(value)
        except ServiceInvalidRequest as problem:
            return str(problem)
    elif name in ("type", "source") and (not isinstance(value, str) or not value):
        return "is non-empty text"
    elif name == "detail" and not isinstance(value, dict):
        return "is an object"
    return None


def resource_of(kind: str, parameters: Mapping[str, Any] | None) -> str | None:
    """The resource name a service task works on (None for ``http.call``)."""
    name = RESOURCE_FIELD.get(kind)
    if name is None or parameters is None:
        return None
    value = parameters.get(name)
    return value if isinstance(value, str) else None
