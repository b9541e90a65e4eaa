"""How the commands are built: their classes, the options and arguments they share, and
the list of top-level runner commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

from rustyflower.adapters.cli.errors import CliInputError
from rustyflower.core.ids import instance_id_problem


def _flags_take_no_value(params: list[Any]) -> None:
    """typer's help shows a type (``<bool>``) after every option, flags included, which
    reads as if ``--json`` took a value: an empty metavar shows nothing for flags."""
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""


class Command(TyperCommand):
    """Every ``rustyflower`` command: its flags (``--help`` too) show no value in its help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _flags_take_no_value(self.params)

    def get_help_option(self, ctx: Any) -> Any:  # typer's vendored click Context
        option = super().get_help_option(ctx)
        _flags_take_no_value([option])
        return option


class Group(TyperGroup):
    """Every ``rustyflower`` group (``flows``, ``schedule``, ...): like ``Command``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _flags_take_no_value(self.params)

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        _flags_take_no_value([option])
        return option


def check_instance_id(value: str) -> str:
    """An instance id argument: checked against the id rule before anything connects
    (a CliInputError, so the error reads as one line like every other)."""
    problem = instance_id_problem(value)
    if problem is not None:
        raise CliInputError(problem)
    return value


def check_instance_id_option(value: str | None) -> str | None:
    return None if value is None else check_instance_id(value)


JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output (JSON).")]
ActivitiesOption = Annotated[
    list[str] | None,
    typer.Option(
        "--activities",
        "-a",
        help="Activities module: dotted name or path to a .py file (repeatable).",
    ),
]
InstanceArgument = Annotated[
    str,
    typer.Argument(
        help="The instance id (README: Instance ids).",
        show_default=False,
        callback=check_instance_id,
    ),
]
STATUSES = ("running", "succeeded", "failed", "cancelled", "held")


F = TypeVar("F", bound=Callable[..., Any])
COMMANDS: list[tuple[str, Callable[..., Any], type[Command] | None]] = []
"""Top-level commands in the order ``rustyflower --help`` lists them, with their class
(None: ``context.ConnectedCommand``, which ``runner.install`` puts in)."""


def command(name: str, cls: type[Command] | None = None) -> Callable[[F], F]:
    """Collect a top-level command (``runner.install`` adds them to the app).

    ``cls`` defaults to ``context.ConnectedCommand``: most runner commands talk to a Redis.
    """

    def collect(function: F) -> F:
        COMMANDS.append((name, function, cls))
        return function

    return collect
