# ruff: noqa: PLR0917 - typer turns each parameter of a command into an option
"""The runner commands: drive flows on a Redis (start, status, signal, ...) and run workers.

Every command here connects through ``adapters.cli.context`` and lets RustyFlower and
Redis errors through; the ``rustyflower`` group turns them into one line and an exit
code (see ``context.describe_error``).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml

from adapters.cli.context import (
    EXIT_FLOW_FAILED,
    CliEnvironmentError,
    Connection,
    DataDirOption,
    PrefixOption,
    RedisUrlOption,
    TimedOutError,
)
from adapters.cli.loading import (
    CliInputError,
    load_activities,
    parse_json_argument,
    read_definition,
)
from adapters.cli.render import (
    compact,
    emit_json,
    err,
    escape,
    flows_table,
    history_timeline,
    instances_table,
    key_values,
    limits_table,
    out,
    print_result,
    schedules_table,
    short_time,
    status_text,
)
from adapters.redis.connection import (
    DEFAULT_DATA_DIR,
    URL_VARIABLE,
    EmbeddedValkey,
    RedisUnavailableError,
    redact,
)
from adapters.redis.keys import PRIORITIES
from adapters.redis.scheduler import Scheduler, ScheduleSpec, ScheduleView
from adapters.redis.store import InstanceInfo, Placement
from core.activities import ActivityRegistry
from core.engine import (
    AwaitEvent,
    RunActivity,
    Snapshot,
    StartChildFlow,
    StartTimer,
)
from core.model import FlowDefinition

log = logging.getLogger("rustyflower.cli")

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output (JSON).")]
ActivitiesOption = Annotated[
    list[str] | None,
    typer.Option(
        "--activities",
        "-a",
        help="Activities module: dotted name or path to a .py file (repeatable).",
    ),
]
InstanceArgument = Annotated[str, typer.Argument(help="The instance id.", show_default=False)]
STATUSES = ("running", "succeeded", "failed", "cancelled", "held")

F = TypeVar("F", bound=Callable[..., Any])
_COMMANDS: list[tuple[str, Callable[..., Any]]] = []


def command(name: str) -> Callable[[F], F]:
    def collect(function: F) -> F:
        _COMMANDS.append((name, function))
        return function

    return collect


flows_app = typer.Typer(help="Register flow definitions and read them back.", no_args_is_help=True)
schedule_app = typer.Typer(help="Start flows on cron schedules.", no_args_is_help=True)
limits_app = typer.Typer(
    help="Concurrency and rate limits shared by all workers.", no_args_is_help=True
)


def install(app: typer.Typer) -> None:
    """Add the runner commands to the ``rustyflower`` app."""
    for name, function in _COMMANDS:
        app.command(name)(function)
    app.add_typer(flows_app, name="flows")
    app.add_typer(schedule_app, name="schedule")
    app.add_typer(limits_app, name="limits")


# --- running: dev and worker ----------------------------------------------------------------


@command("dev")
def dev(
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
    activities: ActivitiesOption = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Activities run at once.")] = 4,
    port: Annotated[
        int | None, typer.Option(help="TCP port of the server (default: a free one).")
    ] = None,
    prefix: PrefixOption = "rf",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Zero configuration: an embedded Valkey (kept in --data-dir), a worker and the scheduler.

    Stop with Ctrl-C (or SIGTERM); starting again on the same --data-dir keeps every instance.
    """
    _configure_logging(verbose)
    registry = load_registry(activities or [])
    url_file = data_dir / "server.url"
    if url_file.is_file():
        previous = url_file.read_text(encoding="utf-8").strip()
        if _answers(previous):
            raise CliEnvironmentError(
                f"a dev server for {data_dir} is already running at {previous}; stop it first "
                f"(or delete {url_file} if that server is not ours)"
            )
    server = EmbeddedValkey(data_dir=data_dir, port=port)
    try:
        url = server.start()
    except (RedisUnavailableError, OSError) as error:
        raise CliEnvironmentError(f"the embedded server did not start: {error}") from None
    try:
        connection = Connection(url, prefix, data_dir)
        _banner(url, data_dir, prefix)
        _serve(connection, registry, concurrency=concurrency, scheduler=True, name=None)
    finally:
        server.stop()
        err.print("dev server stopped; data kept in " + escape(str(data_dir)))


