# ruff: noqa: PLR0917 - typer turns each parameter of a command into an option
"""Act on one instance: ``signal``, ``hold``, ``release``, ``cancel``, ``retry``,
``snapshot``, ``resume``.

Every command connects through ``adapters.cli.context`` and lets RustyFlower and Redis
errors through; the ``rustyflower`` group turns them into one line and an exit code
(``context.describe_error``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from rustyflower.adapters.cli.context import (
    Connection,
    DataDirOption,
    PrefixOption,
    RedisUrlOption,
)
from rustyflower.adapters.cli.loading import (
    CliInputError,
    parse_json_argument,
)
from rustyflower.adapters.cli.options import (
    InstanceArgument,
    command,
)
from rustyflower.adapters.cli.render import (
    err,
    escape,
    out,
)
from rustyflower.adapters.redis.connection import (
    DEFAULT_DATA_DIR,
)
from rustyflower.core.engine import (
    Snapshot,
)
from rustyflower.core.instance_store import DISCARDED_KIND

ReasonOption = Annotated[str | None, typer.Option(help="Why (kept in the history).")]


def _control_done(action: str, snapshot: Snapshot) -> None:
    state = snapshot.status + (" (held)" if snapshot.state.held else "")
    where = ", ".join(snapshot.positions)
    out.print(
        f"{escape(action)}: {escape(snapshot.instance_id)} is {escape(state)}"
        + (f" at {escape(where)}" if where and not snapshot.finished else "")
        + f" (seq {snapshot.seq})",
        soft_wrap=True,
    )


@command("signal")
def signal_instance(
    instance_id: InstanceArgument,
    event: Annotated[str, typer.Argument(help="The event name.", show_default=False)],
    data: Annotated[
        str, typer.Option("--data", "-d", help="JSON payload, or @file.json.")
    ] = "null",
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = "rf",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Deliver an external event to an instance that waits for it."""
    payload = parse_json_argument(data, "--data")
    connection = Connection(redis_url, prefix, data_dir)
    from rustyflower.adapters.cli.continuity_commands import signal_elsewhere  # noqa: PLC0415

    if signal_elsewhere(connection, instance_id, event, payload):  # it lives in AWS or Azure
        return
    transition = connection.conductor.signal(instance_id, event, payload)
    _control_done(f"delivered {event}", transition.snapshot)


@command("hold")
def hold(
    instance_id: InstanceArgument,
    reason: ReasonOption = None,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = "rf",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Pause an instance: nothing new is dispatched until `release`."""
    conductor = Connection(redis_url, prefix, data_dir).conductor
    _control_done("held", conductor.hold(instance_id, reason).snapshot)


@command("release")
def release(
    instance_id: InstanceArgument,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = "rf",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Resume a held instance."""
    conductor = Connection(redis_url, prefix, data_dir).conductor
    _control_done("released", conductor.release(instance_id).snapshot)


@command("cancel")
def cancel(
    instance_id: InstanceArgument,
    reason: ReasonOption = None,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = "rf",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Cancel an instance (its running work's results will be refused)."""
    conductor = Connection(redis_url, prefix, data_dir).conductor
    _control_done("cancelled", conductor.cancel(instance_id, reason).snapshot)


@command("retry")
def retry(
    instance_id: InstanceArgument,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = "rf",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Run a failed instance again from the step where it failed."""
    conductor = Connection(redis_url, prefix, data_dir).conductor
    _control_done("retrying", conductor.retry_failed(instance_id).snapshot)


# --- snapshots ------------------------------------------------------------------------------


@command("snapshot")
def snapshot(
    instance_id: InstanceArgument,
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Write here ('-': stdout).", show_default=False)
    ],
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = "rf",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Write an instance's stored (signed) snapshot to a file."""
    connection = Connection(redis_url, prefix, data_dir)
    data = connection.conductor.export(instance_id)
    info = connection.store.info(instance_id)
    if str(output) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        output.write_bytes(data)
    except OSError as error:
        raise CliInputError(f"{output}: cannot write: {error.strerror}") from None
    err.print(
        f"wrote {escape(str(output))}: {escape(instance_id)} {info.status}, "
        f"seq {info.seq}, epoch {info.epoch} ({len(data)} bytes)",
        soft_wrap=True,
    )


@command("resume")
def resume(
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
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = "rf",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Continue a snapshot here; refused when this store has the instance at a newer epoch
    or further along (also with --take-ownership: see --discard-newer-state)."""
    if discard_newer_state and not take_ownership:
        raise CliInputError("--discard-newer-state needs --take-ownership (a new epoch)")
    if str(file) == "-":
        data = sys.stdin.buffer.read()
    else:
        try:
            data = file.read_bytes()
        except OSError as error:
            raise CliInputError(f"{file}: cannot read: {error.strerror}") from None
    connection = Connection(redis_url, prefix, data_dir)
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
    _control_done(f"resumed (epoch {resumed.epoch})", resumed)
