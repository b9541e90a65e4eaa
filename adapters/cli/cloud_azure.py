# ruff: noqa: PLR0917 - typer turns each parameter of a command into an option
"""``rustyflower cloud azure``: a local Azure to rehearse failover on (docs/failover.md).

It starts Azurite (Blob, Queue, Table; ``adapters/localcloud/azurite.py``) and a local
Function App (``adapters/localcloud/azure.py``): the real app's HTTP functions and the
real Durable SDK orchestrator on the replay host, the user's activities run by the app's
activity function in this process. It prints the settings ``failover --to azure``,
``signal``, ``failback --from azure`` and ``start --on azure`` read, and records them in
``--data-dir`` (``adapters/localcloud/record.py``) so those commands find them without exporting.
Runs until Ctrl-C (or SIGTERM), then stops both and removes what it wrote; exit 0.

The Azure SDK parts are imported inside the command: the other commands must not need
the ``azure`` extra.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import shlex
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rustyflower.adapters.cli.context import connection_of
from rustyflower.adapters.cli.errors import CliEnvironmentError
from rustyflower.adapters.cli.loading import load_registry
from rustyflower.adapters.cli.logs import configure_logging
from rustyflower.adapters.cli.options import ActivitiesOption
from rustyflower.adapters.cli.render import err, escape
from rustyflower.adapters.localcloud.record import (
    LocalCloudRecord,
    LocalCloudRunningError,
    forget,
    record_path,
    running,
    stop_leftovers,
)
from rustyflower.adapters.redis.connection import DEFAULT_DATA_DIR
from rustyflower.core.snapshot import SnapshotKeys

if TYPE_CHECKING:
    from rustyflower.adapters.localcloud.azure import LocalFunctionApp
    from rustyflower.adapters.localcloud.azurite import Azurite

__all__ = ["azure"]

log = logging.getLogger("rustyflower.cli")

CLOUD = "azure"
DEFAULT_CONTAINER = "rustyflower-snapshots"
"""adapters/azure/blob_store.py's default (not imported: it needs the azure extra)."""
ENV_CONTAINER = "RUSTYFLOWER_SNAPSHOT_CONTAINER"
TICK_SECONDS = 0.1
"""How often the host delivers what fell due (timers, events) between requests."""

_PORT_HELP = "Port of Azurite's {} service on 127.0.0.1 (0: a free one)."


