"""`make demo`: the order flow end to end on the zero-config default (embedded Valkey).

Starts an embedded Valkey with append-only persistence under .rustyflower/demo, a worker
and the order flow; approves the order when it waits for approval; prints the timeline
the store recorded. Run again: earlier orders are still in the store. Everything here
uses the public face only (rustyflower, rustyflower.client, rustyflower.worker).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from rich.console import Console

from examples.order.activities import registry
from rustyflower import read_definition
from rustyflower.client import Client, HistoryEntry
from rustyflower.worker import EmbeddedServer, Worker

HERE = Path(__file__).parent
console = Console(highlight=False)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise SystemExit(f"demo: timed out waiting for {what}")


def main() -> None:
    with EmbeddedServer(Path(".rustyflower/demo")) as server:
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
            total = len(client.instances(flow="order", limit=100_000))
            console.print(f"[dim]{total} order instance(s) in the store so far[/]")
    if final.status != "succeeded":
        sys.exit(1)


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