@command("worker")
def worker(
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
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = "rf",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Run activities, timers and (with --scheduler) cron schedules until SIGTERM or Ctrl-C."""
    _configure_logging(verbose)
    registry = load_registry(activities or [])
    connection = Connection(redis_url, prefix, data_dir)
    connection.client  # noqa: B018 - fail fast (exit 3) when Redis is unreachable
    log.info("connected to %s (prefix %s)", redact(connection.url), prefix)
    _serve(
        connection,
        registry,
        concurrency=concurrency,
        scheduler=scheduler,
        name=name,
        visibility_timeout=visibility_timeout,
        grace_period=grace_period,
    )


def _serve(
    connection: Connection,
    registry: ActivityRegistry,
    *,
    concurrency: int,
    scheduler: bool,
    name: str | None,
    visibility_timeout: float = 30.0,
    grace_period: float = 30.0,
) -> None:
    """Run a worker (and the scheduler) until SIGTERM/SIGINT, then stop gracefully."""
    from adapters.redis.worker import Worker, WorkerOptions  # noqa: PLC0415

    options = WorkerOptions(
        concurrency=concurrency, visibility_timeout=visibility_timeout, grace_period=grace_period
    )
    if name:
        options.name = name
    if not registry.names():
        log.warning("no activities loaded: tasks will fail with UnknownActivity (use --activities)")
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
    try:
        runner.start()
        if scheduler:
            threads.append(_start_scheduler(connection, options.name, stop))
        while not stop.wait(0.5):
            pass
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


def _start_scheduler(
    connection: Connection, holder: str, stop: threading.Event
) -> threading.Thread:
    scheduler = Scheduler(
        connection.store, connection.conductor, connection.schedules(), holder=holder
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


def _configure_logging(verbose: bool) -> None:
    from rich.logging import RichHandler  # noqa: PLC0415

    handler: logging.Handler
    if err.is_terminal:
        handler = RichHandler(console=err, show_path=False, rich_tracebacks=False, markup=False)
    else:  # logs to a file or a collector: one plain line per record
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("rustyflower").setLevel(logging.DEBUG if verbose else logging.INFO)


def _banner(url: str, data_dir: Path, prefix: str) -> None:
    options = ""
    if data_dir.resolve() != DEFAULT_DATA_DIR.resolve():
        options += f" --data-dir {data_dir}"
    if prefix != "rf":
        options += f" --prefix {prefix}"
    out.print(f"[bold green]RustyFlower dev server[/] at [bold]{escape(url)}[/]", soft_wrap=True)
    out.print(f"data (append-only): {escape(str(data_dir.resolve()))}", soft_wrap=True)
    out.print("from another terminal in this directory:")
    out.print(f"  rustyflower flows register flow.yaml{escape(options)}", soft_wrap=True)
    out.print(f"  rustyflower start FLOW --wait{escape(options)}", soft_wrap=True)
    out.print(f"or from anywhere: export {URL_VARIABLE}={escape(url)}", soft_wrap=True)
    out.print("stop with Ctrl-C; starting again keeps every instance", soft_wrap=True)


def _answers(url: str) -> bool:
    import redis  # noqa: PLC0415

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, ValueError, OSError):
        return False


def load_registry(targets: list[str]) -> ActivityRegistry:
    """The activities of one or more modules, as one registry."""
    if not targets:
        return load_activities(None)
    found: list[ActivityRegistry] = []
    for target in targets:
        registry = load_activities(target)
        if not any(registry is known for known in found):
            found.append(registry)
    if len(found) == 1:
        return found[0]
    merged = ActivityRegistry()
    for registry in found:
        for activity in registry:
            merged.register(
                activity.function,
                name=activity.name,
                retry=list(activity.retry),
                timeout_seconds=activity.timeout_seconds,
            )
    return merged


# --- flows ----------------------------------------------------------------------------------


@flows_app.command("register")
def flows_register(
    files: Annotated[list[Path], typer.Argument(help="Flow definitions (.yaml, .yml, .json).")],
    activities: ActivitiesOption = None,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = "rf",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Validate and register flow versions (and sync their schedules).

    With --activities, each task's activity must exist there, and the activities' default
    retry and timeout are copied into tasks that set none.
    """
    definitions = [read_definition(path) for path in files]
    if activities:
        registry = load_registry(activities)
        checked = []
        for path, definition in zip(files, definitions, strict=True):
            missing = registry.missing(definition)
            if missing:
                raise CliInputError(
                    f"{path}: unknown activit{'y' if len(missing) == 1 else 'ies'} "
                    f"{', '.join(missing)} (not in {', '.join(activities)})"
                )
            checked.append(registry.apply_defaults(definition))
        definitions = checked
    connection = Connection(redis_url, prefix, data_dir)
    for definition in definitions:
        created = connection.store.register(definition)
        state = "registered" if created else "already registered"
        line = f"[green]{state}[/] {escape(definition.key)}"
        synced = _sync_schedules(connection, definition)
        if synced:
            line += f" (schedules: {escape(', '.join(synced))})"
        out.print(line, soft_wrap=True)


def _sync_schedules(connection: Connection, definition: FlowDefinition) -> list[str]:
    """Create or update the schedules the flow declares (and drop those it no longer does)."""
    return connection.schedules().sync_flow(definition)


@flows_app.command("list")
def flows_list(
    as_json: JsonOption = False,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = "rf",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Registered flows and their versions."""
    flows = Connection(redis_url, prefix, data_dir).store.flows()
    if as_json:
        emit_json(flows)
    else:
        flows_table(flows)


@flows_app.command("show")
def flows_show(
    name: Annotated[str, typer.Argument(help="Flow name.", show_default=False)],
    version: Annotated[
        str | None, typer.Option(help="Version (default: latest).", show_default=False)
    ] = None,
    as_json: JsonOption = False,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = "rf",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """A registered definition, as YAML (or JSON)."""
    definition = Connection(redis_url, prefix, data_dir).store.definition(name, version)
    if as_json:
        emit_json(definition.document())
    else:
        document = definition.document()
        head = {"name": definition.name, "version": definition.version}
        head |= {key: document.pop(key) for key in ("description",) if key in document}
        document.pop("name", None)
        document.pop("version", None)
        sys.stdout.write(yaml.safe_dump(head | document, sort_keys=False, allow_unicode=True))


# --- instances ------------------------------------------------------------------------------


def read_json_lines(path: Path) -> list[Any]:
    """One JSON value per non-empty line; a bad line is reported with its number."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise CliInputError(f"--inputs {path}: cannot read: {error.strerror}") from None
    values = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            values.append(parse_json_argument(line, f"--inputs {path} line {number}"))
    if not values:
        raise CliInputError(f"--inputs {path}: no inputs (one JSON value per line)")
    return values


def _start_many(
    connection: Connection,
    flow: str,
    version: str | None,
    values: list[Any],
    placement: Placement,
    as_json: bool,
) -> None:
    started = connection.conductor.start_many(flow, values, version=version, placement=placement)
    if as_json:
        emit_json([{"instance_id": s.instance_id, "status": s.status} for s in started])
        return
    for snapshot in started:
        print(snapshot.instance_id)
    err.print(f"started {len(started)} instance(s) of {escape(flow)}")


@command("start")
def start(
    flow: Annotated[str, typer.Argument(help="Flow name.", show_default=False)],
    version: Annotated[
        str | None, typer.Option(help="Version (default: latest).", show_default=False)
    ] = None,
    input: Annotated[str, typer.Option("--input", "-i", help="JSON input, or @file.json.")] = "{}",
    instance_id: Annotated[
        str | None,
        typer.Option("--id", help="Instance id; starting an existing id returns it, runs nothing."),
    ] = None,
    priority: Annotated[str, typer.Option(help="high, normal or low.")] = "normal",
    key: Annotated[
        str | None,
        typer.Option("--key", help="Concurrency key (see `limits set --key-concurrency`)."),
    ] = None,
    inputs: Annotated[
        Path | None,
        typer.Option(
            "--inputs",
            help="Bulk start: a JSON Lines file, one instance per line (prints one id a line).",
            show_default=False,
        ),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until it finishes.")] = False,
    timeout: Annotated[
        float | None,
        typer.Option(min=0.0, help="With --wait: give up after this many seconds (exit 3)."),
    ] = None,
    as_json: JsonOption = False,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = "rf",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Start an instance and print its id; with --wait, follow it and print its output.

    Exit codes with --wait: 0 succeeded, 1 failed or cancelled, 3 still running at --timeout.
    """
    if priority not in PRIORITIES:
        raise CliInputError(f"--priority {priority!r}: use high, normal or low")
    if inputs is not None:
        if wait or instance_id is not None or input != "{}":
            raise CliInputError("--inputs starts many instances: no --input, --id or --wait")
        _start_many(
            Connection(redis_url, prefix, data_dir),
            flow,
            version,
            read_json_lines(inputs),
            Placement(priority=priority, concurrency_key=key),
            as_json,
        )
        return
    flow_input = parse_json_argument(input, "--input")
    if timeout is not None and not wait:
        raise CliInputError("--timeout only makes sense with --wait")
    connection = Connection(redis_url, prefix, data_dir)
    existed = instance_id is not None and connection.store.exists(instance_id)
    snapshot = connection.conductor.start(
        flow,
        flow_input,
        version=version,
        instance_id=instance_id,
        placement=Placement(priority=priority, concurrency_key=key),
    )
    if existed:
        err.print(
            f"instance {escape(snapshot.instance_id)} exists already "
            f"({escape(snapshot.definition.key)}, {snapshot.status}); nothing started"
        )
    if not wait:
        if as_json:
            emit_json(
                {
                    "instance_id": snapshot.instance_id,
                    "created": not existed,
                    "flow": snapshot.definition.name,
                    "version": snapshot.definition.version,
                    "status": snapshot.status,
                    "seq": snapshot.seq,
                }
            )
        else:
            print(snapshot.instance_id)
        return
    if not as_json:
        print(snapshot.instance_id, flush=True)
    try:
        final = _follow(connection, snapshot, timeout, quiet=as_json)
    except KeyboardInterrupt:
        err.print(f"stopped waiting; instance {escape(snapshot.instance_id)} carries on")
        raise typer.Exit(130) from None
    summary = instance_summary(connection.store.info(final.instance_id), final)
    if as_json:
        emit_json(summary)
    else:
        print_result(summary, hint_events=False)
    if final.status != "succeeded":
        raise typer.Exit(EXIT_FLOW_FAILED)


def _follow(
    connection: Connection, snapshot: Snapshot, timeout: float | None, quiet: bool
) -> Snapshot:
    """Poll the instance until it finishes; show where it is on stderr while it runs."""
    store = connection.store
    instance_id = snapshot.instance_id
    deadline = None if timeout is None else time.monotonic() + timeout
    spinner = err.status("starting", spinner="dots") if err.is_terminal and not quiet else None
    last_seq = -1
    delay = 0.01
    current = snapshot
    with spinner or contextlib.nullcontext():
        while True:
            info = store.info(instance_id)
            if info.seq != last_seq:
                current = store.load(instance_id, fresh=True)
                last_seq = current.seq
                delay = 0.01
                if current.finished:
                    return current
                text = f"{_where(current, info)} (seq {current.seq})"
                if spinner is not None:
                    spinner.update(escape(text))
                elif not quiet:
                    err.print(escape(f"{instance_id} {text}"), soft_wrap=True)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimedOutError(
                    f"instance {instance_id} still {info.status} after {timeout:g} s, "
                    f"{_where(current, info)}; it carries on (rustyflower status {instance_id})"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)


def _where(snapshot: Snapshot, info: InstanceInfo) -> str:
    """'held at A, B, waiting for activity x (attempt 1)' (deadlines left out)."""
    waiting = [item["text"] for item in waiting_for(snapshot) if item["kind"] != "deadline"]
    text = f"{'held ' if info.held else ''}at {', '.join(snapshot.positions) or '-'}"
    return text + (f", waiting for {'; '.join(waiting)}" if waiting else "")


DEADLINES = frozenset({"flow_timeout", "task_timeout", "event_timeout", "child_timeout"})


def waiting_for(snapshot: Snapshot) -> list[dict[str, Any]]:
    """The work the instance waits for, for people (``text``) and scripts (the rest)."""
    found: list[dict[str, Any]] = []
    for entry in snapshot.state.pending.values():
        command = entry.command
        item: dict[str, Any] = {"id": entry.id, "position": entry.token}
        if isinstance(command, RunActivity):
            item |= {"kind": "activity", "activity": command.activity, "attempt": command.attempt}
            item["text"] = f"activity {command.activity} (attempt {command.attempt})"
        elif isinstance(command, AwaitEvent):
            item |= {"kind": "event", "event": command.event}
            item["text"] = f"event {command.event!r}"
        elif isinstance(command, StartTimer):
            kind = "deadline" if command.purpose in DEADLINES else "timer"
            item |= {"kind": kind, "purpose": command.purpose, "fire_at": command.fire_at}
            item["text"] = f"{command.purpose.replace('_', ' ')} at {short_time(command.fire_at)}"
        elif isinstance(command, StartChildFlow):
            item |= {"kind": "child", "flow": command.flow}
            item["child_instance_id"] = command.child_instance_id
            item["text"] = f"child flow {command.flow} ({command.child_instance_id})"
        else:
            item |= {"kind": entry.purpose, "text": entry.purpose}
        if not entry.dispatched:
            item["dispatched"] = False
            item["text"] += " (not dispatched: held)"
        found.append(item)
    return found


def instance_summary(info: InstanceInfo, snapshot: Snapshot | None) -> dict[str, Any]:
    """What ``status --json`` prints (and ``list --json`` per row, without the data)."""
    summary: dict[str, Any] = {
        "instance_id": info.instance_id,
        "flow": info.flow,
        "version": info.version,
        "status": info.status,
        "held": info.held,
        "seq": info.seq,
        "epoch": info.epoch,
        "priority": info.priority,
        "owner": info.owner,
        "created_at": info.created_at,
        "updated_at": info.updated_at,
    }
    if snapshot is not None:
        state = snapshot.state
        summary |= {
            "positions": snapshot.positions,
            "waiting_for": waiting_for(snapshot),
            "input": state.input,
            "output": state.output,
            "error": state.error,
            "cause": state.cause,
            "failed_position": state.failed_position,
            "finished_at": state.finished_at,
            "parent": state.parent.instance_id if state.parent is not None else None,
        }
    return summary


@command("status")
def status(
    instance_id: InstanceArgument,
    as_json: JsonOption = False,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = "rf",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Where an instance stands: status, positions, what it waits for, output or error."""
    store = Connection(redis_url, prefix, data_dir).store
    info = store.info(instance_id)
    summary = instance_summary(info, store.load(instance_id, fresh=True))
    if as_json:
        emit_json(summary)
        return
    key_values(_status_rows(summary))


def _status_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    status_ = summary["status"]
    rows = [
        ("instance", escape(summary["instance_id"])),
        ("flow", escape(f"{summary['flow']}@{summary['version']}")),
        ("status", status_text(status_, summary["held"])),
    ]
    if status_ == "running":
        rows.append(("at", escape(", ".join(summary["positions"]) or "-")))
        items = summary["waiting_for"]
        waiting = [item["text"] for item in items if item["kind"] != "deadline"]
        deadlines = [item["text"] for item in items if item["kind"] == "deadline"]
        if waiting:
            rows.append(("waiting for", escape("; ".join(waiting))))
        if deadlines:
            rows.append(("deadlines", escape("; ".join(deadlines))))
    rows += [
        ("seq", str(summary["seq"])),
        ("epoch", str(summary["epoch"])),
        ("priority", escape(summary["priority"])),
        ("input", escape(compact(summary["input"]))),
    ]
    if status_ == "succeeded":
        rows.append(("output", escape(compact(summary["output"], limit=400))))
    elif status_ in ("failed", "cancelled"):
        error = summary["error"] or status_
        text = f"{error}: {summary['cause']}" if summary["cause"] else error
        rows.append(("error", escape(text)))
        if summary["failed_position"]:
            rows.append(("failed at", escape(summary["failed_position"])))
    if summary["parent"]:
        rows.append(("parent", escape(summary["parent"])))
    rows.append(("created", short_time(summary["created_at"]) + " UTC"))
    rows.append(("updated", short_time(summary["updated_at"]) + " UTC"))
    if summary["finished_at"]:
        rows.append(("finished", short_time(summary["finished_at"]) + " UTC"))
    return rows


@command("list")
def list_instances(
    status: Annotated[
        str | None,
        typer.Option(
            "--status", help="running, succeeded, failed, cancelled or held.", show_default=False
        ),
    ] = None,
    flow: Annotated[str | None, typer.Option(help="Only this flow.", show_default=False)] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many (newest first).")] = 50,
    as_json: JsonOption = False,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = "rf",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Instances, most recently updated first."""
    if status is not None and status not in STATUSES:
        raise CliInputError(f"--status {status!r}: use {', '.join(STATUSES)}")
    store = Connection(redis_url, prefix, data_dir).store
    held_only = status == "held"
    infos = store.list_instances(
        status="running" if held_only else status,
        flow=flow,
        limit=limit * 4 if held_only else limit,
    )
    if held_only:
        infos = [info for info in infos if info.held][:limit]
    rows = []
    for info in infos:
        row = instance_summary(info, None)
        row["positions"] = (
            store.load(info.instance_id, fresh=True).positions if info.status == "running" else []
        )
        rows.append(row)
    if as_json:
        emit_json(rows)
    else:
        instances_table(rows)


@command("history")
def history(
    instance_id: InstanceArgument,
    as_json: JsonOption = False,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = "rf",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """The timeline of an instance: every transition the store applied."""
    store = Connection(redis_url, prefix, data_dir).store
    entries = store.history(instance_id)
    if as_json:
        emit_json(entries)
        return
    info = store.info(instance_id)
    out.print(
        f"[bold]{escape(instance_id)}[/] {escape(info.flow)}@{escape(info.version)} "
        f"{status_text(info.status, info.held)}",
        soft_wrap=True,
    )
    history_timeline(entries)


# --- controls -------------------------------------------------------------------------------


def _control_done(action: str, snapshot: Snapshot) -> None:
    state = snapshot.status + (" (held)" if snapshot.state.held else "")
    where = ", ".join(snapshot.positions)
    out.print(
        f"{escape(action)}: {escape(snapshot.instance_id)} is {escape(state)}"
        + (f" at {escape(where)}" if where and not snapshot.finished else "")
        + f" (seq {snapshot.seq})",
        soft_wrap=True,
    )


@command("signal")
def signal_instance(
    instance_id: InstanceArgument,
    event: Annotated[str, typer.Argument(help="The event name.", show_default=False)],
    data: Annotated[
        str, typer.Option("--data", "-d", help="JSON payload, or @file.json.")
    ] = "null",
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = "rf",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Deliver an external event to an instance that waits for it."""
    payload = parse_json_argument(data, "--data")
    connection = Connection(redis_url, prefix, data_dir)
    from adapters.cli.continuity_commands import signal_elsewhere  # noqa: PLC0415

    if signal_elsewhere(connection, instance_id, event, payload):  # it lives in AWS or Azure
        return
    transition = connection.conductor.signal(instance_id, event, payload)
    _control_done(f"delivered {event}", transition.snapshot)


@command("hold")
def hold(
    instance_id: InstanceArgument,
    reason: Annotated[str | None, typer.Option(help="Why (kept in the history).")] = None,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = "rf",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Pause an instance: nothing new is dispatched until `release`."""
    conductor = Connection(redis_url, prefix, data_dir).conductor
    _control_done("held", conductor.hold(instance_id, reason).snapshot)


@command("release")
def release(
    instance_id: InstanceArgument,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = "rf",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Resume a held instance."""
    conductor = Connection(redis_url, prefix, data_dir).conductor
    _control_done("released", conductor.release(instance_id).snapshot)


@command("cancel")
def cancel(
    instance_id: InstanceArgument,
    reason: Annotated[str | None, typer.Option(help="Why (kept in the history).")] = None,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = "rf",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Cancel an instance (its running work's results will be refused)."""
    conductor = Connection(redis_url, prefix, data_dir).conductor
    _control_done("cancelled", conductor.cancel(instance_id, reason).snapshot)


@command("retry")
def retry(
    instance_id: InstanceArgument,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = "rf",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Run a failed instance again from the step where it failed."""
    conductor = Connection(redis_url, prefix, data_dir).conductor
    _control_done("retrying", conductor.retry_failed(instance_id).snapshot)


# --- snapshots ------------------------------------------------------------------------------


@command("snapshot")
def snapshot(
    instance_id: InstanceArgument,
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Write here ('-': stdout).", show_default=False)
    ],
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = "rf",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Write an instance's stored (signed) snapshot to a file."""
    connection = Connection(redis_url, prefix, data_dir)
    data = connection.conductor.export(instance_id)
    info = connection.store.info(instance_id)
    if str(output) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        output.write_bytes(data)
    except OSError as error:
        raise CliInputError(f"{output}: cannot write: {error.strerror}") from None
    err.print(
        f"wrote {escape(str(output))}: {escape(instance_id)} {info.status}, "
        f"seq {info.seq}, epoch {info.epoch} ({len(data)} bytes)",
        soft_wrap=True,
    )


@command("resume")
def resume(
    file: Annotated[Path, typer.Argument(help="A snapshot file ('-': stdin).")],
    take_ownership: Annotated[
        bool,
        typer.Option(
            "--take-ownership",
            help="Raise the epoch: the instance's previous owner may no longer advance it.",
        ),
    ] = False,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = "rf",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Continue a snapshot here; refused when this store has the instance at a newer epoch."""
    if str(file) == "-":
        data = sys.stdin.buffer.read()
    else:
        try:
            data = file.read_bytes()
        except OSError as error:
            raise CliInputError(f"{file}: cannot read: {error.strerror}") from None
    resumed = Connection(redis_url, prefix, data_dir).conductor.resume(
        data, take_ownership=take_ownership
    )
    _control_done(f"resumed (epoch {resumed.epoch})", resumed)


# --- schedules ------------------------------------------------------------------------------


@schedule_app.command("add")
def schedule_add(
    name: Annotated[str, typer.Argument(help="Schedule name.", show_default=False)],
    flow: Annotated[str, typer.Option(help="Flow to start.", show_default=False)],
    cron: Annotated[
        str, typer.Option(help="Cron expression: m h dom mon dow.", show_default=False)
    ],
    version: Annotated[
        str | None, typer.Option(help="Flow version (default: latest).", show_default=False)
    ] = None,
    timezone: Annotated[str, typer.Option(help="IANA time zone of the cron.")] = "UTC",
    input: Annotated[
        str, typer.Option("--input", "-i", help="JSON input, or @file.json.")
    ] = "null",
    overlap: Annotated[
        str, typer.Option(help="skip, allow or buffer_one (when the last run still runs).")
    ] = "skip",
    catch_up: Annotated[
        str, typer.Option("--catch-up", help="none, latest or all (fires missed while down).")
    ] = "latest",
    paused: Annotated[bool, typer.Option("--paused", help="Add it paused.")] = False,
    replace: Annotated[bool, typer.Option("--replace", help="Replace one of that name.")] = False,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = "rf",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Add a cron schedule that starts a flow (5-field cron, or @daily, @hourly, ...)."""
    flow_input = parse_json_argument(input, "--input")
    spec = ScheduleSpec(  # InvalidScheduleError (cron, zone, policies): exit 2
        name=name,
        flow=flow,
        version=version,
        cron=cron,
        timezone=timezone,
        input=flow_input,
        overlap=overlap,  # type: ignore[arg-type] # checked by ScheduleSpec
        catch_up=catch_up,  # type: ignore[arg-type]
        paused=paused,
    )
    connection = Connection(redis_url, prefix, data_dir)
    connection.store.definition(flow, version)  # unknown flow or version: exit 2
    schedules = connection.schedules()
    schedules.add(spec, replace=replace)  # ScheduleExistsError: exit 2
    row = next((_schedule_row(v) for v in schedules.list() if v.spec.name == name), {})
    when = "paused" if paused else f"next {short_time(row.get('next_fire'))} UTC"
    out.print(
        f"{'replaced' if replace else 'added'} schedule {escape(name)}: "
        f"{escape(flow)} on '{escape(cron)}' ({escape(timezone)}), {escape(when)}",
        soft_wrap=True,
    )


def _schedule_row(view: ScheduleView) -> dict[str, Any]:
    return view.as_dict()


@schedule_app.command("list")
def schedule_list(
    as_json: JsonOption = False,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = "rf",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Schedules, with their next and last fire times."""
    schedules = Connection(redis_url, prefix, data_dir).schedules()
    rows = [_schedule_row(view) for view in schedules.list()]
    rows.sort(key=lambda row: row["name"])
    if as_json:
        emit_json(rows)
    else:
        schedules_table(rows)


def _schedule_action(action: str, name: str, connection: Connection) -> None:
    getattr(connection.schedules(), action)(name)  # UnknownScheduleError: exit 2
    done = {"pause": "paused", "resume": "resumed", "remove": "removed"}[action]
    out.print(f"{done} schedule {escape(name)}")


ScheduleName = Annotated[str, typer.Argument(help="Schedule name.", show_default=False)]


@schedule_app.command("pause")
def schedule_pause(
    name: ScheduleName,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = "rf",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Stop firing a schedule (until `schedule resume`)."""
    _schedule_action("pause", name, Connection(redis_url, prefix, data_dir))


@schedule_app.command("resume")
def schedule_resume(
    name: ScheduleName,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = "rf",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Fire a paused schedule again."""
    _schedule_action("resume", name, Connection(redis_url, prefix, data_dir))


@schedule_app.command("remove")
def schedule_remove(
    name: ScheduleName,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = "rf",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Delete a schedule (instances it started are kept)."""
    _schedule_action("remove", name, Connection(redis_url, prefix, data_dir))


# --- limits ---------------------------------------------------------------------------------


def _rate_text(per_second: float) -> str:
    for unit, seconds in (("s", 1), ("min", 60), ("h", 3600)):
        value = per_second * seconds
        if value >= 1 or unit == "h":
            return f"{value:g}/{unit}"
    return f"{per_second:g}/s"  # pragma: no cover


@limits_app.command("show")
def limits_show(
    as_json: JsonOption = False,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = "rf",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """The limits every worker enforces."""
    settings = Connection(redis_url, prefix, data_dir).limits().settings()
    if as_json:
        emit_json(
            {
                "flow_concurrency": settings.flows,
                "key_concurrency": settings.per_key,
                "activity_rates": {
                    name: {"per_second": rate, "text": _rate_text(rate)}
                    for name, rate in settings.rates.items()
                },
            }
        )
        return
    rows: list[dict[str, Any]] = [
        {"limit": "flow concurrency", "target": flow, "value": str(limit)}
        for flow, limit in sorted(settings.flows.items())
    ]
    if settings.per_key is not None:
        value = str(settings.per_key)
        rows.append({"limit": "key concurrency", "target": "each key", "value": value})
    rows += [
        {"limit": "activity rate", "target": name, "value": _rate_text(rate)}
        for name, rate in sorted(settings.rates.items())
    ]
    limits_table(rows)


@limits_app.command("set")
def limits_set(
    flow: Annotated[
        str | None, typer.Option(help="With --concurrency.", show_default=False)
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="Max activities of --flow running at once.", show_default=False),
    ] = None,
    key_concurrency: Annotated[
        int | None,
        typer.Option(
            "--key-concurrency",
            min=1,
            help="Max activities at once per concurrency key (start --key).",
            show_default=False,
        ),
    ] = None,
    activity: Annotated[str | None, typer.Option(help="With --rate.", show_default=False)] = None,
    rate: Annotated[
        str | None,
        typer.Option(help="Max calls of --activity: 10/s, 600/min, 5/h.", show_default=False),
    ] = None,
    burst: Annotated[
        int,
        typer.Option(min=1, help="With --rate: calls that may start together (default 1)."),
    ] = 1,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = "rf",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Set a limit: --flow F --concurrency N, --key-concurrency N, or --activity A --rate R."""
    if (flow is None) != (concurrency is None):
        raise CliInputError("--flow and --concurrency go together: --flow NAME --concurrency N")
    if (activity is None) != (rate is None):
        raise CliInputError("--activity and --rate go together: --activity NAME --rate 10/s")
    if flow is None and activity is None and key_concurrency is None:
        raise CliInputError(
            "nothing to set: use --flow NAME --concurrency N, --key-concurrency N "
            "or --activity NAME --rate 10/s"
        )
    connection = Connection(redis_url, prefix, data_dir)
    limits = connection.limits()
    try:
        if flow is not None and concurrency is not None:
            connection.store.definition(flow)  # a typo would limit nothing: refuse it
            limits.set_flow_concurrency(flow, concurrency)
            out.print(f"flow {escape(flow)}: at most {concurrency} activities at once")
        if key_concurrency is not None:
            limits.set_key_concurrency(key_concurrency)
            out.print(f"each concurrency key: at most {key_concurrency} activities at once")
        if activity is not None and rate is not None:
            limits.set_rate(activity, rate, burst)
            extra = f", bursts of {burst}" if burst > 1 else ""
            out.print(f"activity {escape(activity)}: at most {escape(rate)}{extra}")
    except ValueError as error:
        raise CliInputError(f"--rate: {error}") from None


@limits_app.command("clear")
def limits_clear(
    flow: Annotated[
        str | None, typer.Option(help="Clear this flow's concurrency.", show_default=False)
    ] = None,
    key_concurrency: Annotated[
        bool, typer.Option("--key-concurrency", help="Clear the per-key concurrency.")
    ] = False,
    activity: Annotated[
        str | None, typer.Option(help="Clear this activity's rate.", show_default=False)
    ] = None,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = "rf",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Remove a limit."""
    if flow is None and activity is None and not key_concurrency:
        raise CliInputError(
            "nothing to clear: use --flow NAME, --key-concurrency or --activity NAME"
        )
    limits = Connection(redis_url, prefix, data_dir).limits()
    if flow is not None:
        limits.set_flow_concurrency(flow, None)
        out.print(f"flow {escape(flow)}: no concurrency limit")
    if key_concurrency:
        limits.set_key_concurrency(None)
        out.print("concurrency keys: no limit")
    if activity is not None:
        limits.set_rate(activity, None)
        out.print(f"activity {escape(activity)}: no rate limit")
