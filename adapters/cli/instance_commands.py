# ruff: noqa: PLR0917 - typer turns each parameter of a command into an option
"""Start instances and read them: ``start``, ``status``, ``list``, ``history``.

Every command connects through ``adapters.cli.context`` and lets RustyFlower and Redis
errors through; the ``rustyflower`` group turns them into one line and an exit code
(``errors.describe_error``).
"""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from rustyflower.adapters.cli.context import Connection, connection_of
from rustyflower.adapters.cli.continuity_commands import start_in_cloud_command
from rustyflower.adapters.cli.errors import (
    EXIT_FLOW_FAILED,
    EXIT_INTERRUPTED,
    CliInputError,
    TimedOutError,
)
from rustyflower.adapters.cli.loading import (
    parse_duration,
    parse_json_argument,
    read_json_lines,
)
from rustyflower.adapters.cli.options import (
    STATUSES,
    InstanceArgument,
    JsonOption,
    check_instance_id_option,
    command,
)
from rustyflower.adapters.cli.render import (
    compact,
    emit_json,
    err,
    escape,
    history_timeline,
    instances_table,
    key_values,
    out,
    print_result,
    short_time,
    status_text,
)
from rustyflower.adapters.redis.keys import PRIORITIES
from rustyflower.adapters.redis.store import InstanceInfo, Placement
from rustyflower.core.contract import Purpose
from rustyflower.core.engine import (
    AwaitEvent,
    RunActivity,
    Snapshot,
    StartChildFlow,
    StartTimer,
)


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
    ctx: typer.Context,
    flow: Annotated[str, typer.Argument(help="Flow name.", show_default=False)],
    version: Annotated[
        str | None, typer.Option(help="Version (default: latest).", show_default=False)
    ] = None,
    input: Annotated[str, typer.Option("--input", "-i", help="JSON input, or @file.json.")] = "{}",
    instance_id: Annotated[
        str | None,
        typer.Option(
            "--id",
            help="Instance id (README: Instance ids); starting an existing id returns it.",
            callback=check_instance_id_option,
        ),
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
    on: Annotated[
        str | None,
        typer.Option(
            "--on",
            help="aws or azure: start it in that cloud (settings as for failover); "
            "`failback` brings it here.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Start an instance and print its id; with --wait, follow it and print its output.

    Exit codes with --wait: 0 succeeded, 1 failed or cancelled, 3 still running at --timeout.
    With --on: 1 when the cloud refused it (it is cancelled here; nothing ran).
    """
    if priority not in PRIORITIES:
        raise CliInputError(f"--priority {priority!r}: use high, normal or low")
    if on is not None:
        if inputs is not None or wait or key is not None or priority != "normal":
            raise CliInputError(
                "--on starts one instance in a cloud: no --inputs, --wait, --key or --priority"
            )
        start_in_cloud_command(
            connection_of(ctx),
            on,
            flow,
            parse_json_argument(input, "--input"),
            version=version,
            instance_id=instance_id,
            as_json=as_json,
        )
        return
    if inputs is not None:
        if wait or instance_id is not None or input != "{}":
            raise CliInputError("--inputs starts many instances: no --input, --id or --wait")
        _start_many(
            connection_of(ctx),
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
    connection = connection_of(ctx)
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
        raise typer.Exit(EXIT_INTERRUPTED) from None
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


DEADLINES = frozenset(
    {Purpose.FLOW_TIMEOUT, Purpose.TASK_TIMEOUT, Purpose.EVENT_TIMEOUT, Purpose.CHILD_TIMEOUT}
)


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
    ctx: typer.Context,
    instance_id: InstanceArgument,
    as_json: JsonOption = False,
) -> None:
    """Where an instance stands: status, positions, what it waits for, output or error."""
    store = connection_of(ctx).store
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
    ctx: typer.Context,
    status: Annotated[
        str | None,
        typer.Option(
            "--status", help="running, succeeded, failed, cancelled or held.", show_default=False
        ),
    ] = None,
    flow: Annotated[str | None, typer.Option(help="Only this flow.", show_default=False)] = None,
    limit: Annotated[
        int, typer.Option(min=1, help="At most this many (latest started first).")
    ] = 50,
    as_json: JsonOption = False,
) -> None:
    """Instances, newest (latest started) first."""
    if status is not None and status not in STATUSES:
        raise CliInputError(f"--status {status!r}: use {', '.join(STATUSES)}")
    store = connection_of(ctx).store
    held_only = status == "held"
    infos = store.list_instances(
        status="running" if held_only else status,
        flow=flow,
        limit=limit,
        held=True if held_only else None,
    )
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


@command("purge")
def purge(
    ctx: typer.Context,
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            help="Delete instances that finished longer ago than this: 30d, 12h, 90m, 45s.",
            show_default=False,
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what would be deleted.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete finished instances (succeeded, failed, cancelled) and their history.

    Workers do this by themselves after their --retention (default 7d); running and held
    instances are never touched.
    """
    seconds = parse_duration(older_than, "--older-than")
    cutoff = datetime.now(UTC) - timedelta(seconds=seconds)
    store = connection_of(ctx).store
    if dry_run:
        count = store.count_finished(cutoff)
    else:
        count = 0
        while True:
            deleted = store.purge_finished(cutoff, limit=PURGE_BATCH)
            count += deleted
            if deleted < PURGE_BATCH:
                break
    if as_json:
        emit_json(
            {
                "deleted": 0 if dry_run else count,
                "matched": count,
                "finished_before": cutoff.isoformat(),
            }
        )
        return
    verb = "would delete" if dry_run else "deleted"
    err.print(
        f"{verb} {count} instance(s) that finished before {short_time(cutoff.isoformat())} UTC"
    )


PURGE_BATCH = 1000


@command("history")
def history(
    ctx: typer.Context,
    instance_id: InstanceArgument,
    as_json: JsonOption = False,
) -> None:
    """The timeline of an instance: every transition the store applied."""
    store = connection_of(ctx).store
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
