"""Options and arguments the runner commands share, and the list of top-level commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

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
COMMANDS: list[tuple[str, Callable[..., Any]]] = []
"""Top-level commands in the order ``rustyflower --help`` lists them."""


def command(name: str) -> Callable[[F], F]:
    """Collect a top-level command (``runner.install`` adds them to the app)."""

    def collect(function: F) -> F:
        COMMANDS.append((name, function))
        return function

    return collect
