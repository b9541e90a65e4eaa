# ruff: noqa: PLR0917 - typer turns each parameter of a command into an option
"""The continuity commands: ``export asl``, ``failover``, ``failback`` (docs/failover.md).

The steps themselves live in ``adapters.continuity``; this module reads the options, runs
the batch with a progress bar, prints the summary and picks the exit code: 0 when every
instance went through, 1 when any failed (each failure is one line on stderr and a row of
the table), 2 for bad arguments, 3 for a missing setting or an unreachable Redis.

Why one module: the lifeboat's commands share their option types, the batch runner with
its progress bar, the summary table and the exit codes; each command body is short, and
splitting them would only move those shared pieces into a module of their own.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from rustyflower.adapters.cli.context import (
    ConnectedCommand,
    Connection,
    connection_of,
    snapshot_keys,
)
from rustyflower.adapters.cli.errors import EXIT_FLOW_FAILED, CliEnvironmentError, CliInputError
from rustyflower.adapters.cli.files import STDIO, check_writable, read_input_file, write_output
from rustyflower.adapters.cli.loading import load_registry, read_definition
from rustyflower.adapters.cli.options import Group, JsonOption
from rustyflower.adapters.cli.render import (
    emit_json,
    err,
    error_lines,
    escape,
    fit,
    show,
    table,
)
from rustyflower.adapters.continuity.batch import run_batch, select_instances
from rustyflower.adapters.continuity.cloud import CloudContinuity
from rustyflower.adapters.continuity.errors import ContinuityConfigError, ContinuityError
from rustyflower.adapters.continuity.outcomes import CLOUDS, Action, Cloud, Delivery, Outcome
from rustyflower.adapters.continuity.reclaim import (
    ReclaimReasonError,
    checked_reason,
    reclaim_runner,
    reclaim_step,
)
from rustyflower.adapters.continuity.signals import deliver_signal
from rustyflower.adapters.continuity.subflows import sub_flow_calls, sub_flow_definitions
from rustyflower.adapters.localcloud.record import cloud_environment
from rustyflower.core.instance_store import InstanceStore
from rustyflower.core.model import FlowDefinition
from rustyflower.core.snapshot import SnapshotKeys

__all__ = [
    "export_app",
    "failback",
    "failover",
    "install",
    "signal_elsewhere",
    "start_in_cloud_command",
]

_AWS = "AWS"
_AZURE = "Azure"
IdsArgument = Annotated[
    list[str] | None,
    typer.Argument(help="Instance ids (or --all).", show_default=False),
]
AllOption = Annotated[bool, typer.Option("--all", help="Every eligible instance of the store.")]
StateMachineArnOption = Annotated[
    str | None,
    typer.Option(
        "--state-machine-arn",
        help="The machine of every instance given (one flow).",
        show_default=False,
        rich_help_panel=_AWS,
    ),
]
StateMachineOption = Annotated[
    list[str] | None,
    typer.Option(
        "--state-machine",
        help="FLOW=ARN or FLOW@VERSION=ARN: a flow's machine (repeatable).",
        show_default=False,
        rich_help_panel=_AWS,
    ),
]
StateMachinePrefixOption = Annotated[
    str | None,
    typer.Option(
        "--state-machine-prefix",
        envvar="RUSTYFLOWER_STATE_MACHINE_PREFIX",
        help="ARN prefix of the deployed machines (+ <flow>-v<version>, as Terraform names them).",
        show_default=False,
        rich_help_panel=_AWS,
    ),
]
RegionOption = Annotated[
    str | None,
    typer.Option(
        "--region",
        envvar="AWS_REGION",
        help="AWS region.",
        show_default=False,
        rich_help_panel=_AWS,
    ),
]
FunctionUrlOption = Annotated[
    str | None,
    typer.Option(
        "--function-url",
        envvar="RUSTYFLOWER_AZURE_FUNCTION_URL",
        help="The Function App (https://<app>.azurewebsites.net).",
        show_default=False,
        rich_help_panel=_AZURE,
    ),
]
FunctionKeyOption = Annotated[
    str | None,
    typer.Option(
        "--function-key",
        envvar="RUSTYFLOWER_AZURE_FUNCTION_KEY",
        help="The app's function key.",
        show_default=False,
        rich_help_panel=_AZURE,
    ),
]


def install(app: typer.Typer) -> None:
    """Add ``export``, ``failover`` and ``failback`` to the ``rustyflower`` app."""
    app.add_typer(export_app, name="export")
    app.command("failover", cls=ConnectedCommand)(failover)
    app.command("failback", cls=ConnectedCommand)(failback)


# --- export asl -------------------------------------------------------------------------------

export_app = typer.Typer(help="Export flows for other runtimes.", no_args_is_help=True, cls=Group)

COMPILER_FLAGS = {
    "activity_function_arn": "--activity-function-arn",
    "token_function_arn": "--token-function-arn",
    "flow_arns": "--flow-arn (or --state-machine-prefix)",
    "queue_url_base": "--queue-url-base",
}
"""The compiler's parameters, as the flags of `export asl` that set them."""


