"""The ``rustyflower`` command."""

from __future__ import annotations

import json
import sys
import uuid
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from rustyflower.adapters.cli import cloud_commands, continuity_commands, drill_commands, runner
from rustyflower.adapters.cli.context import (
    DEFAULT_PREFIX,
    Connection,
    DataDirOption,
    PrefixOption,
    RedisUrlOption,
    snapshot_keys,
)
from rustyflower.adapters.cli.errors import (
    EXIT_BAD_INPUT,
    EXIT_ENVIRONMENT,
    EXIT_FLOW_FAILED,
    EXIT_OK,
    CliInputError,
    describe_error,
)
from rustyflower.adapters.cli.files import (
    check_writable,
    read_input_file,
    write_output,
    write_snapshot_file,
)
from rustyflower.adapters.cli.loading import (
    load_registry,
    parse_events,
    parse_json_argument,
    read_definition,
)
from rustyflower.adapters.cli.options import ActivitiesOption, Command, Group
from rustyflower.adapters.cli.render import Timeline, err, error_lines, out, print_result
from rustyflower.adapters.local import (
    FlowLibrary,
    RealClock,
    ScriptedEvent,
    VirtualClock,
    World,
    run_flow,
)
from rustyflower.adapters.redis.connection import DEFAULT_DATA_DIR
from rustyflower.core.activities import iter_tasks
from rustyflower.core.errors import DefinitionError
from rustyflower.core.model import definition_schema
from rustyflower.core.snapshot import generate_encryption_key, generate_signing_key
from rustyflower.core.snapshot.document import decode_snapshot

__all__ = ["EXIT_BAD_INPUT", "EXIT_ENVIRONMENT", "EXIT_FLOW_FAILED", "EXIT_OK", "app", "main"]


class RustyFlowerGroup(Group):
    """Every command's expected errors become one clear line and an exit code, no traceback."""

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click Context
        try:
            return super().invoke(ctx)
        except Exception as error:
            connection = ctx.find_object(Connection)
            described = describe_error(error, connection.where if connection else None)
            if described is None:
                raise
            code, lines = described
            error_lines(lines)
            raise typer.Exit(code) from None


app = typer.Typer(
    name="rustyflower",
    cls=RustyFlowerGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        print(f"rustyflower {package_version('rustyflower')}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def main_options(
    ctx: typer.Context,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = DEFAULT_PREFIX,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Durable workflows that survive the loss of a site.

    The connection options may come before the command (they apply to it) or after it.
    """
    del version  # handled by its callback
    connection = Connection(redis_url, prefix, data_dir)
    ctx.obj = connection
    ctx.call_on_close(connection.close)


@app.command(cls=Command)
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


@app.command(cls=Command)
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
        check_writable(output, "-o ")
        write_output(output, text, "-o ")
        err.print(f"wrote {output}")


@app.command(cls=Command)
def run(
    file: Annotated[Path, typer.Argument(help="The flow definition to run.")],
    input: Annotated[str, typer.Option("--input", "-i", help="JSON input, or @file.json.")] = "{}",
    activities: ActivitiesOption = None,
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
    virtual_time: Annotated[
        bool,
        typer.Option(
            "--virtual-time",
            help="Skip the waiting: time jumps to the next timer or event "
            "(activities still run, as fast as they run).",
        ),
    ] = False,
) -> None:
    """Run a flow in this process (no server) and print its timeline."""
    if snapshot_out is not None:
        check_writable(snapshot_out, "--snapshot-out ")  # before any activity runs
    definition = read_definition(file)
    flow_input = parse_json_argument(input, "--input")
    # every argument is read before anything is looked up, so a bad one is what is reported
    scripted = [
        ScriptedEvent(name, data)
        for name, values in parse_events(event or []).items()
        for data in values
    ]
    registry = load_registry(activities or [])
    children = [read_definition(path) for path in subflow or []]
    for flow in (definition, *children):
        for name in registry.missing(flow):
            registry.get(name)  # raises UnknownActivityError with close matches
        services = sorted({t.service for t in iter_tasks(flow) if t.service is not None})
        if services:
            raise CliInputError(
                f"flow {flow.name!r} uses service tasks ({', '.join(services)}): they need "
                "the site's backends; run it on a runner (`rustyflower dev`, then `rustyflower "
                "flows register` and `rustyflower start`)"
            )
    try:
        flows = FlowLibrary(children)
    except ValueError as error:
        raise CliInputError(f"--subflow: {error}") from None
    # on the real clock a flow may poll for ever, as it would on a runner; on a virtual
    # one an endless loop would never yield, so the world's event limit stops it
    world = World(registry, flows=flows, events=scripted)
    if not virtual_time:
        world.max_events = None
    clock = VirtualClock(datetime.now(UTC)) if virtual_time else RealClock()
    timeline = Timeline(quiet=as_json)
    outcome = run_flow(
        definition,
        flow_input,
        world,
        instance_id=uuid.uuid4().hex,
        clock=clock,
        on_transition=timeline,
    )
    snapshot = outcome.snapshot
    if snapshot_out is not None:
        write_snapshot_file(snapshot_out, snapshot, "--snapshot-out ")
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
        print_result(result)
    if snapshot.status in ("failed", "cancelled"):
        raise typer.Exit(EXIT_FLOW_FAILED)


@app.command(cls=Command)
def inspect(
    file: Annotated[Path, typer.Argument(help="A snapshot file.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Machine-readable output (JSON).")
    ] = False,
) -> None:
    """Verify a snapshot file and show where its instance stands."""
    snapshot = decode_snapshot(read_input_file(file), snapshot_keys())
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


@app.command(cls=Command)
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


runner.install(app)
continuity_commands.install(app)
cloud_commands.install(app)
drill_commands.install(app)


def main() -> None:
    """Entry point: one clear line instead of a traceback for every RustyFlower error."""
    try:
        app()  # standalone: usage errors and exit codes are handled by typer
    except Exception as error:  # raised outside a command (the group handles the rest)
        described = describe_error(error)
        if described is None:
            raise
        code, lines = described
        error_lines(lines)
        sys.exit(code)


if __name__ == "__main__":
    main()
