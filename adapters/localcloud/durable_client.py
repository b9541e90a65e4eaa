"""The Durable client the local host gives the app's client functions (HTTP starters,
the signal activity, the watchdog).

``BINDING`` is the JSON the Functions host passes for a ``durableClient`` binding; only
``create_check_status_response`` reads it (its URLs go into the 202 answer's headers).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import azure.functions as func
from azure.durable_functions import DurableOrchestrationClient  # type: ignore[import-untyped]
from azure.durable_functions.models.DurableOrchestrationStatus import (  # type: ignore[import-untyped]
    DurableOrchestrationStatus,
)

from rustyflower.adapters.localcloud.durable_history import HostError

if TYPE_CHECKING:
    from rustyflower.adapters.localcloud.durable_host import DurableHost

__all__ = ["BINDING", "LocalDurableClient"]

BINDING = {
    "taskHubName": "LocalHub",
    "creationUrls": {
        "createNewInstancePostUri": "http://localhost:7071/runtime/webhooks/durabletask/orchestrators/{functionName}[/{instanceId}]?code=KEY",
    },
    "managementUrls": {
        "id": "INSTANCEID",
        "statusQueryGetUri": "http://localhost:7071/runtime/webhooks/durabletask/instances/INSTANCEID?taskHub=LocalHub&connection=Storage&code=KEY",
        "sendEventPostUri": "http://localhost:7071/runtime/webhooks/durabletask/instances/INSTANCEID/raiseEvent/{eventName}?taskHub=LocalHub&connection=Storage&code=KEY",
        "terminatePostUri": "http://localhost:7071/runtime/webhooks/durabletask/instances/INSTANCEID/terminate?reason={text}&taskHub=LocalHub&connection=Storage&code=KEY",
        "purgeHistoryDeleteUri": "http://localhost:7071/runtime/webhooks/durabletask/instances/INSTANCEID?taskHub=LocalHub&connection=Storage&code=KEY",
    },
    "rpcBaseUrl": "http://127.0.0.1:17071/durabletask/",
}


class LocalDurableClient:
    """The durable client binding the app's client functions get, over a :class:`DurableHost`.

    It stands in for the Functions host's ``durableClient`` binding (a
    ``DurableOrchestrationClient`` that talks to the Durable extension's HTTP API), which
    cannot run here: the same coroutine methods, answers and error messages as the real
    client gives for the extension's answers (404 unknown, 410 gone), carried out on the
    host directly; ``create_check_status_response`` is the real client's, over a binding
    whose management URLs name this local host. What it was asked to do is recorded
    (``started``, ``raised``, ``terminated``) for whoever watches.
    """

    def __init__(self, host: DurableHost) -> None:
        self.host = host
        self.started: list[str] = []
        self.raised: list[tuple[str, str, Any]] = []
        self.terminated: list[tuple[str, str]] = []
        self._real = DurableOrchestrationClient(json.dumps(BINDING))

    async def start_new(
        self,
        orchestration_function_name: str,
        instance_id: str | None = None,
        client_input: Any | None = None,
    ) -> str:
        if instance_id is None:
            raise HostError("RustyFlower always names its instances")
        try:
            self.host.start_new(orchestration_function_name, instance_id, client_input)
        except HostError as error:
            raise Exception(str(error)) from None
        self.started.append(instance_id)
        return instance_id

    async def get_status(self, instance_id: str, *_args: Any) -> DurableOrchestrationStatus:
        found = self.host.status_json(instance_id)
        return DurableOrchestrationStatus.from_json(found if found is not None else "")

    async def raise_event(self, instance_id: str, event_name: str, event_data: Any = None) -> None:
        code = self.host.raise_event(instance_id, event_name, event_data)
        if code == 404:
            raise Exception(f"No instance with ID {instance_id} found.")
        if code == 410:
            raise Exception(f"Instance with ID {instance_id} is gone: either completed or failed")
        self.raised.append((instance_id, event_name, event_data))

    async def terminate(self, instance_id: str, reason: str) -> None:
        code = self.host.terminate(instance_id, reason)
        if code == 404:
            raise Exception(f"No instance with ID '{instance_id}' found.")
        self.terminated.append((instance_id, reason))

    def create_check_status_response(
        self, request: func.HttpRequest, instance_id: str
    ) -> func.HttpResponse:
        response: func.HttpResponse = self._real.create_check_status_response(request, instance_id)
        return response
