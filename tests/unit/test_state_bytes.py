"""The state's canonical bytes, built from remembered pieces, are exactly the canonical JSON
of the whole state (core/snapshot/state_bytes.py; issue 13, cost as work grows).

Checked on every transition of flows that grow and shrink tokens, pending work and
frames (a wide Map, a Parallel with a Map inside, retries, timers, event waits) and on
the final snapshot of every conformance case; and the snapshot bytes are the same as the
codec's whole-document path, signed.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rustyflower.core.builder import Flow, Retry, Steps
from rustyflower.core.engine import (
    ActivityCompleted,
    ActivityFailed,
    EventReceived,
    RunActivity,
    Snapshot,
    StartTimer,
    TimerFired,
    advance,
    start,
)
from rustyflower.core.engine.state import STATE_ADAPTER
from rustyflower.core.snapshot import SnapshotKeys
from rustyflower.core.snapshot.canonical import canonical_json
from rustyflower.core.snapshot.codec import seal
from rustyflower.core.snapshot.document import decode_snapshot, encode_snapshot, to_document
from rustyflower.core.snapshot.keys import generate_signing_key
from rustyflower.core.snapshot.state_bytes import state_bytes
from tests.conformance.test_conformance import CASES, baseline

KEYS = SnapshotKeys.signing_only(generate_signing_key("state-bytes"))
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def same_bytes(snapshot: Snapshot) -> None:
    whole = canonical_json(STATE_ADAPTER.dump_python(snapshot.state, mode="json"))
    assert state_bytes(snapshot.state) == whole
    assert encode_snapshot(snapshot, KEYS) == seal(to_document(snapshot), KEYS)
    assert decode_snapshot(encode_snapshot(snapshot, KEYS), KEYS) == snapshot


def drive(snapshot: Snapshot, commands: tuple[Any, ...], fail_first: bool = False) -> Snapshot:
    """Answer every command one transition at a time, checking the bytes after each."""
    queue = list(commands)
    now = T0
    failed = False
    while queue:
        command = queue.pop(0)
        now += timedelta(seconds=1)
        if isinstance(command, RunActivity):
            if fail_first and not failed:
                failed = True
                event: Any = ActivityFailed(command.call_id, "Flaky", "first try")
            else:
                event = ActivityCompleted(command.call_id, {"seen": command.input, "é": "ü"})
        elif isinstance(command, StartTimer):
            event = TimerFired(command.timer_id)
        else:
            continue
        transition = advance(snapshot, event, now)
        snapshot = transition.snapshot
        same_bytes(snapshot)
        queue.extend(transition.commands)
    return snapshot


def test_every_transition_of_a_wide_map_and_a_parallel_gives_the_same_bytes() -> None:
    flow = (
        Flow("shapes", version="1")
        .task("First", "a", retry=[Retry(errors=["Flaky"], max_attempts=2)], result_path=None)
        .wait("Pause", seconds=1)
        .map("Each", Steps().task("T", "t"), items_path="$.items", result_path="$.mapped")
        .parallel(
            "Both",
            [
                Steps().task("L", "l"),
                Steps().map("Inner", Steps().task("I", "i"), items_path="$.items"),
            ],
            result_path="$.both",
        )
        .wait_for_event("Approve", "approval")
        .succeed("Done")
        .build()
    )
    begun = start(flow, {"items": list(range(60)), "note": "naïve ☃"}, "shape-1", T0)
    same_bytes(begun.snapshot)
    waiting = drive(begun.snapshot, begun.commands, fail_first=True)
    assert waiting.status == "running"
    ended = advance(waiting, EventReceived("approval", {"ok": True}), T0 + timedelta(hours=1))
    same_bytes(ended.snapshot)
    assert ended.snapshot.status == "succeeded"


@pytest.mark.parametrize("case", [case for case in CASES if case.flow is not None], ids=str)
def test_the_final_state_of_every_conformance_case_gives_the_same_bytes(case: Any) -> None:
    same_bytes(baseline(case.id).snapshot)


def test_a_state_that_is_not_canonical_json_is_refused_as_before() -> None:
    flow = Flow("lone", version="1").task("A", "a").build()
    begun = start(flow, {"x": "\ud800"}, "lone-1", T0)  # a lone surrogate: no UTF-8 for it
    with pytest.raises(ValueError, match=r"cannot seal: .*\(lone surrogate"):
        encode_snapshot(begun.snapshot, KEYS)


def test_a_wide_map_transition_no_longer_reserialises_every_item() -> None:
    """A 3,000-item Map: encoding after one item's completion costs a fraction of a full
    serialisation (before, every transition serialised all 3,000 tokens and pending
    entries: ~50 ms here, 70 s for the whole Map)."""
    flow = Flow("wide", version="1").map("Each", Steps().task("T", "t")).build()
    begun = start(flow, list(range(3000)), "wide-1", T0)
    snapshot = begun.snapshot
    encode_snapshot(snapshot)  # remembers the pieces
    commands = [c for c in begun.commands if isinstance(c, RunActivity)]
    whole = incremental = 0.0
    for command in commands[:20]:
        snapshot = advance(snapshot, ActivityCompleted(command.call_id, 1), T0).snapshot
        began = time.process_time()
        seal(to_document(snapshot), SnapshotKeys.none())
        whole += time.process_time() - began
        began = time.process_time()
        encode_snapshot(snapshot)
        incremental += time.process_time() - began
    assert incremental < whole / 2, (incremental, whole)


def test_data_that_holds_the_marker_text_still_gives_the_same_bytes() -> None:
    flow = Flow("marked", version="1").map("Each", Steps().task("T", "t")).build()
    marked = {"x": "\x00rustyflower state pending\x00", "\x00rustyflower state tokens\x00": 1}
    begun = start(flow, [marked] * 40, "marked-1", T0)  # wide enough to be built in pieces
    same_bytes(begun.snapshot)
    drive(begun.snapshot, begun.commands)
