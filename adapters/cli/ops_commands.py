# ruff: noqa: PLR0917 - typer turns each parameter of a command into an option
"""Operations: ``report`` (what ran, how well, how fast) and ``serve`` (the HTTP API).

``serve`` needs the ``server`` extra (``api_app.server_module`` says how to install it
when it is missing, exit 3).
"""

from __future__ import annotations

import logging
import os
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from rustyflower.adapters.cli.api_app import build_app, server_module
from rustyflower.adapters.cli.context import connection_of
from rustyflower.adapters.cli.errors import CliEnvironmentError, CliInputError
from rustyflower.adapters.cli.files import read_input_file
from rustyflower.adapters.cli.logs import configure_logging
from rustyflower.adapters.cli.options import JsonOption, command
from rustyflower.adapters.cli.render import emit_json, err, escape, fit, out, show, table
from rustyflower.core.reports import Report, StepSummary, parse_since
from rustyflower.core.timeutil import parse_timestamp

log = logging.getLogger("rustyflower.cli")


# --- report ----------------------------------------------------------------------------------


@command("report")
def report(
    ctx: typer.Context,
    since: Annotated[
        str, typer.Option(help="A span back from now (30m, 24h, 7d) or an RFC 3339 time.")
    ] = "24h",
    until: Annotated[
        str | None, typer.Option(help="End of the window (RFC 3339; default: now).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Per flow: count, success rate, p50/p95 duration; the slowest and most failing steps."""
    now = datetime.now(UTC)
    end = now
    if until is not None:
        parsed = parse_timestamp(until)
        if parsed is None:
            raise CliInputError(f"--until {until!r}: not an RFC 3339 time (2026-01-31T08:00:00Z)")
        end = parsed
    try:
        start = parse_since(since, now)
    except ValueError as error:
        raise CliInputError(f"--{error}") from None
    if start > end:
        raise CliInputError("--since is after --until")
    found = connection_of(ctx).public_client.report(start, end)
    if as_json:
        emit_json(found.as_dict())
        return
    _show_report(found)


def _show_report(found: Report) -> None:
    out.print(
        f"[bold]{_when(found.since)}[/] to [bold]{_when(found.until)}[/] (UTC)", soft_wrap=True
    )
    if found.covered_from is not None:
        err.print(
            f"[yellow]warning:[/] the event log reaches back to {_when(found.covered_from)} "
            "only (it is capped): earlier runs are missing",
            soft_wrap=True,
        )
    if not found.flows:
        err.print("nothing started or finished in this window")
        return
    grid = table("FLOW", "STARTED", "FINISHED", "SUCCESS", "FAILED", "P50", "P95", keep=("FLOW",))
    fit(
        grid,
        [
            (
                escape(flow.flow),
                str(flow.started),
                str(flow.finished),
                _percent(flow.success_rate),
                str(flow.failed + flow.cancelled),
                _seconds(flow.p50_seconds),
                _seconds(flow.p95_seconds),
            )
            for flow in found.flows
        ],
    )
    show(grid)
    if found.slowest_steps:
        out.print("\n[bold]slowest steps[/] (by p95)")
        _steps_table(found.slowest_steps)
    if found.most_failing_steps:
        out.print("\n[bold]most failing steps[/]")
        _steps_table(found.most_failing_steps)


def _steps_table(steps: tuple[StepSummary, ...]) -> None:
    grid = table("FLOW", "STEP", "ATTEMPTS", "FAILED", "P50", "P95", "TOP ERROR", keep=("STEP",))
    fit(
        grid,
        [
            (
                escape(step.flow),
                escape(step.step),
                str(step.attempts),
                f"{step.failures} ({_percent(step.failure_rate)})",
                _seconds(step.p50_seconds),
                _seconds(step.p95_seconds),
                escape(step.top_error or "-"),
            )
            for step in steps
        ],
    )
    show(grid)


def _stopped(signum: int, frame: object) -> None:
    """The handler uvicorn hands a stop signal back to once it has shut down."""


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def _when(timestamp: str) -> str:
    moment = parse_timestamp(timestamp)
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment is not None else timestamp


# --- serve -----------------------------------------------------------------------------------


@command("serve")
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8080,
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="Bearer tokens, one a line (default: RUSTYFLOWER_API_TOKENS, comma-separated).",
            show_default=False,
        ),
    ] = None,
    webhooks: Annotated[
        bool, typer.Option("--webhooks/--no-webhooks", help="Deliver webhooks from here.")
    ] = True,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
    dashboard: Annotated[
        bool, typer.Option("--dashboard/--no-dashboard", help="Serve the dashboard at /ui/.")
    ] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Serve the HTTP API (docs/api.md) and the dashboard (/ui/) for production: bearer
    tokens are required.

    OpenAPI at /openapi.json (browsable at /docs), Prometheus metrics at /metrics.
    Stop with Ctrl-C or SIGTERM.
    """
    configure_logging(verbose)
    settings_module = server_module()
    text = read_input_file(token_file).decode("utf-8", "replace") if token_file else None
    try:
        tokens = settings_module.tokens_from(os.environ, text)
    except settings_module.ApiSettingsError as error:
        raise CliEnvironmentError(str(error)) from None
    if not tokens:
        raise CliEnvironmentError(
            "serve needs bearer tokens: set RUSTYFLOWER_API_TOKENS=token1,token2 or give "
            "--token-file (`rustyflower dev` serves without tokens, on loopback only)"
        )
    connection = connection_of(ctx)
    app = build_app(
        connection,
        settings_module.ApiSettings(tokens=tokens, webhooks=webhooks, dashboard=dashboard),
    )
    import uvicorn  # noqa: PLC0415

    from rustyflower.adapters.web.serving import config  # noqa: PLC0415

    log.info("serving the API on http://%s:%d (Redis %s)", host, port, connection.where)
    server = uvicorn.Server(config(app, host, port, access_log=access_log))
    # uvicorn stops gracefully on SIGTERM/SIGINT and then raises the signal again for the
    # handler it found: a quiet one, so a requested stop exits 0 as `worker` and `dev` do
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stopped)
    server.run()
    if not server.started:
        raise CliEnvironmentError(f"the API could not listen on {host}:{port}")