def azure(
    ctx: typer.Context,
    activities: ActivitiesOption = None,
    flows: Annotated[
        Path | None,
        typer.Option(
            "--flows",
            envvar="RUSTYFLOWER_FLOWS_PATH",
            help="Sub-flow definitions the app ships: a YAML/JSON file or a folder of them.",
            show_default=False,
        ),
    ] = None,
    app_folder: Annotated[
        Path | None,
        typer.Option(
            "--app",
            envvar="RUSTYFLOWER_AZURE_APP",
            help="Folder of the Function App: a RustyFlower checkout or a folder built with "
            "`python -m functions_azure.build OUT` (default: found from here).",
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        int,
        typer.Option(min=0, max=65535, help="Port of the Function App on 127.0.0.1 (0: free)."),
    ] = 0,
    blob_port: Annotated[int, typer.Option(min=0, max=65535, help=_PORT_HELP.format("Blob"))] = 0,
    queue_port: Annotated[int, typer.Option(min=0, max=65535, help=_PORT_HELP.format("Queue"))] = 0,
    table_port: Annotated[int, typer.Option(min=0, max=65535, help=_PORT_HELP.format("Table"))] = 0,
    container: Annotated[
        str,
        typer.Option(envvar=ENV_CONTAINER, help="The Blob container of the app's checkpoints."),
    ] = DEFAULT_CONTAINER,
    azurite: Annotated[
        str | None,
        typer.Option(
            "--azurite",
            help="The azurite command (default: on PATH, or the checkout's .ci/node).",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """A local Azure: Azurite and the real Function App with its Durable orchestrator.

    Prints the settings to export and records them in --data-dir, where failover,
    signal, failback and start --on read them. Give the site's snapshot keys
    (RUSTYFLOWER_SIGNING_KEYS) to both. Stop with Ctrl-C: nothing is left running.
    """
    configure_logging(verbose)
    # the storage SDK logs every request at INFO: only its warnings unless --verbose
    logging.getLogger("azure").setLevel(logging.DEBUG if verbose else logging.WARNING)
    from rustyflower.adapters.localcloud import azurite as emulator  # noqa: PLC0415
    from rustyflower.adapters.localcloud import function_app  # noqa: PLC0415

    data_dir = connection_of(ctx).data_dir
    if not _has_azure_sdks():
        raise CliEnvironmentError(
            "the local Azure runs the Azure Functions SDKs: pip install 'rustyflower[azure]'"
        )
    if flows is not None and not flows.exists():
        raise CliEnvironmentError(f"--flows {flows}: no such file or folder")
    try:
        folder = function_app.find_app_folder(app_folder)
        executable = emulator.find_azurite(azurite, (folder, Path.cwd()))
    except (function_app.FunctionAppNotFoundError, emulator.AzuriteError) as error:
        raise CliEnvironmentError(str(error)) from None
    if port and not emulator.port_is_free(port):
        raise CliEnvironmentError(f"--port {port} is in use; free it or give another (0: any)")
    holder = running(data_dir, CLOUD)
    if holder is not None:  # said before anything starts; write() refuses it too
        path = record_path(data_dir, CLOUD)
        raise CliEnvironmentError(str(LocalCloudRunningError(path, holder)))
    for pid in stop_leftovers(data_dir, CLOUD):
        log.warning("stopped Azurite (pid %d), left running by a killed local azure", pid)
    registry = load_registry(activities or [])
    keys = _keys()
    with _until_stopped() as stopped:
        storage = emulator.Azurite(
            executable, {"blob": blob_port, "queue": queue_port, "table": table_port}
        )
        try:
            storage.start()
        except emulator.AzuriteError as error:
            raise CliEnvironmentError(str(error)) from None
        try:
            _app_settings(storage, container, function_app.provide_activities(registry), flows)
            server = _function_app(folder, port)
            _run(server, storage, container, data_dir, registry.names(), keys, stopped)
        finally:
            storage.stop()
            err.print("local azure stopped", soft_wrap=True)


def _has_azure_sdks() -> bool:
    try:
        return importlib.util.find_spec("azure.durable_functions") is not None
    except ModuleNotFoundError:  # no azure namespace at all
        return False


def _keys() -> SnapshotKeys:
    try:
        return SnapshotKeys.from_env(os.environ)
    except ValueError as error:
        raise CliEnvironmentError(str(error)) from None


@contextmanager
def _until_stopped() -> Iterator[threading.Event]:
    """An event set by Ctrl-C or SIGTERM (the handlers are put back afterwards); a second
    Ctrl-C while starting interrupts at once."""
    stopped = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        if stopped.is_set():
            raise KeyboardInterrupt
        stopped.set()

    previous = {
        signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield stopped
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _app_settings(storage: Azurite, container: str, activities: str, flows: Path | None) -> None:
    """The app settings of the local Function App, in this process's environment (where
    the app's functions read them), as the Functions host gives them to a hosted app."""
    from rustyflower.adapters.azure.blob_store import BlobSnapshotStore  # noqa: PLC0415

    connection = storage.connection_string
    settings = {
        "AzureWebJobsStorage": connection,
        "RUSTYFLOWER_SNAPSHOT_SINK": "blob",
        "RUSTYFLOWER_SNAPSHOT_CONNECTION": connection,
        "RUSTYFLOWER_SNAPSHOT_CONTAINER": container,
        "RUSTYFLOWER_ACTIVITIES": activities,
    }
    if flows is not None:
        settings["RUSTYFLOWER_FLOWS_PATH"] = str(flows.resolve())
    os.environ.update(settings)
    BlobSnapshotStore.from_connection_string(connection, container).ensure_container()


def _function_app(folder: Path, port: int) -> LocalFunctionApp:
    from rustyflower.adapters.localcloud.azure import LocalFunctionApp  # noqa: PLC0415
    from rustyflower.adapters.localcloud.durable_host import DurableHost  # noqa: PLC0415
    from rustyflower.adapters.localcloud.function_app import (  # noqa: PLC0415
        FunctionAppNotFoundError,
        load_function_app,
    )

    try:
        app = load_function_app(folder)
    except FunctionAppNotFoundError as error:
        raise CliEnvironmentError(str(error)) from None
    durable = DurableHost(app, now=datetime.now(UTC), max_episodes=None, record=False)
    try:
        return LocalFunctionApp(durable, secrets.token_urlsafe(24), port=port, tick=TICK_SECONDS)
    except OSError as error:
        raise CliEnvironmentError(f"--port {port}: {error.strerror}") from None


def _run(
    server: LocalFunctionApp,
    storage: Azurite,
    container: str,
    data_dir: Path,
    activities: list[str],
    keys: SnapshotKeys,
    stopped: threading.Event,
) -> None:
    from rustyflower.adapters.continuity.azure import (  # noqa: PLC0415
        ENV_FUNCTION_KEY,
        ENV_FUNCTION_URL,
        ENV_STORAGE,
    )
    from rustyflower.adapters.localcloud.azure import serving  # noqa: PLC0415

    # set, these mean another Azure than this one: the record then does not apply
    targets = (ENV_FUNCTION_URL, ENV_STORAGE)
    settings = {
        ENV_FUNCTION_URL: server.url,
        ENV_FUNCTION_KEY: server.function_key,
        ENV_STORAGE: storage.connection_string,
        ENV_CONTAINER: container,
    }
    with serving(server):
        helpers = {"azurite": storage.pid} if storage.pid is not None else {}
        try:
            path = LocalCloudRecord(
                cloud=CLOUD,
                pid=os.getpid(),
                endpoint=server.url,
                environment=settings,
                targets=targets,
                helpers=helpers,
            ).write(data_dir)
        except LocalCloudRunningError as error:  # another one started meanwhile
            raise CliEnvironmentError(str(error)) from None
        try:
            _banner(server, storage, settings, path, data_dir, activities, keys)
            reported = False
            while not stopped.wait(0.5):
                if server.failure is not None and not reported:
                    reported = True
                    err.print(
                        escape(
                            f"error: the local Function App stopped delivering: {server.failure}"
                        ),
                        soft_wrap=True,
                    )
        finally:
            forget(data_dir, CLOUD)


def _banner(
    server: LocalFunctionApp,
    storage: Azurite,
    settings: Mapping[str, str],
    path: Path,
    data_dir: Path,
    activities: list[str],
    keys: SnapshotKeys,
) -> None:
    ports = ", ".join(f"{service} {number}" for service, number in storage.ports.items())
    err.print(
        f"[bold green]local azure[/]: Function App at [bold]{escape(server.url)}[/]", soft_wrap=True
    )
    err.print(f"Azurite on 127.0.0.1: {escape(ports)}", soft_wrap=True)
    err.print(
        escape(f"activities: {', '.join(sorted(activities)) or 'none (use --activities)'}"),
        soft_wrap=True,
    )
    if not keys.signing:
        err.print(
            "[yellow]warning:[/] no RUSTYFLOWER_SIGNING_KEYS: the app takes unsigned snapshots; "
            "give it the site's keys to rehearse as in production",
            soft_wrap=True,
        )
    where = "" if data_dir.resolve() == DEFAULT_DATA_DIR.resolve() else f" --data-dir {data_dir}"
    err.print(
        escape(
            f"settings recorded in {path}: failover, signal, failback and start --on{where} "
            "read them; or export them (stdout):"
        ),
        soft_wrap=True,
    )
    for name, value in settings.items():
        print(f"export {name}={shlex.quote(value)}", flush=True)
    err.print("stop with Ctrl-C", soft_wrap=True)
