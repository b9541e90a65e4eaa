# ruff: noqa: PLR0917 - typer turns each parameter of a command into an option
"""Run the engine: ``dev`` (embedded Valkey, a worker and the scheduler) and ``worker``.

Every command connects through ``adapters.cli.context`` and lets RustyFlower and Redis
errors through; the ``rustyflower`` group turns them into one line and an exit code
(``errors.describe_error``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rustyflower.adapters.cli.context import (
    DEFAULT_PREFIX,
    Connection,
    ServerCommand,
    connection_of,
)
from rustyflower.adapters.cli.errors import CliEnvironmentError, CliInputError
from rustyflower.adapters.cli.lifeboat_commands import (
    SiteOption,
    TakeoverOption,
    ToOption,
    lifeboat_agent,
    run_alongside,
)
from rustyflower.adapters.cli.loading import load_registry, parse_duration
from rustyflower.adapters.cli.logs import configure_logging
from rustyflower.adapters.cli.options import ActivitiesOption, JsonOption, command
from rustyflower.adapters.cli.processes import Supervisor, child_index, orphaned
from rustyflower.adapters.cli.render import emit_json, err, escape, out, workers_table
from rustyflower.adapters.continuity.lifeboat_setup import LifeboatSettings
from rustyflower.adapters.redis.connection import (
    DEFAULT_DATA_DIR,
    URL_VARIABLE,
    EmbeddedValkey,
    RedisUnavailableError,
    ServerRunningError,
    redact,
)
from rustyflower.adapters.redis.keycheck import SigningKeyMismatchError
from rustyflower.adapters.redis.scheduler import Scheduler
from rustyflower.core.activities import ActivityRegistry

if TYPE_CHECKING:
    from rustyflower.adapters.continuity.site_agent import SiteAgent
    from rustyflower.adapters.redis.worker import UnknownActivityPolicy

log = logging.getLogger("rustyflower.cli")

ObjectsDirOption = Annotated[
    Path | None,
    typer.Option(
        "--objects-dir",
        envvar="RUSTYFLOWER_OBJECTS_DIR",
        help="Where object.put/object.get service tasks keep objects (a folder per store; "
        "default: in Redis; `dev`: <data-dir>/objects).",
        show_default=False,
    ),
]


@command("dev", ServerCommand)
def dev(
    ctx: typer.Context,
    activities: ActivitiesOption = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Activities run at once.")] = 4,
    port: Annotated[
        int | None, typer.Option(help="TCP port of the server (default: a free one).")
    ] = None,
    api_port: Annotated[
        int,
        typer.Option(
            min=0, max=65535, help="Port of the HTTP API on loopback (taken or 0: a free one)."
        ),
    ] = 8080,
    no_api: Annotated[bool, typer.Option("--no-api", help="Do not serve the HTTP API.")] = False,
    objects_dir: ObjectsDirOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Zero configuration: an embedded Valkey (kept in --data-dir), a worker, the scheduler
    and the HTTP API on loopback (docs/api.md; no token needed there).

    Stop with Ctrl-C (or SIGTERM); starting again on the same --data-dir keeps every instance.
    A server left running by a `dev` that was killed (kill -9) is stopped and replaced.
    """
    configure_logging(verbose)
    registry = load_registry(activities or [])
    connection = connection_of(ctx)
    data_dir = connection.data_dir
    server = EmbeddedValkey(data_dir=data_dir, port=port)
    try:
        url = server.start()
    except ServerRunningError as error:
        raise CliEnvironmentError(str(error)) from None
    except (RedisUnavailableError, OSError) as error:
        raise CliEnvironmentError(f"the embedded server did not start: {error}") from None
    try:
        if server.replaced is not None:
            log.warning(
                "stopped the embedded server (pid %d) that a killed `dev` left running",
                server.replaced,
            )
        connection.redis_url = url
        _banner(url, data_dir, connection.prefix)
        with _local_api(connection, None if no_api else api_port):
            _serve(
                connection,
                registry,
                concurrency=concurrency,
                scheduler=True,
                name=None,
                objects_dir=objects_dir or data_dir / "objects",
            )
    finally:
        server.stop()
        err.print("dev server stopped; data kept in " + escape(str(data_dir)))


