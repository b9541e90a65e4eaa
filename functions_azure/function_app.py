"""RustyFlower's Azure Function App (Python v2 programming model): thin wiring only.

The logic lives in the modules beside this file: ``http_api`` (the endpoints),
``orchestration`` (the generic orchestrator), ``activity`` (activity dispatch),
``checkpoint`` (the snapshot sink), ``watchdog`` (the lifeboat's timer). App settings:
``settings.APP_SETTINGS``.
"""

import functools
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

_APP_ROOT = Path(__file__).resolve().parent
if importlib.util.find_spec("functions_azure") is None:  # pragma: no cover - from a checkout
    # `func start` inside functions_azure/ of a checkout (with `pip install -e .` for
    # rustyflower): this package is in the parent folder. A packaged app (build.py) has
    # rustyflower/ and functions_azure/ beside this file.
    sys.path.insert(0, str(_APP_ROOT.parent))

import azure.durable_functions as df  # type: ignore[import-untyped]  # noqa: E402
import azure.functions as func  # noqa: E402

from functions_azure import http_api, triggers  # noqa: E402
from functions_azure.activity import registry_for, run_activity  # noqa: E402
from functions_azure.checkpoint import SnapshotSink, sink_from_settings, write_checkpoint  # noqa: E402
from functions_azure.flows import FlowBundle  # noqa: E402
from functions_azure.orchestration import orchestrate  # noqa: E402
from functions_azure.settings import ENV_STORAGE, ENV_WATCHDOG_SCHEDULE, AppSettings  # noqa: E402
from functions_azure.watchdog import watch  # noqa: E402
from rustyflower.adapters.azure.blob_errors import default_azure_credential  # noqa: E402
from rustyflower.adapters.azure.services import AzureServiceSettings  # noqa: E402
from rustyflower.core.snapshot.keys import SnapshotKeys  # noqa: E402

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)

F = TypeVar("F", bound=Callable[..., Any])


def wired(*decorators: Any) -> Callable[[F], F]:
    """Stack the SDK's decorators (listed outermost first); keeps the function typed."""

    def apply(function: F) -> F:
        wrapped: Any = function
        for decorator in reversed(decorators):
            wrapped = decorator(wrapped)
        return cast(F, wrapped)

    return apply


@functools.cache
def shipped_flows(flows_path: str | None) -> FlowBundle:
    """Sub-flow definitions shipped with the app (RUSTYFLOWER_FLOWS_PATH), read once."""
    if not flows_path:
        return FlowBundle()
    path = Path(flows_path)
    return FlowBundle.from_path(path if path.is_absolute() else _APP_ROOT / path)


@functools.cache
def snapshot_sink(settings: AppSettings) -> SnapshotSink:
    return sink_from_settings(settings, os.environ)


def _settings() -> AppSettings:
    return AppSettings.from_env(os.environ)


# --- HTTP ---------------------------------------------------------------------------------


@wired(
    app.route(route="instances", methods=["POST"]),
    app.durable_client_input(client_name="client"),
)
async def continue_snapshot(req: func.HttpRequest, client: Any) -> func.HttpResponse:
    return await http_api.continue_snapshot(
        req, client, os.environ, lambda: shipped_flows(_settings().flows_path)
    )


@wired(
    app.route(route="instances/{instance_id}", methods=["GET"]),
    app.durable_client_input(client_name="client"),
)
async def get_flow_instance(req: func.HttpRequest, client: Any) -> func.HttpResponse:
    return await http_api.get_instance(req, client)


@wired(
    app.route(route="instances/{instance_id}/events/{event_name}", methods=["POST"]),
    app.durable_client_input(client_name="client"),
)
async def raise_flow_event(req: func.HttpRequest, client: Any) -> func.HttpResponse:
    return await http_api.raise_flow_event(req, client)


@wired(
    app.route(route="instances/{instance_id}/terminate", methods=["POST"]),
    app.durable_client_input(client_name="client"),
)
async def terminate_flow_instance(req: func.HttpRequest, client: Any) -> func.HttpResponse:
    return await http_api.terminate_instance(req, client)


# --- orchestration -----------------------------------------------------------------------


