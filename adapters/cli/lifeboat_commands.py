# ruff: noqa: PLR0917 - typer turns each parameter of a command into an option
"""``rustyflower replicate``: the lifeboat's site side in a process of its own.

It ships every changed instance to the clouds' replica stores, renews the site lease in
each cloud, applies a takeover it finds there before anything else, and publishes its
status (lag, backlog, leases) in Redis; ``--status`` prints that status. ``rustyflower
worker --replicate`` runs the same inside the worker (``serve_commands``). The logic is
``adapters.continuity.site_agent``; docs/failover.md ("Replication, lease and
watchdog") is the runbook.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from typing import Annotated, Any

import typer

from rustyflower.adapters.cli.context import Connection, connection_of, snapshot_keys
from rustyflower.adapters.cli.errors import CliEnvironmentError
from rustyflower.adapters.cli.logs import configure_logging
from rustyflower.adapters.cli.options import JsonOption, command
from rustyflower.adapters.cli.render import emit_json, escape, fit, out, show, table
from rustyflower.adapters.continuity.errors import ContinuityConfigError
from rustyflower.adapters.continuity.lifeboat_setup import LifeboatSettings, build_agent
from rustyflower.adapters.continuity.replication import (
    DEFAULT_COMPACT_EVERY,
    DEFAULT_PARALLEL,
    DEFAULT_SETTLE,
)
from rustyflower.adapters.continuity.site_agent import AgentOptions, SiteAgent
from rustyflower.core.errors import RustyFlowerError

__all__ = ["lifeboat_agent", "replicate"]

log = logging.getLogger("rustyflower.cli")
_PANEL = "Lifeboat"

ToOption = Annotated[
    str | None,
    typer.Option(
        "--to",
        help="aws, azure or aws,azure (env: RUSTYFLOWER_REPLICATE_TO).",
        show_default=False,
        rich_help_panel=_PANEL,
    ),
]
SiteOption = Annotated[
    str | None,
    typer.Option(
        "--site",
        help="The site's id in the clouds (env: RUSTYFLOWER_SITE_ID).",
        show_default=False,
        rich_help_panel=_PANEL,
    ),
]
TakeoverOption = Annotated[
    str | None,
    typer.Option(
        "--takeover-cloud",
        help="Whose watchdog may take the site over: aws, azure or none "
        "(env: RUSTYFLOWER_TAKEOVER_CLOUD; default: the one cloud replicated to).",
        show_default=False,
        rich_help_panel=_PANEL,
    ),
]


def lifeboat_agent(
    connection: Connection,
    name: str,
    *,
    to: str | None = None,
    site: str | None = None,
    takeover_cloud: str | None = None,
    parallel: int | None = None,
    settle: float | None = None,
    compact_every: float | None = None,
) -> SiteAgent:
    """The site agent of the settings (options over the environment); a missing or bad
    setting is a CliEnvironmentError (exit 3)."""
    from rustyflower.adapters.redis.lifeboat_feed import RedisReplicationFeed  # noqa: PLC0415

    try:
        settings = LifeboatSettings.from_env(
            os.environ, to=to, site=site, takeover_by=takeover_cloud
        )
        store = connection.store
        agent = build_agent(
            settings,
            store,
            feed=RedisReplicationFeed(store),
            keys=snapshot_keys(),
            options=AgentOptions(name=name),
            parallel=parallel or DEFAULT_PARALLEL,
            settle=DEFAULT_SETTLE if settle is None else settle,
            compact_every=DEFAULT_COMPACT_EVERY if compact_every is None else compact_every,
        )
    except (ContinuityConfigError, ValueError) as error:
        raise CliEnvironmentError(str(error)) from None
    except RustyFlowerError as error:  # e.g. no signing key: the cloud refuses unsigned
        raise CliEnvironmentError(str(error)) from None
    return agent


@command("replicate")
def replicate(
    ctx: typer.Context,
    to: ToOption = None,
    site: SiteOption = None,
    takeover_cloud: TakeoverOption = None,
    parallel: Annotated[
        int, typer.Option(min=1, max=256, help="Writes to each cloud at once while compacting.")
    ] = DEFAULT_PARALLEL,
    settle: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=60.0,
            help="Seconds a change waits before it is shipped: an instance that changes "
            "again (or finishes) meanwhile is written once (or not at all).",
        ),
    ] = DEFAULT_SETTLE,
    compact_every: Annotated[
        float,
        typer.Option(
            min=0.5,
            max=3600.0,
            help="Seconds between two compactions: each round ships one segment per cloud, "
            "folded into one object per instance this often (what a watchdog reads beyond "
            "those objects is at most this much of the site's changes).",
        ),
    ] = DEFAULT_COMPACT_EVERY,
    status: Annotated[
        bool, typer.Option("--status", help="Print the running replicator's status and exit.")
    ] = False,
    as_json: JsonOption = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Ship every changed instance to the clouds, renew the site lease there (the lifeboat).

    Runs until SIGTERM or Ctrl-C. Before anything runs it checks the lease in each cloud
    and applies a takeover found there (those instances live in the cloud from then on).
    Several may run: one leads (ships and renews), the others wait. --status prints the
    leader's report (lag = the RPO now; exit 3 when no replicator reports).
    """
    connection = connection_of(ctx)
    if status:
        _print_status(connection, as_json)
        return
    configure_logging(verbose)
    name = f"replicate-{socket.gethostname()}-{os.getpid()}"
    agent = lifeboat_agent(
        connection,
        name,
        to=to,
        site=site,
        takeover_cloud=takeover_cloud,
        parallel=parallel,
        settle=settle,
        compact_every=compact_every,
    )
    stop = threading.Event()
    previous = {
        signum: signal.signal(signum, lambda *_: stop.set())
        for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        log.info(
            "site %s: replicating to %s; checking the site lease first",
            agent.site,
            ", ".join(agent.replicator.targets),
        )
        agent.prepare(stop)
        agent.run(stop)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        agent.replicator.close()


def _print_status(connection: Connection, as_json: bool) -> None:
    from rustyflower.adapters.redis.lifeboat_feed import RedisReplicationFeed  # noqa: PLC0415

    report = RedisReplicationFeed(connection.store).last_report()
    if report is None:
        raise CliEnvironmentError(
            "no replicator has reported lately: is `rustyflower replicate` (or a worker "
            "with --replicate) running against this Redis and prefix?"
        )
    if as_json:
        emit_json(report)
        return
    out.print(
        f"site {escape(str(report.get('site')))}: replicated by {escape(str(report.get('agent')))}"
        f" (reported {escape(str(report.get('at')))})",
        soft_wrap=True,
    )
    targets = table(
        "cloud",
        "where",
        "lag s",
        "backlog",
        "p50 s",
        "p99 s",
        "max s",
        "shipped",
        "state",
        keep=("cloud",),
    )
    rows = []
    for cloud, found in sorted((report.get("targets") or {}).items()):
        window = found.get("window") or {}
        rows.append(
            [
                cloud,
                escape(str(found.get("where"))),
                _seconds(found.get("lag_seconds")),
                str(found.get("backlog")),
                _seconds(window.get("p50")),
                _seconds(window.get("p99")),
                _seconds(window.get("max")),
                str(found.get("shipped")),
                "ok"
                if found.get("reachable")
                else escape(f"unreachable: {found.get('last_error')}"),
            ]
        )
    fit(targets, rows)
    show(targets)
    leases = table("cloud", "lease", "state", "term", "renewed at", "takeover by", keep=("cloud",))
    rows = [
        [
            cloud,
            escape(str(found.get("where"))),
            escape(
                str(found.get("state"))
                + (f": {found.get('last_error')}" if found.get("last_error") else "")
            ),
            str(found.get("term")),
            escape(str(found.get("renewed_at"))),
            escape(str(found.get("takeover_by") or "none")),
        ]
        for cloud, found in sorted((report.get("leases") or {}).items())
    ]
    fit(leases, rows)
    show(leases)


def _seconds(value: Any) -> str:
    return "-" if value is None else f"{float(value):.3f}"


def run_alongside(agent: SiteAgent, stop: threading.Event) -> threading.Thread:
    """The agent's loop in a thread of its own (inside a worker)."""

    def loop() -> None:
        while not stop.is_set():
            try:
                agent.run(stop)
            except Exception:  # the worker goes on; the lifeboat starts again
                log.exception("the lifeboat agent failed; starting it again in 5 s")
                stop.wait(5)

    thread = threading.Thread(target=loop, name="rustyflower-lifeboat", daemon=True)
    thread.start()
    return thread
