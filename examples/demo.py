"""`make demo`: the order flow end to end on the zero-config default (embedded Valkey),
then the lifeboat: one more order fails over to a local AWS and back.

Starts an embedded Valkey with append-only persistence under .rustyflower/demo, a worker
and the order flow; approves the order when it waits for approval; prints the timeline
the store recorded. Then (examples/lifeboat.py) a second order waits for its approval,
fails over to `rustyflower cloud aws` (started at the beginning, so it boots meanwhile),
is approved there, fails back once AWS finished it, and the demo prints where each step
ran and checks its output against the first order's. Run again: earlier orders are still
in the store. Everything here uses the public face only (rustyflower, rustyflower.client,
rustyflower.worker) and the `rustyflower` command.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from examples.lifeboat import DemoError, LocalAws, sail, wait_for, where_each_step_ran
from examples.order.activities import registry
from rustyflower import read_definition
from rustyflower.client import Client, HistoryEntry
from rustyflower.worker import EmbeddedServer, Worker

HERE = Path(__file__).parent
DATA = Path(".rustyflower/demo")
console = Console(highlight=False)


def main() -> None:
    # the local AWS boots (a few seconds) while the first order runs on premises
    cloud = LocalAws(DATA)
    try:
        cloud.start()
        ok = run(cloud)
    except DemoError as error:
        console.print(f"[bold red]demo:[/] {escape(str(error))}", soft_wrap=True)
        ok = False
    finally:
        cloud.stop()
    if not ok:
        sys.exit(1)


def run(cloud: LocalAws) -> bool:
    with EmbeddedServer(DATA) as server:
        console.print(
            f"[bold]embedded Valkey[/] at {server.url} (data in .rustyflower/demo, append-only)",
            soft_wrap=True,
        )
        with (
            Client.connect(server.url) as client,
            Worker(client, registry, concurrency=2, name="demo", grace_period=5),
        ):
            client.register(read_definition(HERE / "order" / "flow.yaml"), activities=registry)
            order = json.loads((HERE / "order" / "input.json").read_text())
            instance = client.start("order", order)
            console.print(f"started order [cyan]{instance.id}[/] for {order['total']:.2f}")
            wait_for(
                lambda: "Await approval" in instance.status().positions, 30, "the approval step"
            )
            console.print("the order waits for approval: approving it")
            instance.signal("approval", {"approved": True, "by": "demo"})
            final = instance.wait(timeout=30)
            print_timeline(instance.history())
            colour = "green" if final.status == "succeeded" else "red"
            console.print(f"\n[bold {colour}]{final.status}[/] after {final.seq} transitions")
            console.print_json(json.dumps(final.output))
            if final.status != "succeeded":
                return False
            lifeboat = sail(client, cloud, order, console)
            console.print()
            console.print(where_each_step_ran(lifeboat.history()))
            back = lifeboat.status()
            same = without_key(back.output) == without_key(final.output)
            verdict = "[green]the same output[/] as" if same else "[red]another output[/] than"
            console.print(
                f"[bold]{back.status}[/] on the site again, with {verdict} the on-premises "
                "order (but the payment's idempotency key, which names the instance)",
                soft_wrap=True,
            )
            total = len(client.instances(flow="order", limit=100_000))
            console.print(f"[dim]{total} order instance(s) in the store so far[/]")
    return same


def without_key(output: Any) -> Any:
    """The output without the payment's idempotency key: the only part of it that depends
    on the instance's id rather than on what it did."""
    payment = {k: v for k, v in output["payment"].items() if k != "idempotency_key"}
    return {**output, "payment": payment}


def print_timeline(history: list[HistoryEntry]) -> None:
    console.print("\n[bold]timeline[/]")
    first: datetime | None = None
    for entry in history:
        at = datetime.fromisoformat(entry.at)
        first = first or at
        offset = (at - first).total_seconds()
        detail = "" if entry.detail is None else json.dumps(entry.detail)
        console.print(
            f"[dim]{offset:7.3f}s #{entry.seq:<3}[/] {entry.kind:<16} "
            f"[cyan]{entry.position}[/] [dim]{detail}[/]",
            soft_wrap=True,
        )


if __name__ == "__main__":
    main()
