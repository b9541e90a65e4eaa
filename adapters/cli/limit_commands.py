# ruff: noqa: PLR0917 - typer turns each parameter of a command into an option
"""``rustyflower limits``: concurrency and rate limits shared by all workers.

Every command connects through ``adapters.cli.context`` and lets RustyFlower and Redis
errors through; the ``rustyflower`` group turns them into one line and an exit code
(``errors.describe_error``).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from rustyflower.adapters.cli.context import ConnectedCommand, connection_of
from rustyflower.adapters.cli.errors import CliInputError
from rustyflower.adapters.cli.options import (
    Group,
    JsonOption,
)
from rustyflower.adapters.cli.render import (
    emit_json,
    escape,
    limits_table,
    out,
)

limits_app = typer.Typer(
    cls=Group, help="Concurrency and rate limits shared by all workers.", no_args_is_help=True
)


def _rate_text(per_second: float) -> str:
    for unit, seconds in (("s", 1), ("min", 60), ("h", 3600)):
        value = per_second * seconds
        if value >= 1 or unit == "h":
            return f"{value:g}/{unit}"
    return f"{per_second:g}/s"  # pragma: no cover


@limits_app.command("show", cls=ConnectedCommand)
def limits_show(
    ctx: typer.Context,
    as_json: JsonOption = False,
) -> None:
    """The limits every worker enforces."""
    settings = connection_of(ctx).limits().settings()
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


@limits_app.command("set", cls=ConnectedCommand)
def limits_set(
    ctx: typer.Context,
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
    connection = connection_of(ctx)
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


@limits_app.command("clear", cls=ConnectedCommand)
def limits_clear(
    ctx: typer.Context,
    flow: Annotated[
        str | None, typer.Option(help="Clear this flow's concurrency.", show_default=False)
    ] = None,
    key_concurrency: Annotated[
        bool, typer.Option("--key-concurrency", help="Clear the per-key concurrency.")
    ] = False,
    activity: Annotated[
        str | None, typer.Option(help="Clear this activity's rate.", show_default=False)
    ] = None,
) -> None:
    """Remove a limit."""
    if flow is None and activity is None and not key_concurrency:
        raise CliInputError(
            "nothing to clear: use --flow NAME, --key-concurrency or --activity NAME"
        )
    limits = connection_of(ctx).limits()
    if flow is not None:
        limits.set_flow_concurrency(flow, None)
        out.print(f"flow {escape(flow)}: no concurrency limit")
    if key_concurrency:
        limits.set_key_concurrency(None)
        out.print("concurrency keys: no limit")
    if activity is not None:
        limits.set_rate(activity, None)
        out.print(f"activity {escape(activity)}: no rate limit")
