# ruff: noqa: PLR0917 - typer turns each parameter of a command into an option
"""Start instances and read them: ``start``, ``status``, ``list``, ``history``.

Every command works through ``rustyflower.client.Client`` (``Connection.public_client``),
as a program would, and lets RustyFlower and Redis errors through; the ``rustyflower``
group turns them into one line and an exit code (``errors.describe_error``).
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from rustyflower.adapters.cli.context import connection_of
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
    cloud_rows,
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
    where_text,
)
from rustyflower.adapters.continuity.outcomes import CloudView
from rustyflower.adapters.continuity.whereabouts import ask_cloud
from rustyflower.adapters.localcloud.record import cloud_environment
from rustyflower.adapters.redis._status import summary_of
from rustyflower.adapters.redis.keys import PRIORITIES, Priority
from rustyflower.adapters.redis.listing import MAX_PAGE
from rustyflower.client import Client, InstanceInfo, InstanceStatus, ResultTimeoutError
from rustyflower.core.instance_store import LOCAL


def _start_many(
    client: Client,
    flow: str,
    version: str | None,
    values: list[Any],
    priority: Priority,
    key: str | None,
    as_json: bool,
) -> None:
    started = client.start_many(
        flow, values, version=version, priority=priority, concurrency_key=key
    )
    if as_json:
        emit_json([{"instance_id": handle.id, "status": "running"} for handle in started])
        return
    for handle in started:
        print(handle.id)
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
    chosen: Priority = PRIORITIES[PRIORITIES.index(priority)]
    if inputs is not None:
        if wait or instance_id is not None or input != "{}":
            raise CliInputError("--inputs starts many instances: no --input, --id or --wait")
        values = read_json_lines(inputs)
        client = connection_of(ctx).public_client
        _start_many(client, flow, version, values, chosen, key, as_json)
        return
    flow_input = parse_json_argument(input, "--input")
    if timeout is not None and not wait:
        raise CliInputError("--timeout only makes sense with --wait")
    client = connection_of(ctx).public_client
    handle = client.start(
        flow, flow_input, id=instance_id, version=version, priority=chosen, concurrency_key=key
    )
    started = client.status(handle.id)
    if not handle.created:
        err.print(
            f"instance {escape(started.instance_id)} exists already "
            f"({escape(started.flow)}@{escape(started.version)}, {started.status}); "
            "nothing started"
        )
    if not wait:
        if as_json:
            emit_json(
                {
                    "instance_id": started.instance_id,
                    "created": bool(handle.created),
                    "flow": started.flow,
                    "version": started.version,
                    "status": started.status,
                    "seq": started.seq,
                }
            )
        else:
            print(started.instance_id)
        return
    if not as_json:
        print(started.instance_id, flush=True)
    try:
        final = _follow(client, started, timeout, quiet=as_json)
    except KeyboardInterrupt:
        err.print(f"stopped waiting; instance {escape(started.instance_id)} carries on")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    summary = final.as_dict()
    if as_json:
        emit_json(summary)
    else:
        print_result(summary, hint_events=False)
    if final.status != "succeeded":
        raise typer.Exit(EXIT_FLOW_FAILED)


def _follow(
    client: Client, started: InstanceStatus, timeout: float | None, quiet: bool
) -> InstanceStatus:
    """Wait for the instance's finish (announced, not polled); while it runs, show where
    it is on stderr, read again whenever its seq moved."""
    instance_id = started.instance_id
    spinner = err.status("starting", spinner="dots") if err.is_terminal and not quiet else None
    shown = {"seq": -1}

    def progress(info: InstanceInfo) -> None:
        if info.seq == shown["seq"]:
            return
        shown["seq"] = info.seq
        current = client.status(instance_id)
        text = f"{_where(current)} (seq {current.seq})"
        if spinner is not None:
            spinner.update(escape(text))
        elif not quiet:
            err.print(escape(f"{instance_id} {text}"), soft_wrap=True)

    with spinner or contextlib.nullcontext():
        try:
            return client.wait(instance_id, timeout, recheck=0.25, on_progress=progress)
        except ResultTimeoutError:
            current = client.status(instance_id)
            if current.finished:  # it ended in the last instant
                return current
            assert timeout is not None
            raise TimedOutError(
                f"instance {instance_id} still {current.status} after {timeout:g} s, "
                f"{_where(current)}; it carries on (rustyflower status {instance_id})"
            ) from None


def _where(status: InstanceStatus) -> str:
    """'held at A, B, waiting for activity x (attempt 1)' (deadlines left out)."""
    waiting = [item["text"] for item in status.waiting_for if item["kind"] != "deadline"]
    text = f"{'held ' if status.held else ''}at {', '.join(status.positions) or '-'}"
    return text + (f", waiting for {'; '.join(waiting)}" if waiting else "")


@command("status")
def status(
    ctx: typer.Context,
    instance_id: InstanceArgument,
    as_json: JsonOption = False,
) -> None:
    """Where an instance stands: status, positions, what it waits for, output or error.

    For an instance living in a cloud, the cloud is asked too (with the settings
    `failback` uses); the site's positions are then its view at failover time.
    """
    connection = connection_of(ctx)
    summary = connection.public_client.status(instance_id).as_dict()
    view = None
    if summary["owner"] != LOCAL:
        view = ask_cloud(connection.store, instance_id, cloud_environment(connection.data_dir))
    if as_json:
        emit_json(summary if view is None else {**summary, "cloud": view.as_dict()})
        return
    key_values(_status_rows(summary, view))


def _status_rows(summary: dict[str, Any], view: CloudView | None) -> list[tuple[str, str]]:
    status_ = summary["status"]
    rows = [
        ("instance", escape(summary["instance_id"])),
        ("flow", escape(f"{summary['flow']}@{summary['version']}")),
        ("where", escape(where_text(summary))),
    ]
    stale = ""
    if view is not None:
        rows += cloud_rows(view)
        stale = " [dim](the site's view at failover time)[/]"
    rows.append(("status", status_text(status_, summary["held"]) + stale))
    if status_ == "running":
        rows.append(("at", escape(", ".join(summary["positions"]) or "-") + stale))
        items = summary["waiting_for"]
        waiting = [item["text"] for item in items if item["kind"] != "deadline"]
        deadlines = [item["text"] for item in items if item["kind"] == "deadline"]
        if waiting:
            rows.append(("waiting for", escape("; ".join(waiting))))
        if deadlines:
            rows.append(("deadlines", escape("; ".join(deadlines))))
    rows += [
        ("seq", str(summary["seq"])),
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
    if limit > MAX_PAGE:
        raise CliInputError(f"--limit {limit}: at most {MAX_PAGE}")
    client = connection_of(ctx).public_client
    held_only = status == "held"
    page = client.list_instances(
        status="running" if held_only else status,  # type: ignore[arg-type]
        flow=flow,
        held=True if held_only else None,
        limit=limit,
    )
    rows = []
    for info in page.items:
        row = summary_of(info)
        row["positions"] = (
            list(client.status(info.instance_id).positions) if info.status == "running" else []
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
    client = connection_of(ctx).public_client
    entries = [
        {
            "seq": entry.seq,
            "at": entry.at,
            "kind": entry.kind,
            "position": entry.position,
            "detail": entry.detail,
        }
        for entry in client.history(instance_id)
    ]
    if as_json:
        emit_json(entries)
        return
    info = client.status(instance_id)
    out.print(
        f"[bold]{escape(instance_id)}[/] {escape(info.flow)}@{escape(info.version)} "
        f"{status_text(info.status, info.held)}",
        soft_wrap=True,
    )
    history_timeline(entries)
