# ruff: noqa: PLR0917 - typer turns each parameter of a command into an option
"""``rustyflower drill``: the disaster drill on a local cloud (docs/failover.md, "Drill").

It starts everything it uses (an embedded Valkey or --redis-url, a worker, the lifeboat
agent, the local cloud) and stops it all at the end or on Ctrl-C; so it takes no
connection options (its own server, as ``dev``).
"""

from __future__ import annotations

import contextlib
import logging
import random
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from rustyflower.adapters.cli.errors import CliEnvironmentError, CliInputError
from rustyflower.adapters.cli.options import Command, JsonOption
from rustyflower.adapters.cli.render import emit_json, err, escape, fit, show, table
from rustyflower.adapters.continuity.replication import DEFAULT_SETTLE

__all__ = ["drill", "install"]

CLOUDS = ("aws", "azure")
"""adapters/drill/cloud.py's (not imported before the command runs: it loads the site's
parts)."""
QUIET = ("rustyflower", "moto", "werkzeug", "botocore", "aws_lambda_powertools", "redis", "azure")
"""Loggers silenced while the drill runs: it kills its own site on purpose, and the
parts it stops say so loudly; its progress lines say what happens."""


def install(app: typer.Typer) -> None:
    """Add ``drill`` to the ``rustyflower`` app."""
    app.command("drill", cls=Command)(drill)


def drill(
    to: Annotated[str, typer.Option("--to", help="The local cloud to fail over to: aws or azure.")],
    instances: Annotated[int, typer.Option(min=1, max=2000, help="Instances to run.")] = 20,
    seed: Annotated[
        int | None,
        typer.Option(help="Seeds the inputs and the kill moment (default: a random one)."),
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(
            "--redis-url",
            help="Run the site on this Redis instead of an embedded Valkey (it is not killed: "
            "the worker and agent are).",
            show_default=False,
        ),
    ] = None,
    kill_after: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Seconds after the starts to kill the site (default: seeded, 0.5 to 3).",
            show_default=False,
        ),
    ] = None,
    settle: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=60.0,
            help="Seconds a change waits before the site's replicator ships it (as "
            "`replicate --settle`): a larger one leaves the replicas further behind the "
            "site at the kill.",
        ),
    ] = DEFAULT_SETTLE,
    work_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where the site's data and the activity ledger go (default: a temp folder).",
            show_default=False,
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Kill a site of its own mid-flight, let the cloud's watchdog take over, fail back,
    and check every instance ended once with its reference output (exit 1 otherwise)."""
    cloud = to.lower()
    if cloud not in CLOUDS:
        raise CliInputError(f"--to {to!r}: the drill runs on {', '.join(CLOUDS)}")
    try:
        from rustyflower.adapters.drill.run import DrillError, DrillOptions, run_drill  # noqa: PLC0415
    except ModuleNotFoundError as error:
        raise CliEnvironmentError(
            f"the drill needs the local clouds ({error.name} is missing): "
            f"pip install 'rustyflower[{'azure' if cloud == 'azure' else 'local'}]'"
        ) from None
    # the local AWS runs the Lambda handlers of lambda_aws from the checkout, as `cloud aws`
    # (the local Azure finds the Function App from here too, or in this package's checkout)
    if str(Path.cwd()) not in sys.path and "" not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    chosen = seed if seed is not None else random.SystemRandom().randrange(1_000_000)
    options = DrillOptions(
        cloud,
        instances,
        chosen,
        redis_url=redis_url,
        kill_after=kill_after,
        work_dir=work_dir,
        settle=settle,
    )
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        # the Lambda handlers log and flush metrics on stdout, as in Lambda: here that
        # is stderr, so that stdout holds the report (and --json parses)
        with contextlib.redirect_stdout(sys.stderr):
            report = run_drill(options, lambda line: err.print("drill: " + escape(line)))
    except DrillError as error:
        raise CliEnvironmentError(str(error)) from None
    document = report.document()
    if json_output:
        emit_json(document)
    else:
        _print(document)
    if not report.ok:
        raise typer.Exit(1)


def _print(document: dict[str, Any]) -> None:
    grid = table("measure", "value")
    rpo = document["rpo_transitions"]
    rows = [
        ("cloud", document["cloud"]),
        ("seed", str(document["seed"])),
        ("instances", str(document["instances"])),
        ("kill after", f"{document['kill_after_seconds']}s"),
        ("replication settle", f"{document['settle_seconds']}s"),
        ("RPO p50 / p99 (transitions)", f"{rpo['p50']:g} / {rpo['p99']:g}"),
        ("RTO (kill -> first cloud transition)", f"{document['rto_seconds']}s"),
        ("takeover done (kill -> all continued)", f"{document['takeover_seconds']}s"),
        ("not replicated at the kill", ", ".join(document["not_replicated"]) or "none"),
        ("site transitions superseded", str(document["superseded_entries"]) + " entries"),
        ("duplicate transitions", str(document["duplicate_transitions"])),
        ("output mismatches", str(document["mismatches"])),
        ("duplicate executions", str(document["duplicate_executions"])),
        ("calls repeated, same key", str(document["honoured_repeats"]) + " (not executed)"),
        ("unfinished", ", ".join(document["unfinished"]) or "none"),
        (
            "finished in",
            ", ".join(f"{where}: {count}" for where, count in document["finished_in"].items()),
        ),
        ("verdict", "PASS" if document["ok"] else "FAIL"),
    ]
    fit(grid, rows)
    show(grid)