@export_app.command("asl", cls=ConnectedCommand)
def export_asl(
    ctx: typer.Context,
    flow: Annotated[
        str | None,
        typer.Argument(help="A registered flow (or --file).", show_default=False),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", help="Write the ASL here ('-': stdout).", show_default=False
        ),
    ] = None,
    activity_function_arn: Annotated[
        str | None,
        typer.Option(help="ARN of the activity Lambda (required).", show_default=False),
    ] = None,
    token_function_arn: Annotated[
        str | None,
        typer.Option(
            help="ARN of the task-token Lambda (flows with event waits or a timeout).",
            show_default=False,
        ),
    ] = None,
    flow_arn: Annotated[
        list[str] | None,
        typer.Option(
            "--flow-arn",
            help="NAME=ARN or NAME@VERSION=ARN: a sub-flow's machine (repeatable).",
            show_default=False,
        ),
    ] = None,
    state_machine_prefix: StateMachinePrefixOption = None,
    version: Annotated[
        str | None, typer.Option(help="Version (default: latest).", show_default=False)
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="Compile this definition file instead.", show_default=False),
    ] = None,
    activities: Annotated[
        list[str] | None,
        typer.Option(
            "--activities",
            "-a",
            help="With --file: apply these activities' default retry and timeout first.",
            show_default=False,
        ),
    ] = None,
    queue_url_base: Annotated[
        str | None,
        typer.Option(
            help="Service tasks: https://sqs.<region>.amazonaws.com/<account>/ (queue URLs "
            "are this + --service-prefix + the queue's name).",
            show_default=False,
        ),
    ] = None,
    service_prefix: Annotated[
        str, typer.Option(help="Service tasks: the prefix of queues, buses and buckets.")
    ] = "",
    http_connection_arn: Annotated[
        str | None,
        typer.Option(
            help="Service tasks: an EventBridge connection; http.call then uses Step "
            "Functions' HTTP Task (else the activity function).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Compile a flow to Amazon States Language (the machine failover --to aws continues)."""
    from rustyflower.adapters.aws import AwsServiceBindings, compile_to_json  # noqa: PLC0415
    from rustyflower.adapters.aws.errors import CompileError  # noqa: PLC0415
    from rustyflower.adapters.aws.resume import deployed_digest  # noqa: PLC0415

    if (flow is None) == (file is None):
        raise CliInputError("give a registered FLOW or --file flow.yaml (one of them)")
    if output is None:
        raise CliInputError("-o FILE is required ('-' writes to stdout)")
    if not activity_function_arn:
        raise CliInputError("--activity-function-arn is required")
    check_writable(output, "-o ")
    connection: Connection | None = None
    if file is not None:
        if version is not None:
            raise CliInputError("--version picks a registered version; not with --file")
        definition = read_definition(file)
        if activities:
            definition = load_registry(activities).apply_defaults(definition)
    else:
        assert flow is not None
        connection = connection_of(ctx)
        definition = connection.store.definition(flow, version)
    arns = _flow_arns(definition, flow_arn or [], state_machine_prefix, connection)
    try:
        text = compile_to_json(
            definition,
            activity_function_arn=activity_function_arn,
            token_function_arn=token_function_arn,
            flow_arns=arns,
            services=AwsServiceBindings(
                queue_url_base=queue_url_base,
                name_prefix=service_prefix,
                http_connection_arn=http_connection_arn,
            ),
        )
    except CompileError as error:
        raise CliInputError(_in_flags(str(error))) from None
    write_output(output, text + "\n", "-o ")
    if str(output) == STDIO:
        return
    err.print(
        f"wrote {escape(str(output))}: {escape(definition.key)} (digest {deployed_digest(text)})",
        soft_wrap=True,
    )


def _in_flags(message: str) -> str:
    """A compiler message with its parameter names replaced by the flags that set them."""
    for parameter, flag in COMPILER_FLAGS.items():
        message = re.sub(rf"\b{parameter}\b", flag, message)
    return message


def _flow_arns(
    definition: FlowDefinition,
    given: Sequence[str],
    machine_prefix: str | None,
    connection: Connection | None,
) -> dict[str, str]:
    """``--flow-arn`` pairs, completed from the machine prefix for the calls they miss."""
    from rustyflower.adapters.aws.deployment import state_machine_name  # noqa: PLC0415

    arns = dict(_pairs(given, "--flow-arn"))
    if not machine_prefix:
        return arns
    known: dict[str, FlowDefinition] = {}
    if connection is not None:
        for found in sub_flow_definitions(connection.store, [definition]):
            known[found.key] = found
            known.setdefault(found.name, connection.store.definition(found.name))
    pending = [definition, *known.values()]
    for each in pending:
        for call in sub_flow_calls(each):
            key = f"{call.flow}@{call.version}" if call.version else call.flow
            if key in arns:
                continue
            chosen = call.version or (known[call.flow].version if call.flow in known else None)
            if chosen is not None:
                arns[key] = machine_prefix + state_machine_name(call.flow, chosen)
    return arns


def _pairs(values: Sequence[str], option: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for value in values:
        name, sep, arn = value.partition("=")
        if not sep or not name.strip() or not arn.strip():
            raise CliInputError(f"{option} {value!r}: write NAME=ARN (or NAME@VERSION=ARN)")
        found.append((name.strip(), arn.strip()))
    return found


# --- failover / failback -------------------------------------------------------------------


def failover(
    ctx: typer.Context,
    instance_ids: IdsArgument = None,
    to: Annotated[str, typer.Option("--to", help="aws or azure.", show_default=False)] = "",
    every: AllOption = False,
    snapshot_files: Annotated[
        list[Path] | None,
        typer.Option(
            "--snapshot",
            help="Continue this snapshot file instead (repeatable; nothing is fenced).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
    state_machine_arn: StateMachineArnOption = None,
    state_machine: StateMachineOption = None,
    state_machine_prefix: StateMachinePrefixOption = None,
    continue_function: Annotated[
        str | None,
        typer.Option(
            "--continue-function",
            envvar="RUSTYFLOWER_CONTINUE_FUNCTION",
            help="Hand the snapshots to this continue Lambda instead of starting executions.",
            show_default=False,
            rich_help_panel=_AWS,
        ),
    ] = None,
    region: RegionOption = None,
    function_url: FunctionUrlOption = None,
    function_key: FunctionKeyOption = None,
) -> None:
    """Continue running instances in AWS or Azure: fence each here, then start it there.

    Each instance is fenced first (epoch + 1, owner = the cloud): the on-premises runner
    no longer advances it. Running the same failover again is a no-op (the cloud answers
    with the execution or orchestration it has). Exit 1 when any instance failed.
    """
    cloud = _cloud(to, "--to")
    files = snapshot_files or []
    ids = instance_ids or []
    if files and (ids or every):
        raise CliInputError("--snapshot continues files: give no instance ids and no --all")
    if not files and bool(ids) == every:
        raise CliInputError("give instance ids or --all (or --snapshot FILE)")
    connection = None if files else connection_of(ctx)
    runner = _continuity(
        cloud,
        connection.store if connection is not None else None,
        snapshot_keys(),
        connection_of(ctx).data_dir,
        aws={
            "region": region,
            "state_machine_arn": state_machine_arn,
            "state_machines": _state_machines(state_machine),
            "state_machine_prefix": state_machine_prefix,
            "continue_function": continue_function,
        },
        azure={"function_url": function_url, "function_key": function_key},
    )
    if files:
        targets = [str(path) for path in files]
        step: Callable[[str], Outcome] = lambda source: runner.failover_file(  # noqa: E731
            read_input_file(Path(source)), source
        )
    else:
        assert connection is not None
        targets = select_instances(connection.store, "failover", cloud, ids, every)
        step = runner.failover
    _run("failover", cloud, targets, step, as_json)


def failback(
    ctx: typer.Context,
    instance_ids: IdsArgument = None,
    from_: Annotated[str, typer.Option("--from", help="aws or azure.", show_default=False)] = "",
    every: AllOption = False,
    as_json: JsonOption = False,
    state_machine_arn: StateMachineArnOption = None,
    state_machine: StateMachineOption = None,
    state_machine_prefix: StateMachinePrefixOption = None,
    region: RegionOption = None,
    snapshot_bucket: Annotated[
        str | None,
        typer.Option(
            "--snapshot-bucket",
            envvar="RUSTYFLOWER_SNAPSHOT_BUCKET",
            help="Where the continue Lambda kept the snapshots executions continued.",
            show_default=False,
            rich_help_panel=_AWS,
        ),
    ] = None,
    function_url: FunctionUrlOption = None,
    function_key: FunctionKeyOption = None,
    storage_connection_string: Annotated[
        str | None,
        typer.Option(
            "--storage-connection-string",
            envvar="RUSTYFLOWER_AZURE_STORAGE",
            help="Storage account of the app's checkpoints (connection string).",
            show_default=False,
            rich_help_panel=_AZURE,
        ),
    ] = None,
    container: Annotated[
        str | None,
        typer.Option(
            "--container",
            envvar="RUSTYFLOWER_SNAPSHOT_CONTAINER",
            help="The checkpoints' Blob container [default: rustyflower-snapshots].",
            show_default=False,
            rich_help_panel=_AZURE,
        ),
    ] = None,
    hold: Annotated[
        bool,
        typer.Option(
            "--hold/--no-hold",
            help="Hold the instance in Azure first, so it settles at a checkpoint.",
            rich_help_panel=_AZURE,
        ),
    ] = True,
    timeout: Annotated[
        float,
        typer.Option(
            min=1.0,
            help="Seconds to wait for an Azure instance to stand still at a checkpoint.",
            rich_help_panel=_AZURE,
        ),
    ] = 60.0,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Take them back even when the cloud cannot be reached or will not stop "
            "(epoch + 1; from the site's snapshot if the cloud's cannot be read). Needs --reason.",
        ),
    ] = False,
    reason: Annotated[
        str | None,
        typer.Option(
            "--reason",
            help="With --force: why (kept in each instance's history).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Bring instances back from AWS or Azure and resume them here (epoch + 1).

    AWS: stop the execution, turn its history into a snapshot, resume it. Azure: hold the
    instance, terminate it at its last checkpoint, resume that checkpoint (and release
    it). --force: the escape hatch for a cloud that is gone (docs/failover.md, "When the
    cloud is gone"). Exit 1 when any instance failed.
    """
    cloud = _cloud(from_, "--from")
    ids = instance_ids or []
    if bool(ids) == every:
        raise CliInputError("give instance ids or --all")
    try:
        chosen_reason = checked_reason(force, reason, force_name="--force", reason_name="--reason")
    except ReclaimReasonError as error:
        raise CliInputError(str(error)) from None
    connection = connection_of(ctx)
    aws: dict[str, Any] = {
        "region": region,
        "state_machine_arn": state_machine_arn,
        "state_machines": _state_machines(state_machine),
        "state_machine_prefix": state_machine_prefix,
        "snapshot_bucket": snapshot_bucket,
    }
    azure: dict[str, Any] = {
        "function_url": function_url,
        "function_key": function_key,
        "storage_connection_string": storage_connection_string,
        "container": container,
        "hold": hold,
        "safe_point_timeout": timeout,
    }
    targets = select_instances(connection.store, "failback", cloud, ids, every)
    if chosen_reason is not None:
        try:
            runner = reclaim_runner(
                cloud,
                connection.store,
                cloud_environment(connection.data_dir),
                aws if cloud == "aws" else azure,
            )
        except ContinuityConfigError as error:
            raise CliEnvironmentError(str(error)) from None
        _run("failback", cloud, targets, reclaim_step(runner, chosen_reason, _warn), as_json)
        return
    runner = _continuity(cloud, connection.store, None, connection.data_dir, aws=aws, azure=azure)
    _run("failback", cloud, targets, runner.failback, as_json)


def _warn(warning: str) -> None:
    """A reclaim from the site's snapshot: loud on stderr (the cloud's progress is lost)."""
    err.print(escape(f"WARNING: {warning}"), style="bold red", soft_wrap=True)


def _continuity(
    cloud: Cloud,
    store: InstanceStore | None,
    keys: SnapshotKeys | None,
    data_dir: Path,
    *,
    aws: dict[str, Any],
    azure: dict[str, Any],
) -> CloudContinuity:
    """The cloud's continuity, its settings from the environment (over those a local
    cloud recorded in ``data_dir``: adapters/localcloud/record.py) overridden by the options given
    (``aws`` or ``azure``); a setting it cannot use exits 3."""
    environ = cloud_environment(data_dir)
    try:
        if cloud == "aws":
            from rustyflower.adapters.continuity.aws import AwsContinuity, AwsSettings  # noqa: PLC0415

            settings = AwsSettings.from_env(environ, **aws)
            return AwsContinuity(store, settings, keys=keys)
        from rustyflower.adapters.continuity.azure import AzureContinuity, AzureSettings  # noqa: PLC0415

        return AzureContinuity(store, AzureSettings.from_env(environ, **azure), keys=keys)
    except ContinuityConfigError as error:
        raise CliEnvironmentError(str(error)) from None


def start_in_cloud_command(
    connection: Connection,
    on: str,
    flow: str,
    flow_input: Any,
    *,
    version: str | None,
    instance_id: str | None,
    as_json: bool,
) -> None:
    """``rustyflower start FLOW --on aws|azure``: the instance starts in the cloud, found
    with the settings failover uses (docs/failover.md); one line (or JSON) says where."""
    from rustyflower.adapters.continuity.start import start_in_cloud  # noqa: PLC0415
    from rustyflower.adapters.redis.conductor import new_instance_id  # noqa: PLC0415

    cloud = _cloud(on, "--on")
    runner = _continuity(cloud, connection.store, None, connection.data_dir, aws={}, azure={})
    chosen = instance_id or new_instance_id()
    try:
        outcome = start_in_cloud(runner, flow, flow_input, instance_id=chosen, version=version)
    except ContinuityConfigError as error:
        raise CliEnvironmentError(str(error)) from None
    except ContinuityError as error:
        err.print(escape(f"error: {error}"), soft_wrap=True)
        raise typer.Exit(EXIT_FLOW_FAILED) from None
    if as_json:
        emit_json(outcome.as_dict())
        return
    print(outcome.instance_id)
    where = f" ({outcome.where})" if outcome.where and outcome.where != "local" else ""
    err.print(
        escape(
            f"started {outcome.flow} in {cloud}{where}, epoch {outcome.epoch}"
            if outcome.result != "finished"
            else f"{outcome.flow} finished in its first step ({outcome.status}); no cloud needed"
        ),
        soft_wrap=True,
    )


def _state_machines(values: list[str] | None) -> dict[str, str] | None:
    return dict(_pairs(values or [], "--state-machine")) or None


def _cloud(value: str, option: str) -> Cloud:
    chosen = value.strip().lower()
    for cloud in CLOUDS:
        if chosen == cloud:
            return cloud
    if not value:
        raise CliInputError(f"{option} is required: aws or azure")
    raise CliInputError(f"{option} {value!r}: use aws or azure")


def _run(
    action: Action,
    cloud: str,
    targets: list[str],
    step: Callable[[str], Outcome],
    as_json: bool,
) -> None:
    if not targets:
        if as_json:
            emit_json([])
        else:
            err.print(f"nothing to {action}: no eligible instance")
        return
    with _progress(
        len(targets),
        f"{action} {'to' if action == 'failover' else 'from'} {cloud}",
        enabled=not as_json and len(targets) > 1,
    ) as advance:
        try:
            outcomes = run_batch(targets, step, action=action, cloud=cloud, on_done=advance)
        except ContinuityConfigError as error:
            raise CliEnvironmentError(str(error)) from None
    failed = [outcome for outcome in outcomes if not outcome.ok]
    if as_json:
        emit_json([outcome.as_dict() for outcome in outcomes])
    else:
        _table(outcomes)
    error_lines(f"{outcome.instance_id}: {outcome.error}" for outcome in failed)
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.result] = counts.get(outcome.result, 0) + 1
    summary = ", ".join(f"{count} {result}" for result, count in sorted(counts.items()))
    err.print(escape(f"{action} {cloud}: {len(outcomes)} instance(s): {summary}"), soft_wrap=True)
    if failed:
        raise typer.Exit(EXIT_FLOW_FAILED)


@contextlib.contextmanager
def _progress(total: int, label: str, *, enabled: bool) -> Iterator[Callable[[Outcome], None]]:
    """A progress bar on stderr (terminals only); yields the callback for each outcome."""
    if not enabled or not err.is_terminal:
        yield lambda _outcome: None
        return
    from rich.progress import (  # noqa: PLC0415
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=total, failed=0)
        failures = 0

        def advance(outcome: Outcome) -> None:
            nonlocal failures
            failures += 0 if outcome.ok else 1
            progress.update(task, advance=1, failed=failures)

        yield advance


_RESULT_COLOURS = {
    "started": "green",
    "resumed": "green",
    "existing": "cyan",
    "reclaimed": "yellow",
    "failed": "red",
}


def _table(outcomes: Sequence[Outcome]) -> None:
    grid = table(
        "instance",
        "flow",
        "result",
        "epoch",
        "seq",
        "status",
        "where",
        "error",
        keep=("instance", "where"),
    )
    rows: list[list[str]] = []
    for outcome in outcomes:
        colour = _RESULT_COLOURS.get(outcome.result, "")
        result = f"[{colour}]{escape(outcome.result)}[/]" if colour else escape(outcome.result)
        rows.append(
            [
                escape(outcome.instance_id),
                escape(outcome.flow),
                result,
                "" if outcome.epoch is None else str(outcome.epoch),
                "" if outcome.seq is None else str(outcome.seq),
                escape(outcome.status or ""),
                escape(outcome.where or ""),
                escape(outcome.error or ""),
            ]
        )
    fit(grid, rows)
    show(grid)


# --- signal ---------------------------------------------------------------------------------


def signal_elsewhere(
    connection: Connection, instance_id: str, event: str, data: Any
) -> Delivery | None:
    """``rustyflower signal`` for an instance living in a cloud: deliver it there and say
    where; None when the instance is local (the caller signals it here)."""
    try:
        environ = cloud_environment(connection.data_dir)
        return deliver_signal(connection.store, instance_id, event, data, environ)
    except ContinuityConfigError as error:
        raise CliEnvironmentError(str(error)) from None
