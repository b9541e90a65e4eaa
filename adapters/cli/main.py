"""The ``rustyflower`` command."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from adapters.cli.loading import (
    CliInputError,
    load_activities,
    parse_events,
    parse_json_argument,
    read_definition,
)
from adapters.local.runner import LocalRunner
from core.engine import Command, Event, Snapshot
from core.errors import DefinitionError, RustyFlowerError
from core.model import definition_schema
from core.snapshot import SnapshotKeys, generate_encryption_key, generate_signing_key
from core.snapshot.document import decode_snapshot, encode_snapshot
from core.timeutil import parse_timestamp

EXIT_OK = 0
EXIT_FLOW_FAILED = 1
EXIT_BAD_INPUT = 2

app = typer.Typer(
    name="rustyflower",
    help="Durable workflows that survive the loss of a site.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(code)


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Flow definitions (.yaml, .yml, .json).")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable result.")] = False,
) -> None:
    """Check flow definitions; exit 2 with one line per problem when any is invalid."""
    report: list[dict[str, Any]] = []
    problems = 0
    for path in files:
        try:
            definition = read_definition(path)
        except DefinitionError as error:
            problems += len(error.problems)
            report.append(
                {"file": str(path), "valid": False, "problems": [str(p) for p in error.problems]}
            )
            if not as_json:
                for problem in error.problems:
                    out.print(f"{path}: {problem}", soft_wrap=True)
            continue
        except CliInputError as error:
            problems += 1
            report.append({"file": str(path), "valid": False, "problems": [str(error)]})
            if not as_json:
                out.print(str(error), soft_wrap=True)
            continue
        report.append({"file": str(path), "valid": True, "flow": definition.key})
        if not as_json:
            count = len(definition.states)
            out.print(f"[green]ok[/] {path}: {definition.key} ({count} states)", soft_wrap=True)
    if as_json:
        print(json.dumps(report, indent=2))
    if problems:
        raise typer.Exit(EXIT_BAD_INPUT)


@app.command()
def schema(
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write to this file.")
    ] = None,
) -> None:
    """Print the JSON Schema of the flow definition format."""
    text = json.dumps(definition_schema(), indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        err.print(f"wrote {output}")


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="The flow definition to run.")],
    input: Annotated[str, typer.Option("--input", "-i", help="JSON input, or @file.json.")] = "{}",
    activities: Annotated[
        str | None, typer.Option(help="Activities module: dotted name or path to a .py file.")
    ] = None,
    event: Annotated[
        list[str] | None, typer.Option(help="NAME=JSON, delivered when the flow waits for NAME.")
    ] = None,
    subflow: Annotated[
        list[Path] | None, typer.Option(help="Definitions of sub-flows the flow starts.")
    ] = None,
    snapshot_out: Annotated[
        Path | None, typer.Option(help="Write the final (or waiting) snapshot here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Run a flow in this process (no server) and print its timeline."""
    definition = read_definition(file)
    flow_input = parse_json_argument(input, "--input")
    registry = load_activities(activities)
    flows = {}
    for path in subflow or []:
        child = read_definition(path)
        flows[child.key] = child
        flows.setdefault(child.name, child)
    timeline = _Timeline(quiet=as_json)
    runner = LocalRunner(
        registry, flows=flows, events=parse_events(event or []), on_transition=timeline
    )
    snapshot = runner.run(definition, flow_input)
    if snapshot_out is not None:
        snapshot_out.write_bytes(encode_snapshot(snapshot))
    state = snapshot.state
    result = {
        "instance_id": snapshot.instance_id,
        "status": "waiting" if not snapshot.finished else snapshot.status,
        "output": state.output,
        "error": state.error,
        "cause": state.cause,
        "waiting_at": snapshot.positions,
        "transitions": snapshot.seq,
    }
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        _print_result(result)
    if snapshot.status in ("failed", "cancelled"):
        raise typer.Exit(EXIT_FLOW_FAILED)


@app.command()
def inspect(
    file: Annotated[Path, typer.Argument(help="A snapshot file.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Verify a snapshot file and show where its instance stands."""
    keys = SnapshotKeys.from_env(dict(__import__("os").environ))
    try:
        data = file.read_bytes()
    except OSError as error:
        raise fail(f"{file}: cannot read: {error.strerror}") from None
    snapshot = decode_snapshot(data, keys)
    summary = {
        "instance_id": snapshot.instance_id,
        "flow": snapshot.definition.key,
        "digest": snapshot.digest,
        "status": snapshot.status,
        "held": snapshot.state.held,
        "seq": snapshot.seq,
        "epoch": snapshot.epoch,
        "positions": snapshot.positions,
        "pending": [entry.purpose + " " + entry.id for entry in snapshot.state.pending.values()],
        "updated_at": snapshot.updated_at,
    }
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    table = Table(show_header=False, box=None)
    for key, value in summary.items():
        table.add_row(
            f"[bold]{key}[/]", ", ".join(value) if isinstance(value, list) else str(value)
        )
    out.print(table)


@app.command()
def keygen(
    key_id: Annotated[str, typer.Argument(help="A name for the key, e.g. 2026-11.")] = "k1",
    encryption: Annotated[bool, typer.Option(help="Also make an AES-256 data key.")] = False,
) -> None:
    """Print environment settings with fresh snapshot keys (keep them secret)."""
    signing = generate_signing_key(key_id)
    print(f"RUSTYFLOWER_SIGNING_KEYS={key_id}:{signing.to_base64()}")
    if encryption:
        data_key = generate_encryption_key(key_id)
        print(f"RUSTYFLOWER_ENCRYPTION_KEYS={key_id}:{data_key.to_base64()}")


class _Timeline:
    """Prints each transition's history entries as they happen."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.started: datetime | None = None
        self.seen = 0

    def __call__(
        self, snapshot: Snapshot, event: Event | None, commands: tuple[Command, ...]
    ) -> None:
        if self.quiet:
            return
        for entry in snapshot.state.history:
            if entry.seq <= self.seen:
                continue
            at = parse_timestamp(entry.at)
            self.started = self.started or at
            offset = (at - self.started).total_seconds() if at and self.started else 0.0
            detail = "" if entry.detail is None else json.dumps(entry.detail, default=str)
            out.print(
                f"[dim]{offset:8.3f}s #{entry.seq:<3}[/] {entry.kind:<16} "
                f"[cyan]{entry.position}[/] [dim]{detail}[/]",
                soft_wrap=True,
            )
        self.seen = snapshot.seq


def _print_result(result: dict[str, Any]) -> None:
    colour = {"succeeded": "green", "failed": "red", "cancelled": "yellow"}.get(
        result["status"], "blue"
    )
    out.print(f"\n[bold {colour}]{result['status']}[/] instance {result['instance_id']}")
    if result["status"] == "succeeded":
        out.print_json(json.dumps(result["output"], default=str))
    elif result["status"] == "waiting":
        out.print(f"waiting at {', '.join(result['waiting_at'])} (use --event NAME=JSON)")
    else:
        out.print(f"{result['error']}: {result['cause']}")


def main() -> None:
    """Entry point: one clear line instead of a traceback for every RustyFlower error."""
    try:
        app()  # standalone: usage errors and exit codes are handled by typer
    except DefinitionError as error:
        for problem in error.problems:
            err.print(f"[bold red]error:[/] {error.source or 'flow'}: {problem}", soft_wrap=True)
        sys.exit(EXIT_BAD_INPUT)
    except RustyFlowerError as error:
        err.print(f"[bold red]error:[/] {error}", soft_wrap=True)
        sys.exit(EXIT_BAD_INPUT)


if __name__ == "__main__":
    main()