@command("worker")
def worker(
    ctx: typer.Context,
    activities: ActivitiesOption = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Activities run at once.")] = 4,
    visibility_timeout: Annotated[
        float,
        typer.Option(min=1.0, help="Seconds before a dead worker's claimed work is reclaimed."),
    ] = 30.0,
    grace_period: Annotated[
        float, typer.Option(min=0.0, help="Seconds to let running activities finish on SIGTERM.")
    ] = 30.0,
    scheduler: Annotated[
        bool, typer.Option("--scheduler/--no-scheduler", help="Also run the cron scheduler.")
    ] = True,
    name: Annotated[
        str | None, typer.Option(help="Worker name (default: host-pid).", show_default=False)
    ] = None,
    failure_limit: Annotated[
        float,
        typer.Option(
            min=1.0,
            help="Exit (code 3) when a thread has failed every round for this many seconds.",
        ),
    ] = 120.0,
    retention: Annotated[
        str,
        typer.Option(
            help="Delete finished instances (and their history) this long after they "
            "finished: 7d, 12h, 90m; 'forever' keeps them."
        ),
    ] = "7d",
    unknown_activity: Annotated[
        str,
        typer.Option(
            help="Work for an activity this worker lacks: 'route' it to workers that have "
            "it (it waits until one runs), or 'fail' the task with UnknownActivity."
        ),
    ] = "route",
    replicate: Annotated[
        bool | None,
        typer.Option(
            "--replicate/--no-replicate",
            help="Also run the lifeboat: replicate to the clouds and renew the site lease "
            "(default: on when RUSTYFLOWER_REPLICATE_TO or --to names a cloud).",
            show_default=False,
        ),
    ] = None,
    to: ToOption = None,
    site: SiteOption = None,
    takeover_cloud: TakeoverOption = None,
    processes: Annotated[
        int,
        typer.Option(
            min=1,
            help="Worker processes to run (one core each); a supervisor restarts any that exits.",
        ),
    ] = 1,
    objects_dir: ObjectsDirOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Run activities, timers and (with --scheduler) cron schedules until SIGTERM or Ctrl-C.

    Exits 3 when a thread keeps failing past --failure-limit (its supervisor should start
    it again); `rustyflower workers` shows every worker's health. --processes N runs N
    worker processes under this one (threads share one core; processes use more).
    """
    if unknown_activity not in ("route", "fail"):
        raise CliInputError(f"--unknown-activity {unknown_activity!r}: use route or fail")
    retention_seconds = (
        None if retention.strip().lower() == "forever" else parse_duration(retention, "--retention")
    )
    configure_logging(verbose)
    registry = load_registry(activities or [])
    connection = connection_of(ctx)
    connection.client  # noqa: B018 - fail fast (exit 3) when Redis is unreachable
    copy = child_index()
    if copy is None and processes > 1:
        connection.close()
        code = Supervisor(processes, sys.argv[1:], grace_period).run()
        if code:
            raise CliEnvironmentError(f"worker processes stopped: one could not run (exit {code})")
        return
    if copy is not None:  # one of a supervisor's processes
        scheduler = scheduler and copy == 0
        name = f"{name}-{copy}" if name else None
    log.info("connected to %s (prefix %s)", redact(connection.url), connection.prefix)
    if replicate is None:
        replicate = LifeboatSettings.configured(os.environ, to)
    lifeboat = (
        lifeboat_agent(
            connection,
            name or f"{socket.gethostname()}-{os.getpid()}",  # the worker's own default
            to=to,
            site=site,
            takeover_cloud=takeover_cloud,
        )
        if replicate
        else None
    )
    _serve(
        connection,
        registry,
        concurrency=concurrency,
        scheduler=scheduler,
        name=name,
        visibility_timeout=visibility_timeout,
        grace_period=grace_period,
        failure_limit=failure_limit,
        retention_seconds=retention_seconds,
        unknown_activity="fail" if unknown_activity == "fail" else "route",
        lifeboat=lifeboat,
        objects_dir=objects_dir,
    )


@command("workers")
def workers(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Running workers from their heartbeats: health of their threads, their activities,
    and work that waits for an activity (routed by a worker that lacks it)."""
    from rustyflower.adapters.redis.fleet import fleet_report  # noqa: PLC0415

    connection = connection_of(ctx)
    report = fleet_report(connection.client, connection.keyspace)
    if as_json:
        emit_json(report)
        return
    workers_table(report, time.time())


def _serve(
    connection: Connection,
    registry: ActivityRegistry,
    *,
    concurrency: int,
    scheduler: bool,
    name: str | None,
    visibility_timeout: float = 30.0,
    grace_period: float = 30.0,
    failure_limit: float = 120.0,
    retention_seconds: float | None = 7 * 24 * 3600.0,
    unknown_activity: UnknownActivityPolicy = "route",
    lifeboat: SiteAgent | None = None,
    objects_dir: Path | None = None,
) -> None:
    """Run a worker (and the scheduler) until SIGTERM/SIGINT, then stop gracefully.

    With a ``lifeboat``, the site lease is checked in every cloud (a takeover found there
    applied) before the worker takes any work, and the agent runs beside it.

    A worker whose threads keep failing past ``failure_limit`` is stopped and reported
    (CliEnvironmentError: exit 3), so that a supervisor starts a fresh process.
    """
    from rustyflower.adapters.redis.worker import Worker, WorkerOptions  # noqa: PLC0415

    options = WorkerOptions(
        concurrency=concurrency,
        visibility_timeout=visibility_timeout,
        grace_period=grace_period,
        failure_limit=failure_limit,
        retention_seconds=retention_seconds,
        unknown_activity=unknown_activity,
        objects_dir=str(objects_dir) if objects_dir is not None else None,
    )
    if name:
        options.name = name
    if not registry.names():
        log.warning(
            "no activities loaded (use --activities): %s",
            "tasks fail with UnknownActivity"
            if unknown_activity == "fail"
            else "tasks wait for a worker that has their activity",
        )
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        if stop.is_set():  # asked twice: do not wait for the grace period
            log.warning("stopping now; unfinished activities will be reclaimed and run again")
            raise KeyboardInterrupt
        stop.set()

    previous = {
        signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)
    }
    store = connection.store
    runner = Worker(store, registry, options, conductor=connection.conductor)
    threads: list[threading.Thread] = []
    problems: list[str] = []
    try:
        if lifeboat is not None:
            lifeboat.prepare(stop)  # before anything runs: a takeover wins over this site
            if stop.is_set():
                return
            threads.append(run_alongside(lifeboat, stop))
        try:
            runner.start()
        except SigningKeyMismatchError as error:
            raise CliEnvironmentError(str(error)) from None
        if scheduler:
            threads.append(_start_scheduler(connection, options.name, stop, runner.healthy))
        while not stop.wait(0.5):
            problems = runner.problems()
            if problems:
                log.error("worker %s is unhealthy: %s", options.name, "; ".join(problems))
                runner.abandon()
                break
            if orphaned():
                log.warning("the worker supervisor is gone: stopping (work left is reclaimed)")
                break
        else:
            log.info(
                "stopping: letting running activities finish (up to %ss; Ctrl-C again to stop now)",
                grace_period,
            )
    finally:
        stop.set()
        runner.stop()
        for thread in threads:
            thread.join(timeout=5)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        log.info(
            "stopped: %d activities run, %d failed, %d timers fired",
            runner.stats.activities,
            runner.stats.failures,
            runner.stats.timers,
        )
    if problems:
        raise CliEnvironmentError(
            f"worker {options.name} stopped because it is unhealthy: {'; '.join(problems)}"
        )


