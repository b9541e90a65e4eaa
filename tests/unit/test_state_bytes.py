"""The state's canonical bytes, built from remembered pieces, are exactly the canonical JSON
of the whole state (core/snapshot/state_bytes.py; issue 13, cost as work grows).

Checked on every transition of flows that grow and shrink tokens, pending work and
frames (a wide Map, a Parallel with a Map inside, retries, timers, event waits) and on
the final snapshot of every conformance case; and the snapshot bytes are the same as the
codec's whole-document path, signed. Hand-built states then edit what the remembered
entry maps and wide frames are patched from (entries added, removed, replaced, dicts
changed in place, results and flags changed around the same items, a value that is not
JSON midway), checking the bytes after every edit.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
import weakref
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
from rustyflower.core.engine.state import (
    STATE_ADAPTER,
    Frame,
    HistoryEntry,
    InstanceState,
    Pending,
    Token,
)
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


def test_a_long_chain_is_serialised_from_remembered_history_entries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A one-token state whose history grows: once it holds ``PIECEWISE_HISTORY_FROM``
    entries its bytes come from the pieces (each entry remembered), the same bytes."""
    from rustyflower.core.snapshot import state_bytes as module  # noqa: PLC0415

    pieces: list[int] = []
    piecewise = module._piecewise

    def counted(state: InstanceState) -> bytes:
        pieces.append(len(state.history))
        return piecewise(state)

    monkeypatch.setattr(module, "_piecewise", counted)
    flow = Flow("long", version="1")
    for index in range(70):
        flow.task(f"S{index}", "a")
    begun = start(flow.build(), {"n": 0}, "long-1", T0)
    same_bytes(begun.snapshot)
    ended = drive(begun.snapshot, begun.commands)
    assert ended.status == "succeeded"
    assert len(ended.state.history) == 100  # the window is full: the oldest were dropped
    assert (
        pieces and module.PIECEWISE_HISTORY_FROM <= min(pieces) <= module.PIECEWISE_HISTORY_FROM + 2
    )
    assert len(pieces) > 60


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


# --- hand-built states: what the per-map and per-frame records must never get wrong ------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


def whole_bytes(state: InstanceState) -> bytes:
    return canonical_json(STATE_ADAPTER.dump_python(state, mode="json"))


def token(index: int, data: Any = None) -> Token:
    return Token(scope=f"Each[{index}]/", state="T", data=index if data is None else data)


def pending(index: int) -> Pending:
    command = RunActivity(f"c{index}", "t", index, f"Each[{index}]/T", 0, f"k{index}")
    return Pending(id=f"c{index}", token=f"Each[{index}]/T", purpose="activity", command=command)


def wide_frame(width: int, items: tuple[Any, ...] | None = None) -> Frame:
    return Frame(
        owner="Each",
        kind="map",
        results=(None,) * width,
        done=(False,) * width,
        running=width,
        next_item=width,
        items=tuple(range(width)) if items is None else items,
        effective_input={"b": 1, "a": "ü"},
    )


def wide_state(width: int = 40, frames: dict[str, Frame] | None = None) -> InstanceState:
    return InstanceState(
        input={"items": list(range(width))},
        started_at="2026-01-01T00:00:00Z",
        tokens={f"Each[{i}]/T": token(i) for i in range(width)},
        pending={f"c{i}": pending(i) for i in range(width)},
        frames={"Each": wide_frame(100)} if frames is None else frames,
    )


def test_a_wide_frame_whose_results_change_around_the_same_items_gives_the_same_bytes() -> None:
    state = wide_state()
    assert state_bytes(state) == whole_bytes(state)
    frame = state.frames["Each"]
    for index, result in enumerate([1, 0.1, 1e100, -0.0, "naïve ☃", {"z": 1, "a": [True]}, None]):
        results = list(frame.results)
        results[index * 7] = result
        done = list(frame.done)
        done[index * 7] = True
        frame = replace(frame, results=tuple(results), done=tuple(done), running=frame.running - 1)
        state = replace(state, frames={"Each": frame})
        assert state_bytes(state) == whole_bytes(state)
    # a new effective input object, and a frame going back to an older results tuple
    first = wide_state().frames["Each"]
    older = replace(frame, results=first.results, effective_input=[1, {"é": 2}])
    state = replace(state, frames={"Each": older})
    assert state_bytes(state) == whole_bytes(state)


