"""``rustyflower flows``: register flow definitions and read them back.

Every command connects through ``adapters.cli.context`` and lets RustyFlower and Redis
errors through; the ``rustyflower`` group turns them into one line and an exit code
(``errors.describe_error``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml

from rustyflower.adapters.cli.context import ConnectedCommand, Connection, connection_of
from rustyflower.adapters.cli.errors import CliInputError
from rustyflower.adapters.cli.loading import (
    load_registry,
    read_definition,
)
from rustyflower.adapters.cli.options import (
    ActivitiesOption,
    Group,
    JsonOption,
)
from rustyflower.adapters.cli.render import (
    emit_json,
    escape,
    flows_table,
    out,
)
from rustyflower.core.model import FlowDefinition

flows_app = typer.Typer(
    cls=Group, help="Register flow definitions and read them back.", no_args_is_help=True
)


@flows_app.command("register", cls=ConnectedCommand)
def flows_register(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="Flow definitions (.yaml, .yml, .json).")],
    activities: ActivitiesOption = None,
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
    connection = connection_of(ctx)
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


@flows_app.command("list", cls=ConnectedCommand)
def flows_list(
    ctx: typer.Context,
    as_json: JsonOption = False,
) -> None:
    """Registered flows and their versions."""
    flows = connection_of(ctx).store.flows()
    if as_json:
        emit_json(flows)
    else:
        flows_table(flows)


@flows_app.command("show", cls=ConnectedCommand)
def flows_show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Flow name.", show_default=False)],
    version: Annotated[
        str | None, typer.Option(help="Version (default: latest).", show_default=False)
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """A registered definition, as YAML (or JSON)."""
    definition = connection_of(ctx).store.definition(name, version)
    if as_json:
        emit_json(definition.document())
    else:
        document = definition.document()
        head = {"name": definition.name, "version": definition.version}
        head |= {key: document.pop(key) for key in ("description",) if key in document}
        document.pop("name", None)
        document.pop("version", None)
        sys.stdout.write(yaml.safe_dump(head | document, sort_keys=False, allow_unicode=True))
