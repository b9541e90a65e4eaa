"""`make demo`: the order flow end to end on the zero-config default (embedded Valkey).

Starts an embedded Valkey with append-only persistence under .rustyflower/demo, a worker
and the order flow; approves the order when it waits for approval; prints the timeline
the store recorded. Run again: earlier orders are still in the store.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path

from rich.console import Console

from examples.order.activities import registry
from rustyflower.adapters.redis.conductor import Conductor
from rustyflower.adapters.redis.connection import EmbeddedValkey, connect
from rustyflower.adapters.redis.store import RedisStore
from rustyflower.adapters.redis.worker import Worker, WorkerOptions
from rustyflower.core.model import load_definition
from rustyflower.core.timeutil import parse_timestamp

HERE = Path(__file__).parent
console = Console(highlight=False)


def wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise SystemExit(f"demo: timed out waiting for {what}")


def main() -> None:
    server = EmbeddedValkey(Path(".rustyflower/demo"))
    url = server.start()
    console.print(f"[bold]embedded Valkey[/] at {url} (data in .rustyflower/demo, append-only)")
    store = RedisStore(connect(url))
    conductor = Conductor(store)
    worker = Worker(store, registry, WorkerOptions(concurrency=2, name="demo"))
    try:
        definition = registry.apply_defaults(
            load_definition((HERE / "order" / "flow.yaml").read_text(), source="order/flow.yaml")
        )
        store.register(definition)
        worker.start()
        order = json.loads((HERE / "order" / "input.json").read_text())
        snapshot = conductor.start("order", order)
        instance_id = snapshot.instance_id
        console.print(f"started order [cyan]{instance_id}[/] for {order['total']:.2f}")
        wait_for(
            lambda: "Await approval" in store.load(instance_id, fresh=True).positions,
            30,
            "the approval step",
        )
        console.print("the order waits for approval: approving it")
        conductor.signal(instance_id, "approval", {"approved": True, "by": "demo"})
        wait_for(lambda: store.load(instance_id, fresh=True).finished, 30, "the end of the flow")
        final = store.load(instance_id, fresh=True)
        print_timeline(store.history(instance_id))
        colour = "green" if final.status == "succeeded" else "red"
        console.print(f"\n[bold {colour}]{final.status}[/] after {final.seq} transitions")
        console.print_json(json.dumps(final.state.output))
        total = len(store.list_instances(flow="order"))
        console.print(f"[dim]{total} order instance(s) in the store so far[/]")
        if final.status != "succeeded":
            sys.exit(1)
    finally:
        worker.stop(timeout=5)
        server.stop()


def print_timeline(history: list[dict[str, object]]) -> None:
    console.print("\n[bold]timeline[/]")
    first: datetime | None = None
    for entry in history:
        at = parse_timestamp(entry["at"])
        first = first or at
        offset = (at - first).total_seconds() if at and first else 0.0
        detail = "" if entry.get("detail") is None else json.dumps(entry["detail"])
        console.print(
            f"[dim]{offset:7.3f}s #{entry['seq']:<3}[/] {entry['kind']:<16} "
            f"[cyan]{entry['position']}[/] [dim]{detail}[/]",
            soft_wrap=True,
        )


if __name__ == "__main__":
    main()
