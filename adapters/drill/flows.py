"""The drill's flows and activities, shipped in the package so a laptop needs nothing else.

Together the flows use tasks, a wait, an event wait, a parallel, a map and sub-flows (one
started in the parallel, before the event, one after it).
The one activity, ``drill_score``, is deterministic and records each execution in a JSON
lines ledger (``RUSTYFLOWER_DRILL_LEDGER``), a file outside the site, so that it survives
the site's loss: the drill counts from it the calls executed twice under distinct keys. A
call whose key is recorded already returns the recorded result (it honours the key), as
an idempotent activity should, and is noted as a repeat: the calls a takeover asked again
under the same key, which the activity did not execute again.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from rustyflower.core.activities import ActivityRegistry, current_call
from rustyflower.core.model import FlowDefinition, parse_definition

__all__ = [
    "CHILD",
    "EVENT",
    "FLOWS",
    "LEDGER_VARIABLE",
    "MAIN",
    "event_data",
    "flow_input",
    "registry",
]

LEDGER_VARIABLE = "RUSTYFLOWER_DRILL_LEDGER"
EVENT = "approval"

registry = ActivityRegistry()
_ledger_lock = threading.Lock()


def _score_of(tag: str, value: Any) -> int:
    digest = hashlib.sha256(f"{tag}:{json.dumps(value, sort_keys=True)}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 1000


@registry.activity
def drill_score(payload: dict[str, Any]) -> dict[str, Any]:
    """``{"tag", "value"}`` -> a deterministic score, recorded by idempotency key."""
    tag, value = str(payload["tag"]), payload["value"]
    call = current_call()
    result = {"tag": tag, "score": _score_of(tag, value)}
    path = os.environ.get(LEDGER_VARIABLE)
    if not path:
        return result
    with _ledger_lock:
        ledger = Path(path)
        entry: dict[str, Any] = {
            "key": call.idempotency_key,
            "instance": call.instance_id,
            "call": f"{tag}:{json.dumps(value, sort_keys=True)}",
            "result": result,
        }
        for line in ledger.read_text(encoding="utf-8").splitlines() if ledger.exists() else []:
            seen = json.loads(line)
            if seen["key"] == call.idempotency_key and not seen.get("repeat"):
                # honoured: the key ran already; the repeat is noted (not executed)
                entry = {**entry, "result": seen["result"], "repeat": True}
                break
        with ledger.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
    recorded: dict[str, Any] = entry["result"]
    return recorded


def _task(tag: str, value_path: str, result_path: str, **rest: Any) -> dict[str, Any]:
    return {
        "type": "task",
        "activity": "drill_score",
        "parameters": {"tag": tag, "value.$": value_path},
        "result_path": result_path,
        **rest,
    }


CHILD: FlowDefinition = parse_definition(
    {
        "name": "drill_child",
        "version": "1",
        "start_at": "Check",
        "states": {"Check": _task("child", "$.order", "$.check", end=True)},
    }
)
VET: FlowDefinition = parse_definition(
    {
        "name": "drill_vet",
        "version": "1",
        "start_at": "Vet",
        "states": {"Vet": _task("vet", "$.order", "$.vet", end=True)},
    }
)
MAIN: FlowDefinition = parse_definition(
    {
        "name": "drill_order",
        "version": "1",
        "start_at": "Price",
        "states": {
            "Price": _task("price", "$.order", "$.price", next="Rest"),
            "Rest": {"type": "wait", "seconds": 1, "next": "Fan"},
            "Fan": {
                "type": "parallel",
                "branches": [
                    {
                        "start_at": "Stock",
                        "states": {"Stock": _task("stock", "$.order", "$", end=True)},
                    },
                    {
                        "start_at": "Ship",
                        "states": {"Ship": _task("ship", "$.order", "$", end=True)},
                    },
                    {
                        # a child started before the event: a kill mid-flight can leave it
                        # started on the site and not replicated, so the cloud starts it
                        # again (under the site's id, or the drill counts it twice)
                        "start_at": "Vet",
                        "states": {
                            "Vet": {
                                "type": "sub_flow",
                                "flow": VET.name,
                                "version": VET.version,
                                "parameters": {"order.$": "$.order"},
                                "end": True,
                            }
                        },
                    },
                ],
                "result_path": "$.fan",
                "next": "Lines",
            },
            "Lines": {
                "type": "map",
                "items_path": "$.lines",
                "iterator": {
                    "start_at": "Line",
                    "states": {"Line": _task("line", "$", "$", end=True)},
                },
                "result_path": "$.lines_scored",
                "next": "Approve",
            },
            "Approve": {
                "type": "wait_for_event",
                "event": EVENT,
                "result_path": "$.approval",
                "next": "Audit",
            },
            "Audit": {
                "type": "sub_flow",
                "flow": CHILD.name,
                "version": CHILD.version,
                "parameters": {"order.$": "$.order"},
                "result_path": "$.audit",
                "next": "Close",
            },
            "Close": _task("close", "$.approval", "$.closed", end=True),
        },
    }
)
FLOWS = (CHILD, VET, MAIN)


def flow_input(seed: int, index: int) -> dict[str, Any]:
    """The input of instance ``index`` of a drill seeded ``seed`` (deterministic)."""
    base = _score_of(f"input-{seed}", index)
    return {
        "order": f"order-{seed}-{index}",
        "lines": [
            {"sku": f"sku-{(base + line) % 97}", "qty": line + 1} for line in range(base % 3 + 1)
        ],
    }


def event_data(seed: int, index: int) -> dict[str, Any]:
    """The approval instance ``index`` receives."""
    return {"by": f"approver-{_score_of(f'event-{seed}', index) % 7}"}
