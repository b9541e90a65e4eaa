# ruff: noqa: PLR0917 - typer turns each parameter of a command into an option
"""``rustyflower schedule``: start flows on cron schedules.

Every command connects through ``adapters.cli.context`` and lets RustyFlower and Redis
errors through; the ``rustyflower`` group turns them into one line and an exit code
(``errors.describe_error``).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from rustyflower.adapters.cli.context import ConnectedCommand, Connection, connection_of
from rustyflower.adapters.cli.loading import (
    parse_json_argument,
)
from rustyflower.adapters.cli.options import (
    Group,
    JsonOption,
)
from rustyflower.adapters.cli.render import (
    emit_json,
    escape,
    out,
    schedules_table,
    short_time,
)
from rustyflower.adapters.redis.schedule_store import ScheduleView
from rustyflower.core.schedules import ScheduleSpec

schedule_app = typer.Typer(cls=Group, help="Start flows on cron schedules.", no_args_is_help=True)


@schedule_app.command("add", cls=ConnectedCommand)
def schedule_add(
    ctx: typer.Context,
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
    connection = connection_of(ctx)
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


@schedule_app.command("list", cls=ConnectedCommand)
def schedule_list(
    ctx: typer.Context,
    as_json: JsonOption = False,
) -> None:
    """Schedules, with their next and last fire times."""
    schedules = connection_of(ctx).schedules()
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


@schedule_app.command("pause", cls=ConnectedCommand)
def schedule_pause(
    ctx: typer.Context,
    name: ScheduleName,
) -> None:
    """Stop firing a schedule (until `schedule resume`)."""
    _schedule_action("pause", name, connection_of(ctx))


@schedule_app.command("resume", cls=ConnectedCommand)
def schedule_resume(
    ctx: typer.Context,
    name: ScheduleName,
) -> None:
    """Fire a paused schedule again."""
    _schedule_action("resume", name, connection_of(ctx))


@schedule_app.command("remove", cls=ConnectedCommand)
def schedule_remove(
    ctx: typer.Context,
    name: ScheduleName,
) -> None:
    """Delete a schedule (instances it started are kept)."""
    _schedule_action("remove", name, connection_of(ctx))
