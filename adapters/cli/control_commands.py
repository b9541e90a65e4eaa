"""Act on one instance: ``signal``, ``hold``, ``release``, ``cancel``, ``retry``,
``snapshot``, ``resume``.

Every command but ``snapshot`` and ``resume`` works through ``rustyflower.client.Client``
(``Connection.public_client``), as a program would, and lets RustyFlower and Redis
errors through; the ``rustyflower`` group turns them into one line and an exit code
(``errors.describe_error``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from rustyflower.adapters.cli.context import connection_of
from rustyflower.adapters.cli.continuity_commands import signal_elsewhere
from rustyflower.adapters.cli.errors import CliEnvironmentError
from rustyflower.adapters.cli.files import (
    STDIO,
    check_writable,
    read_input_file,
    signed_export,
    write_output,
)
from rustyflower.adapters.cli.loading import CliInputError, parse_json_argument
from rustyflower.adapters.cli.options import InstanceArgument, JsonOption, command
from rustyflower.adapters.cli.render import emit_json, err, escape, out
from rustyflower.client import ContinuityConfigError, InstanceStatus
from rustyflower.core.instance_store import DISCARDED_KIND

ReasonOption = Annotated[str | None, typer.Option(help="Why (kept in the history).")]


def _control_done(action: str, status: InstanceStatus, as_json: bool = False) -> None:
    """One line saying what was done and where the instance stands (``--json``: an object)."""
    if as_json:
        emit_json(_control_result(action, status))
        return
    state = status.status + (" (held)" if status.held else "")
    where = ", ".join(status.positions)
    out.print(
        f"{escape(action)}: {escape(status.instance_id)} is {escape(state)}"
        + (f" at {escape(where)}" if where and not status.finished else "")
        + f" (seq {status.seq})",
        soft_wrap=True,
    )


def _control_result(action: str, status: InstanceStatus) -> dict[str, Any]:
    return {
        "action": action,
        "instance_id": status.instance_id,
        "status": status.status,
        "held": status.held,
        "positions": [] if status.finished else list(status.positions),
        "seq": status.seq,
        "epoch": status.epoch,
    }


@command("signal")
def signal_instance(
    ctx: typer.Context,
    instance_id: InstanceArgument,
    event: Annotated[str, typer.Argument(help="The event name.", show_default=False)],
    data: Annotated[
        str, typer.Option("--data", "-d", help="JSON payload, or @file.json.")
    ] = "null",
    as_json: JsonOption = False,
) -> None:
    """Deliver an external event to an instance that waits for it (wherever it lives)."""
    payload = parse_json_argument(data, "--data")
    connection = connection_of(ctx)
    # in a cloud: delivered with the settings a local cloud recorded in --data-dir over
    # the environment's (adapters/localcloud/record.py), which the public client cannot see
    delivered = signal_elsewhere(connection, instance_id, event, payload)
    if delivered is not None:
        cloud, detail = delivered.cloud, delivered.detail
    else:
        try:
            receipt = connection.public_client.signal(instance_id, event, payload)
        except ContinuityConfigError as error:
            raise CliEnvironmentError(str(error)) from None
        if receipt.status is not None:
            _control_done(f"delivered {event}", receipt.status, as_json)
            return
        cloud, detail = str(receipt.cloud), receipt.detail or ""
    # it lives in AWS or Azure
    if as_json:
        emit_json(
            {
                "action": f"delivered {event}",
                "instance_id": instance_id,
                "cloud": cloud,
                "detail": detail,
            }
        )
    else:
        detail = f" ({detail})" if detail else ""
        message = f"delivered {event}: {instance_id} lives in {cloud}{detail}"
        out.print(escape(message), soft_wrap=True)


@command("hold")
def hold(
    ctx: typer.Context,
    instance_id: InstanceArgument,
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Pause an instance: nothing new is dispatched until `release`."""
    client = connection_of(ctx).public_client
    _control_done("held", client.hold(instance_id, reason), as_json)


@command("release")
def release(
    ctx: typer.Context,
    instance_id: InstanceArgument,
    as_json: JsonOption = False,
) -> None:
    """Resume a held instance."""
    client = connection_of(ctx).public_client
    _control_done("released", client.release(instance_id), as_json)


@command("cancel")
def cancel(
    ctx: typer.Context,
    instance_id: InstanceArgument,
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel an instance (its running work's results will be refused)."""
    client = connection_of(ctx).public_client
    _control_done("cancelled", client.cancel(instance_id, reason), as_json)


@command("retry")
def retry(
    ctx: typer.Context,
    instance_id: InstanceArgument,
    as_json: JsonOption = False,
) -> None:
    """Run a failed instance again from the step where it failed."""
    client = connection_of(ctx).public_client
    _control_done("retrying", client.retry(instance_id), as_json)


# --- snapshots ------------------------------------------------------------------------------


@command("snapshot")
def snapshot(
    ctx: typer.Context,
    instance_id: InstanceArgument,
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Write here ('-': stdout).", show_default=False)
    ],
) -> None:
    """Write an instance's stored snapshot to a file, signed when signing keys are set."""
    check_writable(output, "-o ")
    # not Client.snapshot, which verifies with this process's keys first: the command
    # exports what the store holds, signing an unsigned store's bytes when it has a key
    connection = connection_of(ctx)
    data = signed_export(connection.conductor.export(instance_id), f"the snapshot of {instance_id}")
    info = connection.store.info(instance_id)
    write_output(output, data, "-o ")
    if str(output) == STDIO:
        return
    err.print(
        f"wrote {escape(str(output))}: {escape(instance_id)} {info.status}, "
        f"seq {info.seq}, epoch {info.epoch} ({len(data)} bytes)",
        soft_wrap=True,
    )


@command("resume")
def resume(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A snapshot file ('-': stdin).")],
    take_ownership: Annotated[
        bool,
        typer.Option(
            "--take-ownership",
            help="Raise the epoch: the instance's previous owner may no longer advance it.",
        ),
    ] = False,
    discard_newer_state: Annotated[
        bool,
        typer.Option(
            "--discard-newer-state",
            help=(
                "DANGER, with --take-ownership: accept a snapshot older than what this "
                "store holds. The newer state is lost and the steps after the snapshot run "
                "again; the rollback is recorded in the instance's history."
            ),
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Continue a snapshot here; refused when this store has the instance at a newer epoch
    or further along (also with --take-ownership: see --discard-newer-state)."""
    if discard_newer_state and not take_ownership:
        raise CliInputError("--discard-newer-state needs --take-ownership (a new epoch)")
    data = read_input_file(file)
    connection = connection_of(ctx)
    resumed = connection.conductor.resume(
        data, take_ownership=take_ownership, discard_newer_state=discard_newer_state
    )
    if discard_newer_state:
        last = connection.store.history(resumed.instance_id)[-1:]
        if last and last[0].get("kind") == DISCARDED_KIND and last[0].get("seq") == resumed.seq:
            detail = last[0].get("detail") or {}
            err.print(
                escape(
                    f"warning: discarded the newer state of {resumed.instance_id} (seq "
                    f"{detail.get('discarded_seq')}, epoch {detail.get('discarded_epoch')}, "
                    f"{detail.get('discarded_status')}); it continues from the snapshot's seq "
                    f"{detail.get('resumed_seq')} (recorded in its history)"
                ),
                soft_wrap=True,
            )
    status = connection.public_client.status(resumed.instance_id)
    _control_done(f"resumed (epoch {resumed.epoch})", status, as_json)
