# ruff: noqa: PLR0917 - typer turns each parameter of a command into an option
"""``rustyflower cloud``: local clouds to rehearse failover and failback on a laptop.

``cloud azure`` (``cloud_azure``) serves a local Azure the same way.
``cloud aws`` serves a local AWS (``adapters.localcloud.aws``) until Ctrl-C: it prints the
settings to export and records them in ``<data-dir>/cloud-aws.json``, which ``failover``,
``failback``, ``signal``, ``status`` and ``start`` read as their defaults while it runs
(``adapters.localcloud.record``: the one record both local clouds write), the way the
other commands find ``rustyflower dev`` through ``server.url``.

Each cloud is a command of ``cloud_app``; another cloud's module adds its own
(``@cloud_app.command("azure", cls=...)``) and ``install`` adds the group once.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Annotated

import redis
import typer

from rustyflower.adapters.cli import cloud_azure
from rustyflower.adapters.cli.context import (
    ConnectedCommand,
    Connection,
    LocalCloudCommand,
    connection_of,
)
from rustyflower.adapters.cli.errors import CliEnvironmentError, CliInputError
from rustyflower.adapters.cli.loading import load_registry, read_definition
from rustyflower.adapters.cli.logs import configure_logging
from rustyflower.adapters.cli.options import ActivitiesOption, Group
from rustyflower.adapters.cli.render import err, escape, out
from rustyflower.adapters.localcloud.record import (
    LocalCloudRecord,
    LocalCloudRunningError,
    forget,
    record_path,
    running,
)
from rustyflower.core.errors import RustyFlowerError
from rustyflower.core.model import FlowDefinition

__all__ = ["cloud_app", "install"]

log = logging.getLogger("rustyflower.cli")

CLOUD = "aws"
LOCAL_EXTRA = "pip install 'rustyflower[local]'"
FLOW_SUFFIXES = (".yaml", ".yml", ".json")

cloud_app = typer.Typer(
    help="Local clouds on loopback, to rehearse failover and failback (docs/failover.md).",
    no_args_is_help=True,
    cls=Group,
)
cloud_app.command("azure", cls=LocalCloudCommand)(cloud_azure.azure)


def install(app: typer.Typer) -> None:
    """Add the ``cloud`` group to the ``rustyflower`` app."""
    app.add_typer(cloud_app, name="cloud")


@cloud_app.command("aws", cls=ConnectedCommand)
def aws(
    ctx: typer.Context,
    activities: ActivitiesOption = None,
    flows: Annotated[
        list[Path] | None,
        typer.Option(
            "--flows",
            help="Also deploy these flow files (or every .yaml/.yml/.json of a folder); "
            "repeatable. The flows registered on the site are deployed anyway.",
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="TCP port on 127.0.0.1 (0: a free one).")
    ] = 4566,
    region: Annotated[str, typer.Option(help="The AWS region it plays.")] = "us-east-1",
    refresh: Annotated[
        float,
        typer.Option(min=0.2, help="Seconds between looks for flows newly registered on the site."),
    ] = 2.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """A local AWS until Ctrl-C: moto with Step Functions executing, a state machine for
    every flow of the site, and the real Lambda handlers running your activities.

    Prints the settings to export and records them in --data-dir, where failover,
    failback, signal and status find them while it runs. Needs the 'local' extra.
    """
    configure_logging(verbose)
    connection = connection_of(ctx)
    holder = running(connection.data_dir, CLOUD)
    if holder is not None:  # said before the emulator starts; write() refuses it too
        path = record_path(connection.data_dir, CLOUD)
        raise CliEnvironmentError(str(LocalCloudRunningError(path, holder)))
    local_aws = _local_aws_module()
    registry = load_registry(activities or [])
    files = [registry.apply_defaults(d) for d in _flow_files(flows or [])]
    # the Lambda handlers (lambda_aws) are found as `python -m` finds modules: from here
    if str(Path.cwd()) not in sys.path and "" not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    cloud = local_aws.LocalAws(registry, port=port, region=region, quiet=not verbose)
    try:
        endpoint = cloud.start()
    except local_aws.LocalAwsError as error:
        raise CliEnvironmentError(str(error)) from None
    written: Path | None = None
    try:
        _announce(cloud.deploy(files))
        site = _SiteFlows(connection)
        _announce(cloud.deploy(site.definitions()))
        path = record_path(connection.data_dir, CLOUD)
        _banner(endpoint, cloud.site_environment(), path)  # before the record: it says ready
        try:
            written = LocalCloudRecord(
                cloud=CLOUD,
                pid=os.getpid(),
                endpoint=endpoint,
                environment=cloud.site_environment(),
                targets=local_aws.TARGETS,
            ).write(connection.data_dir)
        except LocalCloudRunningError as error:  # another one started meanwhile
            raise CliEnvironmentError(str(error)) from None
        for added in _until_stopped(refresh, site.definitions):
            _announce(cloud.deploy(added))
    finally:
        if written is not None:
            forget(connection.data_dir, CLOUD)
        cloud.stop()
        err.print("local AWS stopped; nothing of it is kept")


def _local_aws_module() -> ModuleType:
    """``adapters.localcloud.aws``, or a clear error naming the extra it needs."""
    try:
        from rustyflower.adapters.localcloud import aws as local_aws  # noqa: PLC0415
    except ImportError as error:
        raise CliEnvironmentError(
            f"rustyflower cloud aws needs moto and boto3 ({error.name or error} is not "
            f"installed): {LOCAL_EXTRA}"
        ) from None
    return local_aws


def _flow_files(paths: Iterable[Path]) -> list[FlowDefinition]:
    found: list[FlowDefinition] = []
    for path in paths:
        if path.is_dir():
            chosen = sorted(p for p in path.iterdir() if p.suffix.lower() in FLOW_SUFFIXES)
            if not chosen:
                raise CliInputError(f"--flows {path}: no .yaml, .yml or .json file in it")
            found.extend(read_definition(p) for p in chosen)
        elif path.is_file():
            found.append(read_definition(path))
        else:
            raise CliInputError(f"--flows {path}: no such file or folder")
    return found


class _SiteFlows:
    """Every flow version registered on the site; an unreachable site is said once."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.warned = False

    def definitions(self) -> list[FlowDefinition]:
        try:
            client = self.connection.public_client
            return [
                client.definition(flow["name"], version)
                for flow in client.flows()
                for version in flow["versions"]
            ]
        except (RustyFlowerError, redis.RedisError, OSError) as error:
            # no site yet (no dev server), or one that went away: it may come (back)
            if not self.warned:
                log.warning("no flows from the site yet (%s); trying again", error)
                self.warned = True
            return []


def _until_stopped(
    every: float, definitions: Callable[[], list[FlowDefinition]]
) -> Iterator[list[FlowDefinition]]:
    """The site's definitions every ``every`` seconds until SIGINT or SIGTERM."""
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {
        signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        while not stop.wait(every):
            yield definitions()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _announce(keys: list[str]) -> None:
    for key in keys:
        out.print(f"deployed {escape(key)}", soft_wrap=True)


def _banner(endpoint: str, environment: dict[str, str], written: Path) -> None:
    out.print(f"[bold green]local AWS[/] at [bold]{escape(endpoint)}[/]", soft_wrap=True)
    out.print(
        f"commands with this --data-dir find it through {escape(str(written))}; elsewhere, export:",
        soft_wrap=True,
    )
    for name, value in environment.items():
        out.print(f"export {name}={escape(value)}", soft_wrap=True, highlight=False)
    out.print("stop with Ctrl-C; nothing of it is kept", soft_wrap=True)
