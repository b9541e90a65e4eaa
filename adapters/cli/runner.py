"""The runner commands: drive flows on a Redis (start, status, signal, ...) and run workers.

Each group of commands lives in its own module; its top-level commands are collected by
``options.command`` and added here in the order ``rustyflower --help`` lists them.
"""

from __future__ import annotations

import typer

from rustyflower.adapters.cli import (
    control_commands,
    instance_commands,
    lifeboat_commands,
    ops_commands,
    serve_commands,
)
from rustyflower.adapters.cli.context import ConnectedCommand
from rustyflower.adapters.cli.flow_commands import flows_app
from rustyflower.adapters.cli.limit_commands import limits_app
from rustyflower.adapters.cli.options import COMMANDS
from rustyflower.adapters.cli.schedule_commands import schedule_app

HELP_ORDER = (
    serve_commands.__name__,
    instance_commands.__name__,
    control_commands.__name__,
    lifeboat_commands.__name__,
    ops_commands.__name__,
)
"""Modules of top-level commands, in help order (within one: the order they are defined)."""


def install(app: typer.Typer) -> None:
    """Add the runner commands to the ``rustyflower`` app."""
    for name, function, cls in sorted(COMMANDS, key=lambda c: HELP_ORDER.index(c[1].__module__)):
        app.command(name, cls=cls or ConnectedCommand)(function)
    app.add_typer(flows_app, name="flows")
    app.add_typer(schedule_app, name="schedule")
    app.add_typer(limits_app, name="limits")
