"""The activity function: one RunActivity command, carried out by ``core.activities.perform``.

Its input is the command (with the instance id); its output is the engine event,
``ActivityCompleted`` or ``ActivityFailed``, as JSON. An activity's exception is data (its
class name is the error name retry and catch policies see), so it is never raised to
Durable: Durable's own retries are not used, the engine decides them.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from functions_azure import telemetry
from rustyflower.adapters.azure.services import AzureBackends, AzureServiceSettings
from rustyflower.adapters.services.http import UrllibHttp
from rustyflower.core.activities import ActivityRegistry, load_registry, perform
from rustyflower.core.contract import ReservedError
from rustyflower.core.engine import COMMAND_ADAPTER, EVENT_ADAPTER, ActivityFailed, RunActivity
from rustyflower.core.services.calls import with_services

BAD_REQUEST = ReservedError.RUNTIME


@cache
def registry_for(spec: str) -> ActivityRegistry:
    """``load_registry`` with the service tasks on the app's Azure resources (the app
    settings of adapters/azure/services.py), once per process."""
    backends = AzureBackends(AzureServiceSettings.from_env(os.environ), UrllibHttp())
    return with_services(load_registry(spec), backends)


def activity_request(
    instance_id: str, command: RunActivity, flow: str | None = None
) -> dict[str, Any]:
    """The activity function's input for ``command`` (``flow`` names its telemetry)."""
    request: dict[str, Any] = {
        "instance_id": instance_id,
        "command": COMMAND_ADAPTER.dump_python(command, mode="json"),
    }
    if flow is not None:
        request["flow"] = flow
    return request


def run_activity(payload: Any, registry: ActivityRegistry) -> dict[str, Any]:
    """Carry out the command of ``payload``; the engine event as JSON."""
    command: Any = None
    instance_id = ""
    if isinstance(payload, dict):
        instance_id = str(payload.get("instance_id", ""))
        try:
            command = COMMAND_ADAPTER.validate_python(payload.get("command"))
        except ValueError:
            command = None
    if not isinstance(command, RunActivity):
        call_id = ""
        if isinstance(payload, dict) and isinstance(payload.get("command"), dict):
            call_id = str(payload["command"].get("call_id", ""))
        event: Any = ActivityFailed(
            call_id, BAD_REQUEST, "the activity function was not given a RunActivity command"
        )
    else:
        event = perform(registry, instance_id, command)
        flow = payload.get("flow") if isinstance(payload, dict) else None
        telemetry.emit(
            "ActivityFailed" if isinstance(event, ActivityFailed) else "ActivityCompleted",
            flow=flow,
            instance=instance_id,
            state=telemetry.state_of(command.position),
            activity=command.activity,
            attempt=command.attempt,
            error=event.error if isinstance(event, ActivityFailed) else None,
        )
    answer: dict[str, Any] = EVENT_ADAPTER.dump_python(event, mode="json")
    return answer