def test_a_dict_changed_in_place_between_calls_is_not_served_stale() -> None:
    state = wide_state()
    assert state_bytes(state) == whole_bytes(state)
    state.tokens["Each[3]/T"] = token(3, {"new": "data"})  # replaced
    del state.tokens["Each[5]/T"]  # removed
    state.tokens["Each[99]/T"] = token(99)  # added
    state.pending.clear()
    assert state_bytes(state) == whole_bytes(state)
    frame = state.frames["Each"]
    state.frames["Each"] = replace(frame, results=(7,) * len(frame.results))
    assert state_bytes(state) == whole_bytes(state)


def test_a_value_that_is_not_json_midway_leaves_no_half_patched_record() -> None:
    state = wide_state()
    state_bytes(state)
    frame = state.frames["Each"]
    results = list(frame.results)
    results[3] = "first"
    results[50] = "\ud800"  # a lone surrogate: no UTF-8 for it
    bad = replace(state, frames={"Each": replace(frame, results=tuple(results))})
    with pytest.raises(ValueError):
        state_bytes(bad)
    again = replace(state, frames={"Each": replace(frame)})  # a new frame: no cached member
    assert state_bytes(again) == whole_bytes(again)
    lone = {"x": "\ud800"}
    for _ in range(2):  # refused every time, not only before something was remembered
        with pytest.raises(ValueError):
            state_bytes(replace(state, frames={"Each": replace(frame, effective_input=lone)}))
    results[50] = 2
    good = replace(state, frames={"Each": replace(frame, results=tuple(results))})
    assert state_bytes(good) == whole_bytes(good)
    tokens = dict(state.tokens)
    tokens["Each[77]/T"] = token(77)
    tokens["Each[78]/T"] = token(78, "\ud800")  # fails once the map is partly patched
    with pytest.raises(ValueError):
        state_bytes(replace(state, tokens=tokens))
    assert state_bytes(state) == whole_bytes(state)
    tokens["Each[1]/T"] = token(1, {"ok": 1})
    tokens["Each[2]/T"] = token(2, "\ud800")
    with pytest.raises(ValueError):
        state_bytes(replace(state, tokens=tokens))
    assert state_bytes(state) == whole_bytes(state)
    del tokens["Each[78]/T"]
    tokens["Each[2]/T"] = token(2, "fine")
    assert state_bytes(replace(state, tokens=tokens)) == whole_bytes(replace(state, tokens=tokens))


def test_instances_alike_in_start_time_and_input_do_not_share_bytes() -> None:
    shared_input = {"items": [1, 2]}
    one = replace(wide_state(), input=shared_input)
    other = replace(wide_state(50), input=shared_input)
    for _ in range(2):
        assert state_bytes(one) == whole_bytes(one)
        assert state_bytes(other) == whole_bytes(other)


@st.composite
def edits(draw: st.DrawFn) -> list[tuple[str, int, Any]]:
    kinds = st.sampled_from(
        [
            *("add", "remove", "replace", "result", "done", "input", "items", "share"),
            *("mutate", "history"),
        ]
    )
    return draw(
        st.lists(st.tuples(kinds, st.integers(0, 120), JSON_VALUES), min_size=1, max_size=30)
    )


