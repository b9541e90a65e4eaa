"""What a trigger does with one message: the same decision on every runtime.

A runtime hears a message on a trigger's queue or bus (its id, and its body or event),
asks :func:`trigger_action` what to do, and does it with its own means:

* ``start``: start the flow as instance ``<flow>:<trigger>@<message id>`` with the
  selected input. The id comes from the message, so a message delivered twice (every
  queue delivers at least once) finds its instance there and starts nothing: a runtime
  starts an instance id once (the Redis store's create, Step Functions' execution name,
  Durable Functions' instance id);
* ``signal``: deliver the trigger's event, with the selected data, to the instance
  whose id the message holds; the runtime remembers the message id so that a delivery
  again sends nothing.

An event that does not pass the trigger's ``type`` filter, or a message that does not
say what it must (no instance id), is *ignored* with a reason (the runtime logs it and
acknowledges the message: it will never do better).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from rustyflower.core.errors import PathNotFoundError
from rustyflower.core.expressions import parse_path
from rustyflower.core.ids import instance_id_problem
from rustyflower.core.model import FlowDefinition, Trigger

MessageKind = Literal["queue", "events"]


@dataclass(frozen=True)
class TriggerAction:
    """What to do for one message: ``start`` or ``signal``, or ``ignore`` (``reason``)."""

    kind: Literal["start", "signal", "ignore"]
    flow: str
    instance_id: str = ""
    data: Any = None
    """The flow's input (start) or the event's data (signal)."""
    event: str | None = None
    reason: str = ""


def queue_message(body: str | bytes) -> Any:
    """A queue message as a trigger reads it: its JSON value, else its text."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    try:
        return json.loads(text)
    except ValueError:
        return text


def event_message(type_: str, source: str, detail: Any) -> dict[str, Any]:
    """An event as a trigger reads it."""
    return {"type": type_, "source": source, "detail": detail}


def trigger_instance_id(flow: str, trigger: str, message_id: str) -> str:
    """``<flow>:<trigger>@<message id>`` (a message id no id may hold is hashed)."""
    candidate = f"{flow}:{trigger}@{message_id}"
    if instance_id_problem(candidate) is None:
        return candidate
    digest = hashlib.sha256(message_id.encode("utf-8", errors="surrogatepass")).hexdigest()
    return f"{flow}:{trigger}@{digest[:32]}"


def triggers_of(definitions: list[FlowDefinition]) -> list[tuple[FlowDefinition, Trigger]]:
    """Every (flow, trigger) of the latest versions given (the caller picks the versions)."""
    return [(definition, trigger) for definition in definitions for trigger in definition.triggers]


def trigger_action(flow: str, trigger: Trigger, message_id: str, message: Any) -> TriggerAction:
    """What ``trigger`` of flow ``flow`` does for the message ``message_id``."""
    if trigger.source == "events" and trigger.type is not None:
        found_type = message.get("type") if isinstance(message, dict) else None
        if found_type != trigger.type:
            return TriggerAction("ignore", flow, reason=f"an event of type {found_type!r}")
    try:
        data = parse_path(trigger.input_path).select(message)
    except PathNotFoundError as problem:
        return TriggerAction("ignore", flow, reason=f"input_path: {problem}")
    if trigger.action == "start":
        return TriggerAction(
            "start", flow, trigger_instance_id(flow, trigger.name, message_id), data
        )
    assert trigger.instance_path is not None and trigger.event is not None
    try:
        target = parse_path(trigger.instance_path).select(message)
    except PathNotFoundError as problem:
        return TriggerAction("ignore", flow, reason=f"instance_path: {problem}")
    if not isinstance(target, str) or instance_id_problem(target) is not None:
        return TriggerAction("ignore", flow, reason=f"{target!r} is not an instance id")
    return TriggerAction("signal", flow, target, data, trigger.event)
