"""How the CLI shows things: consoles, one-line errors, tables and timelines.

Colour and boxes when stdout is a terminal; plain text (no escape codes, no box
drawing, no truncation) when it is piped, so scripts and logs read it as it is.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from rustyflower.core.engine import Command, Event, Snapshot
from rustyflower.core.timeutil import parse_timestamp

if TYPE_CHECKING:
    from rustyflower.adapters.continuity.outcomes import CloudView

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

PLAIN_WIDTH = 400
"""Width used when stdout is not a terminal: long ids and outputs stay on one line."""

STATUS_COLOURS = {
    "succeeded": "green",
    "failed": "red",
    "cancelled": "yellow",
    "running": "blue",
    "held": "magenta",
    "paused": "magenta",
}


def error_lines(lines: Iterable[str]) -> None:
    for line in lines:
        err.print(f"[bold red]error:[/] {escape(line)}", soft_wrap=True)


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape  # noqa: PLC0415

    return rich_escape(text)


def emit_json(value: Any) -> None:
    """Machine-readable output: plain JSON on stdout, never coloured."""
    print(json.dumps(value, indent=2, default=str))


def table(*columns: str, keep: tuple[str, ...] = ()) -> Table:
    """A table; the ``keep`` columns (ids, times) are never wrapped or cut short."""
    terminal = out.is_terminal
    result = Table(
        box=box.SIMPLE_HEAD if terminal else None,
        show_edge=False,
        header_style="bold" if terminal else "",
        pad_edge=False,
        padding=(0, 1 if terminal else 2, 0, 0),
    )
    for column in columns:
        kept = column in keep
        result.add_column(column, no_wrap=kept, min_width=len(column) if kept else None)
    return result


def fit(grid: Table, rows: Sequence[Sequence[str]]) -> None:
    """Add rows; columns that must stay whole get at least the width of their longest cell."""
    for row in rows:
        grid.add_row(*row)
    for index, column in enumerate(grid.columns):
        if column.no_wrap:
            longest = max((len(Text.from_markup(row[index]).plain) for row in rows), default=0)
            column.min_width = max(column.min_width or 0, longest)


def show(renderable: Any) -> None:
    """A table: as it is on a terminal; plain, full width, no trailing blanks otherwise."""
    if out.is_terminal:
        out.print(renderable)
        return
    plain = Console(
        file=io.StringIO(), width=PLAIN_WIDTH, color_system=None, highlight=False, emoji=False
    )
    with plain.capture() as captured:
        plain.print(renderable)
    text = "\n".join(line.rstrip() for line in captured.get().splitlines())
    out.file.write(text + "\n")
    out.file.flush()


def status_text(status: str, held: bool = False) -> str:
    label = f"{status} (held)" if held and status == "running" else status
    colour = STATUS_COLOURS["held" if held and status == "running" else status] if status else ""
    return f"[{colour}]{escape(label)}[/]" if colour else escape(label)


def short_time(text: str | None) -> str:
    """'2026-01-02T03:04:05.678Z' -> '2026-01-02 03:04:05' (UTC), '' for nothing."""
    moment = parse_timestamp(text) if text else None
    if moment is None:
        return text or ""
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def compact(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, default=str, separators=(",", ":"))
    return text if len(text) <= limit or not out.is_terminal else text[: limit - 1] + "…"


# --- instances --------------------------------------------------------------------------


def instances_table(rows: Sequence[Mapping[str, Any]]) -> None:
    if not rows:
        err.print("no instances")
        return
    grid = table(
        "ID",
        "FLOW",
        "STATUS",
        "WHERE",
        "AT",
        "SEQ",
        "UPDATED (UTC)",
        keep=("ID", "FLOW", "STATUS", "WHERE", "UPDATED (UTC)"),
    )
    fit(
        grid,
        [
            (
                escape(row["instance_id"]),
                escape(f"{row['flow']}@{row['version']}"),
                status_text(row["status"], row["held"]),
                escape(f"{row.get('owner') or 'local'} (epoch {row['epoch']})"),
                escape(", ".join(row.get("positions") or [])) or "-",
                str(row["seq"]),
                short_time(row["updated_at"]),
            )
            for row in rows
        ],
    )
    show(grid)


def where_text(summary: Mapping[str, Any]) -> str:
    """'aws (epoch 3, since 2026-12-05 07:10:02 UTC)': who owns an instance, and since when."""
    since = summary.get("owner_since")
    when = f", since {short_time(since)} UTC" if since else ""
    return f"{summary['owner']} (epoch {summary['epoch']}{when})"


def cloud_rows(view: CloudView) -> list[tuple[str, str]]:
    """What the cloud said of an instance living there, or the one row saying it could not
    be asked (values are rich markup)."""
    if not view.asked:
        return [("cloud", f"[yellow]{escape(view.problem or 'not asked')}[/]")]
    rows = [("cloud status", escape(view.status or "?"))]
    if view.positions:
        seq = f" (seq {view.seq})" if view.seq is not None else ""
        rows.append(("cloud at", escape(", ".join(view.positions) + seq)))
    if view.where:
        rows.append(("cloud run", escape(view.where)))
    return rows


def key_values(rows: list[tuple[str, str]]) -> None:
    """Label/value lines; the values are rich markup (escape user text)."""
    grid = Table(show_header=False, box=None, pad_edge=False)
    grid.add_column(style="bold" if out.is_terminal else "")
    grid.add_column()
    for label, value in rows:
        grid.add_row(escape(label), value)
    show(grid)


def history_timeline(entries: Sequence[Mapping[str, Any]]) -> None:
    """A stored history (``RedisStore.history``), one line per entry."""
    started: datetime | None = None
    for entry in entries:
        at = parse_timestamp(entry.get("at"))
        started = started or at
        offset = (at - started).total_seconds() if at and started else 0.0
        _timeline_line(
            offset,
            int(entry.get("seq", 0)),
            str(entry.get("kind", "")),
            str(entry.get("position") or ""),
            entry.get("detail"),
        )


def _timeline_line(offset: float, seq: int, kind: str, position: str, detail: Any) -> None:
    detail_text = "" if detail is None else json.dumps(detail, default=str)
    out.print(
        f"[dim]{offset:8.3f}s #{seq:<3}[/] {escape(kind):<16} "
        f"[cyan]{escape(position)}[/] [dim]{escape(detail_text)}[/]",
        soft_wrap=True,
    )


class Timeline:
    """Prints each transition's history entries as they happen (``rustyflower run``)."""

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
            _timeline_line(offset, entry.seq, entry.kind, entry.position, entry.detail)
        self.seen = snapshot.seq