@settings(max_examples=60, deadline=None)
@given(edits())
def test_any_sequence_of_edits_gives_the_same_bytes_after_each(
    steps: list[tuple[str, int, Any]],
) -> None:
    state = wide_state()
    assert state_bytes(state) == whole_bytes(state)
    for kind, index, value in steps:
        tokens, frames = dict(state.tokens), dict(state.frames)
        frame = frames["Each"]
        key = f"Each[{index}]/T"
        if kind == "add":
            tokens[key] = token(index, value)
        elif kind == "remove":
            tokens.pop(key, None)
        elif kind == "replace" and key in tokens:
            tokens[key] = token(index, value)
        elif kind == "result":
            results = list(frame.results)
            results[index % len(results)] = value
            frames["Each"] = replace(frame, results=tuple(results))
        elif kind == "done":
            done = list(frame.done)
            done[index % len(done)] = bool(value)
            frames["Each"] = replace(frame, done=tuple(done))
        elif kind == "input":
            frames["Each"] = replace(frame, effective_input=value)
        elif kind == "items":
            frames["Each"] = replace(frame, items=(value,) * len(frame.items))
        elif kind == "share":  # a second wide frame around the very same items tuple
            frames["Other"] = replace(
                wide_frame(100, frame.items), owner="Other", results=(value,) * 100
            )
        elif kind == "history":  # one more entry, the oldest dropped past five
            entry = HistoryEntry(seq=index, at="t", kind="Step", position=key, detail=value)
            state = replace(state, history=(*state.history, entry)[-5:])
        elif kind == "mutate":  # the state's own dict changed in place after it was encoded
            state.tokens[key] = token(index, value)
            assert state_bytes(state) == whole_bytes(state)
            continue
        state = replace(state, tokens=tokens, frames=frames)
        assert state_bytes(state) == whole_bytes(state)


def test_the_input_is_remembered_per_object_only() -> None:
    state = wide_state()
    assert state_bytes(state) == whole_bytes(state)
    for value in ({"items": list(range(40))}, ["naïve", 1.5, {"b": 2, "a": 1}], None, 0):
        other = replace(state, input=value)
        assert state_bytes(other) == whole_bytes(other)
    assert state_bytes(state) == whole_bytes(state)


def test_threads_encoding_states_of_one_instance_at_once_get_their_own_bytes() -> None:
    """The remembered maps and frames are patched in place: calls from several threads (a
    worker and its watchdog) must not see each other's half-patched records."""
    base = wide_state(200)
    states = []
    for index in range(8):
        frame = base.frames["Each"]
        results = list(frame.results)
        results[index] = {"thread": index}
        tokens = dict(base.tokens)
        del tokens[f"Each[{index}]/T"]
        tokens[f"Each[{300 + index}]/T"] = token(300 + index)
        states.append(
            replace(base, tokens=tokens, frames={"Each": replace(frame, results=tuple(results))})
        )
    expected = [whole_bytes(state) for state in states]
    wrong: list[object] = []

    def encode(offset: int) -> None:
        for round_ in range(30):
            index = (offset + round_) % len(states)
            try:
                if state_bytes(states[index]) != expected[index]:
                    wrong.append(index)
            except Exception as problem:  # a thread's error would only be a warning
                wrong.append(problem)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=encode, args=(offset,)) for offset in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert wrong == []


class _Result(dict[str, Any]):
    """A JSON object that can be watched with a weak reference."""


def test_an_old_version_of_a_wide_frame_is_not_kept_alive() -> None:
    """A wide frame changes on every transition; remembering each version held its
    tuples and bytes until the cache filled (~0.4 MB a transition at 10,000 items)."""
    state = wide_state()
    frame = state.frames["Each"]
    result = _Result(a=1)
    watched = weakref.ref(result)
    first = replace(frame, results=(result, *frame.results[1:]))
    state_bytes(replace(state, frames={"Each": first}))
    for value in (2, 3):  # two later versions: none still names the first one's results
        later = replace(frame, results=(value, *frame.results[1:]))
        state_bytes(replace(state, frames={"Each": later}))
    del result, first
    gc.collect()
    assert watched() is None