@contextlib.contextmanager
def _local_api(connection: Connection, port: int | None) -> Iterator[None]:
    """The HTTP API on loopback beside the worker, without tokens (unless some are set)."""
    from rustyflower.adapters.cli import api_app  # noqa: PLC0415

    missing = api_app.server_extra_missing() if port is not None else None
    if port is None or missing is not None:
        if missing is not None:
            log.warning("no HTTP API: %s", missing)
        yield
        return
    from rustyflower.adapters.web.serving import ApiServer, ApiServerError  # noqa: PLC0415
    from rustyflower.adapters.web.settings import ApiSettings, environ_tokens  # noqa: PLC0415

    settings = ApiSettings(tokens=environ_tokens())
    api = ApiServer(api_app.build_app(connection, settings), "127.0.0.1", port)
    try:
        url = api.start()
    except ApiServerError:
        if port == 0:
            raise
        log.warning("port %d is taken: the HTTP API takes a free port instead", port)
        api = ApiServer(api_app.build_app(connection, settings), "127.0.0.1", 0)
        url = api.start()
    out.print(f"HTTP API at [bold]{escape(url)}[/] (OpenAPI: {escape(url)}/docs)", soft_wrap=True)
    out.print(f"Dashboard at [bold]{escape(url)}/ui/[/]", soft_wrap=True)
    try:
        yield
    finally:
        api.stop()


def _start_scheduler(
    connection: Connection, holder: str, stop: threading.Event, healthy: Callable[[], bool]
) -> threading.Thread:
    scheduler = Scheduler(
        connection.store,
        connection.conductor,
        connection.schedules(),
        holder=holder,
        healthy=healthy,
    )

    def run() -> None:
        while not stop.is_set():
            try:
                scheduler.run(stop)
            except Exception:  # keep scheduling: a bad tick must not end the process
                log.exception("scheduler error; retrying in 5 s")
                stop.wait(5)

    thread = threading.Thread(target=run, name="rustyflower-scheduler", daemon=True)
    thread.start()
    return thread


def _banner(url: str, data_dir: Path, prefix: str) -> None:
    options = ""
    if data_dir.resolve() != DEFAULT_DATA_DIR.resolve():
        options += f" --data-dir {data_dir}"
    if prefix != DEFAULT_PREFIX:
        options += f" --prefix {prefix}"
    out.print(f"[bold green]RustyFlower dev server[/] at [bold]{escape(url)}[/]", soft_wrap=True)
    out.print(f"data (append-only): {escape(str(data_dir.resolve()))}", soft_wrap=True)
    out.print("from another terminal in this directory:")
    out.print(f"  rustyflower flows register flow.yaml{escape(options)}", soft_wrap=True)
    out.print(f"  rustyflower start FLOW --wait{escape(options)}", soft_wrap=True)
    out.print(f"or from anywhere: export {URL_VARIABLE}={escape(url)}", soft_wrap=True)
    out.print("stop with Ctrl-C; starting again keeps every instance", soft_wrap=True)