def print_result(result: Mapping[str, Any], hint_events: bool = True) -> None:
    """The end of an instance: status line, then its output or its error."""
    status = str(result["status"])
    colour = STATUS_COLOURS.get(status, "blue")
    out.print(f"[bold {colour}]{status}[/] instance {escape(str(result['instance_id']))}")
    if status == "succeeded":
        if out.is_terminal:
            out.print_json(json.dumps(result["output"], default=str))
        else:
            print(json.dumps(result["output"], indent=2, default=str))
    elif status in ("waiting", "running"):
        waiting = ", ".join(result.get("waiting_at") or result.get("positions") or [])
        hint = " (use --event NAME=JSON)" if hint_events else ""
        out.print(f"waiting at {escape(waiting)}{hint}", soft_wrap=True)
    else:
        out.print(f"{escape(str(result['error']))}: {escape(str(result['cause']))}", soft_wrap=True)


# --- flows, schedules, limits -------------------------------------------------------------


def flows_table(flows: Sequence[Mapping[str, Any]]) -> None:
    if not flows:
        err.print("no flows registered (rustyflower flows register FILE)")
        return
    grid = table("FLOW", "LATEST", "VERSIONS")
    for flow in flows:
        grid.add_row(
            escape(flow["name"]), escape(flow["latest"]), escape(", ".join(flow["versions"]))
        )
    show(grid)


def schedules_table(rows: Sequence[Mapping[str, Any]]) -> None:
    if not rows:
        err.print("no schedules (rustyflower schedule add NAME --flow F --cron EXPR)")
        return
    grid = table(
        "NAME", "FLOW", "CRON", "ZONE", "STATE", "OVERLAP", "CATCH-UP", "NEXT (UTC)", "LAST (UTC)",
        keep=("NAME", "CRON", "STATE", "NEXT (UTC)"),
    )  # fmt: skip
    cells = []
    for row in rows:
        flow = row["flow"] + (f"@{row['version']}" if row.get("version") else "")
        state = "[magenta]paused[/]" if row["paused"] else "[green]active[/]"
        last = short_time(row.get("last_fire"))
        cells.append(
            (
                escape(row["name"]),
                escape(flow),
                escape(row["cron"]),
                escape(row["timezone"]),
                state,
                escape(row["overlap"]),
                escape(row["catch_up"]),
                escape(short_time(row.get("next_fire"))) or "-",
                escape(last) or "-",
            )
        )
    fit(grid, cells)
    show(grid)


def limits_table(rows: Sequence[Mapping[str, Any]]) -> None:
    if not rows:
        err.print("no limits set (rustyflower limits set ...)")
        return
    grid = table("LIMIT", "TARGET", "VALUE")
    for row in rows:
        grid.add_row(escape(row["limit"]), escape(row["target"] or "-"), escape(row["value"]))
    show(grid)


def workers_table(report: Mapping[str, Any], now: float) -> None:
    """The workers' heartbeats (health, activities) and work no live worker can run."""
    workers = report["workers"]
    if not workers:
        err.print("no worker is running (none renewed its heartbeat lately)")
    else:
        grid = table(
            "WORKER", "HEALTH", "SEEN", "UP", "THREADS", "ACTIVITIES", "RUN", "ROUTED AWAY",
            keep=("WORKER", "HEALTH"),
        )  # fmt: skip
        cells = []
        for worker in workers:
            threads = worker.get("threads", {})
            failing = sorted(n for n, t in threads.items() if t.get("failing_since"))
            health = "[green]healthy[/]" if worker.get("healthy") else "[red]unhealthy[/]"
            thread_text = f"{len(threads)} ok" if not failing else f"{len(failing)} failing"
            routed = ", ".join(f"{a} ({n})" for a, n in sorted(worker["routed_away"].items()))
            cells.append(
                (
                    escape(worker["name"]),
                    health,
                    f"{max(0.0, now - worker['at']):.0f}s ago",
                    _duration(now - worker["started_at"]),
                    escape(thread_text),
                    escape(", ".join(worker["activities"]) or "(none)"),
                    str(worker["stats"]["activities"]),
                    escape(routed or "-"),
                )
            )
        fit(grid, cells)
        show(grid)
        for worker in workers:
            for problem in worker.get("problems", []):
                err.print(f"[red]{escape(worker['name'])}:[/] {escape(problem)}", soft_wrap=True)
    for waiting in report["waiting"]:
        able = waiting["workers"]
        who = f"run by {', '.join(able)}" if able else "[bold red]no running worker has it[/]"
        err.print(
            f"{waiting['messages']} message(s) wait for activity "
            f"{escape(waiting['activity'])}: {who}",
            soft_wrap=True,
        )


def _duration(seconds: float) -> str:
    """'3d', '5h', '12m', '40s': the largest whole unit."""
    whole = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size:
            return f"{whole // size}{unit}"
    return f"{whole}s"