@wired(app.orchestration_trigger(context_name="context"))
def rustyflower_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    return orchestrate(context)


@wired(app.activity_trigger(input_name="request"))
def rustyflower_activity(request: dict[str, Any]) -> dict[str, Any]:
    return run_activity(request, registry_for(_settings().activities))


@wired(app.activity_trigger(input_name="request"))
def rustyflower_checkpoint(request: dict[str, Any]) -> dict[str, Any]:
    try:
        keys = SnapshotKeys.from_env(os.environ)
        sink = snapshot_sink(_settings())
    except Exception as error:  # misconfigured keys or sink: reported, the flow goes on
        return {"ok": False, "seq": None, "error": f"{type(error).__name__}: {error}"}
    return write_checkpoint(request, sink, keys)


@wired(
    app.activity_trigger(input_name="request"),
    app.durable_client_input(client_name="client"),
)
async def rustyflower_signal(request: dict[str, Any], client: Any) -> dict[str, Any]:
    return await http_api.signal_instance(request, client)


# --- the lifeboat's watchdog -------------------------------------------------------------


@wired(
    app.timer_trigger(
        schedule=f"%{ENV_WATCHDOG_SCHEDULE}%", arg_name="timer", run_on_startup=False
    ),
    app.durable_client_input(client_name="client"),
)
async def rustyflower_watchdog(timer: func.TimerRequest, client: Any) -> None:
    """Take the site over when its lease is stale (functions_azure/watchdog.py)."""
    del timer  # when it fires is all that matters
    await watch(client, os.environ, lambda: shipped_flows(_settings().flows_path))


# --- triggers (functions_azure/triggers.py) -------------------------------------------------


@functools.cache
def trigger_markers() -> triggers.FirstTime:
    """Signalled messages' markers, in the service tasks' storage account."""
    from azure.storage.blob import ContainerClient  # noqa: PLC0415

    services = AzureServiceSettings.from_env(os.environ)
    name = services.name_prefix + triggers.MARKER_CONTAINER
    if services.connection:
        container = ContainerClient.from_connection_string(services.connection, name)
    else:
        container = ContainerClient(
            services.blob_url or "", name, credential=default_azure_credential()
        )
    return triggers.blob_first_time(container)


def _hearing(client: Any) -> triggers.Hearing:
    settings = _settings()
    return triggers.Hearing(shipped_flows(settings.flows_path), client, trigger_markers(), settings)


def _queue_function(queue: str) -> Callable[..., Any]:
    # a closure, not a parameter with a default: the worker binds every parameter
    async def on_message(msg: func.QueueMessage, client: Any) -> None:
        await triggers.on_queue_message(_hearing(client), queue, str(msg.id), msg.get_body())

    return on_message


def _event_function(bus: str) -> Callable[..., Any]:
    # the worker gives an EventGridEvent or, for the CloudEvents schema, a CloudEvent
    async def on_event(event: func.EventGridEvent, client: Any) -> None:
        await triggers.on_event(_hearing(client), bus, triggers.event_document(event))

    return on_event


def register_triggers(target: Any, flows: FlowBundle, prefix: str) -> list[str]:
    """One queue function per queue the shipped flows' triggers listen to, and one Event
    Grid function per bus; the names of the functions registered."""
    names: list[str] = []
    for queue in triggers.trigger_queues(flows):
        name = "rustyflower_trigger_queue_" + queue.replace("-", "_")
        on_message = _queue_function(queue)
        on_message.__name__ = name
        wired(
            target.function_name(name),
            target.queue_trigger(arg_name="msg", queue_name=prefix + queue, connection=ENV_STORAGE),
            target.durable_client_input(client_name="client"),
        )(on_message)
        names.append(name)
    for bus in triggers.trigger_buses(flows):
        name = triggers.event_function(bus)
        on_event = _event_function(bus)
        on_event.__name__ = name
        wired(
            target.function_name(name),
            target.event_grid_trigger(arg_name="event"),
            target.durable_client_input(client_name="client"),
        )(on_event)
        names.append(name)
    return names


register_triggers(
    app,
    shipped_flows(_settings().flows_path),
    AzureServiceSettings.from_env(os.environ).name_prefix,
)
