"""The built-in service tasks' kinds, and how a runtime recognises their calls.

A ``task`` state names either an ``activity`` (a registered function) or a ``service``
(one of :data:`SERVICE_KINDS`), which every runtime carries out natively. The engine
issues a service call as a ``RunActivity`` like any other, under the reserved activity
name ``service:<kind>`` (:func:`service_activity`), so retries, timeouts, catches,
snapshots and failovers treat both alike; a runtime tells them apart with
:func:`service_kind`. No registered activity may take a reserved name.
"""

from __future__ import annotations

from typing import Final, Literal

SERVICE_PREFIX: Final = "service:"
"""Activity names starting with this are the built-in services' (reserved)."""


class ServiceKind:
    """The built-in service tasks."""

    QUEUE_SEND: Final = "queue.send"
    EVENT_PUBLISH: Final = "event.publish"
    OBJECT_PUT: Final = "object.put"
    OBJECT_GET: Final = "object.get"
    HTTP_CALL: Final = "http.call"


ServiceName = Literal["queue.send", "event.publish", "object.put", "object.get", "http.call"]
"""The type of a task state's ``service`` field."""

SERVICE_KINDS: Final = (
    ServiceKind.QUEUE_SEND,
    ServiceKind.EVENT_PUBLISH,
    ServiceKind.OBJECT_PUT,
    ServiceKind.OBJECT_GET,
    ServiceKind.HTTP_CALL,
)


def service_activity(kind: str) -> str:
    """The activity name a call of service ``kind`` is issued under."""
    if kind not in SERVICE_KINDS:
        raise ValueError(f"{kind!r} is not a service kind ({', '.join(SERVICE_KINDS)})")
    return SERVICE_PREFIX + kind


def service_kind(activity: str) -> str | None:
    """The service kind of an activity name, or None for a registered activity's name."""
    if not activity.startswith(SERVICE_PREFIX):
        return None
    kind = activity[len(SERVICE_PREFIX) :]
    return kind if kind in SERVICE_KINDS else None


def is_reserved_activity(name: str) -> bool:
    """Whether ``name`` is reserved for the built-in services (no activity may take it)."""
    return name.startswith(SERVICE_PREFIX)
