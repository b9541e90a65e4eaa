"""The canonical bytes of an instance's state, re-using what did not change since the last
transition.

A transition changes a few tokens and pending entries; a wide Map or Parallel has
thousands of them. Serialising the whole state every time made each transition cost
time in proportion to the Map's width (a 2,000-item Map: ~35 ms a transition, 70 s for
its items; bench/growth_bench.py). The engine keeps an unchanged token, pending entry or
frame as the very same (immutable) object from one transition to the next, so its
canonical bytes are remembered per object and only what changed is serialised.

Looking up every member's bytes still cost time per member (a 10,000-item Map: ~16 ms a
transition), so each entry map also remembers, from the last call, its sorted keys, the
entries they held and their bytes; the next call compares the new map with that by
identity (in C: ``map``/``compress``) and re-serialises only the entries that changed.
A wide Map's frame changes on every item's completion but only in one result and one
``done`` flag: its ``items`` (the same tuple throughout) and ``effective_input`` are
remembered per object, and ``results`` and ``done`` per element, patched the same way.
The instance's input (often the Map's items, as large as its frame) is remembered per
object too.

The bytes are exactly those of ``canonical_json`` over the whole state
(tests/unit/test_state_bytes.py checks it on every kind of state).
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import OrderedDict
from dataclasses import dataclass
from itertools import compress, filterfalse, islice, repeat
from operator import is_not
from typing import Any

from pydantic import StrictBool, TypeAdapter

from rustyflower.core.engine.state import (
    STATE_ADAPTER,
    Frame,
    HistoryEntry,
    InstanceState,
    Pending,
    Token,
)
from rustyflower.core.snapshot.canonical import CanonicalObject, canonical_json

__all__ = ["CanonicalObject", "state_bytes"]

_ENTRY_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    "frames": TypeAdapter(Frame),
    "pending": TypeAdapter(Pending),
    "tokens": TypeAdapter(Token),
}
_ENTRY_FIELDS = set(_ENTRY_ADAPTERS)
PIECEWISE_FROM = 32
"""Tokens + pending entries + frames from which the state is serialised piece by piece."""
PIECEWISE_HISTORY_FROM = 8
"""History entries from which even a small state is serialised piece by piece: a flow past
its first few steps carries up to a hundred (``DEFAULT_HISTORY_LIMIT``), each one's bytes
remembered; serialised whole, a hundred cost about five times the pieces."""
_CACHE_LIMIT = 50_000
"""Entries remembered (each holds its object, so an id is never reused while cached)."""
_ENTRIES: dict[int, tuple[object, str, bytes]] = {}
_PIECES = {*_ENTRY_FIELDS, "input", "history"}
"""Fields serialised apart from the rest: the entry maps; the input, which a wide Map
often takes its items from (then as large as its frame) and which never changes; and the
history, up to a hundred entries of which a transition adds one or two."""
_MARKERS = {name: f"\x00rustyflower state {name}\x00" for name in _PIECES}
_MARKER_BYTES = {name: canonical_json(marker) for name, marker in _MARKERS.items()}

_MISSING = object()
_LOCK = threading.Lock()


@dataclass(slots=True)
class _MapRecord:
    """One entry map as last serialised: ``members[i]`` is ``,"key":{...}`` of ``keys[i]``
    with ``values[i]``. The record holds the entries themselves (a private copy, not the
    caller's dict, which may change in place), so an identity match is never an id
    reused by another object."""

    keys: list[str]
    values: list[object]
    members: list[bytes]
    known: set[str]


_MAPS: OrderedDict[tuple[str, str, int], _MapRecord] = OrderedDict()
_MAPS_LIMIT = 64
"""Entry maps remembered (least recently used dropped first)."""
_MAPS_ENTRY_LIMIT = 2 * _CACHE_LIMIT
"""Entries held by the remembered maps together: a few wide instances, not a leak."""


def state_bytes(state: InstanceState) -> bytes:
    """``canonical_json(STATE_ADAPTER.dump_python(state, mode="json"))``, faster.

    A small state (fewer than ``PIECEWISE_FROM`` entries and ``PIECEWISE_HISTORY_FROM``
    history entries) is serialised whole: there the pieces would cost more than they save
    (callgrind: about 15% more instructions for a one-token state). Otherwise the rest of
    the state is serialised in one go with a marker in place of each piece (the three
    entry maps, the input, the history), then the bytes are joined with each marker's
    place taken by its piece's bytes (a marker found other than exactly once, as in data
    that holds the very marker text, takes the whole serialisation instead).
    """
    entries = len(state.tokens) + len(state.pending) + len(state.frames)
    if entries < PIECEWISE_FROM and len(state.history) < PIECEWISE_HISTORY_FROM:
        return canonical_json(STATE_ADAPTER.dump_python(state, mode="json"))
    # The remembered maps and frames are patched in place, and a worker encodes from more
    # than one thread (the continuity watchdog, the web adapter): one call at a time. The
    # work holds the GIL throughout, so the lock costs no parallelism.
    with _LOCK:
        return _piecewise(state)


def _piecewise(state: InstanceState) -> bytes:
    rest = STATE_ADAPTER.dump_python(state, mode="json", exclude=_PIECES)
    rest.update(_MARKERS)
    encoded = canonical_json(rest)
    places: list[tuple[int, str]] = []
    for name, marker in _MARKER_BYTES.items():
        if encoded.count(marker) != 1:
            return canonical_json(STATE_ADAPTER.dump_python(state, mode="json"))
        places.append((encoded.index(marker), name))
    # One join at the end: the state is megabytes for a wide Map, and each intermediate
    # copy (a marker replaced, a map's members joined) cost about as much as the rest.
    pieces: list[bytes] = []
    start = 0
    for at, name in sorted(places):
        pieces.append(encoded[start:at])
        start = at + len(_MARKER_BYTES[name])
        if name == "input":
            pieces.append(_input_bytes(state.input))
            continue
        if name == "history":
            pieces.append(b"[")
            pieces.append(b",".join([_history_entry(entry) for entry in state.history]))
            pieces.append(b"]")
            continue
        members = _map_members(
            name, getattr(state, name), (name, state.started_at, id(state.input))
        )
        pieces.append(b"{")
        if members:  # each member starts with a comma, so the first one's is dropped
            pieces.append(members[0][1:])
            pieces.extend(islice(members, 1, None))
        pieces.append(b"}")
    pieces.append(encoded[start:])
    return b"".join(pieces)


_INPUTS: OrderedDict[int, tuple[object, bytes]] = OrderedDict()
_INPUTS_LIMIT = 16
_ANY_ADAPTER: TypeAdapter[Any] = TypeAdapter(Any)


def _input_bytes(value: Any) -> bytes:
    """The input's bytes, remembered for this very object (held, so its id stays its own):
    the engine carries the same input object from one transition to the next."""
    cached = _INPUTS.get(id(value))
    if cached is not None and cached[0] is value:
        _INPUTS.move_to_end(id(value))
        return cached[1]
    encoded = _value_bytes(_ANY_ADAPTER, value)
    _INPUTS[id(value)] = (value, encoded)
    if len(_INPUTS) > _INPUTS_LIMIT:
        _INPUTS.popitem(last=False)
    return encoded


_HISTORY: dict[int, tuple[HistoryEntry, bytes]] = {}
_HISTORY_LIMIT = 10_000
_HISTORY_ADAPTER: TypeAdapter[HistoryEntry] = TypeAdapter(HistoryEntry)


def _history_entry(entry: HistoryEntry) -> bytes:
    """One history entry's bytes, remembered for this very (immutable, held) object."""
    cached = _HISTORY.get(id(entry))
    if cached is not None and cached[0] is entry:
        return cached[1]
    encoded = _value_bytes(_HISTORY_ADAPTER, entry)
    if len(_HISTORY) >= _HISTORY_LIMIT:
        _HISTORY.clear()
    _HISTORY[id(entry)] = (entry, encoded)
    return encoded


def _map_members(
    name: str, entries: dict[str, Any], record_key: tuple[str, str, int]
) -> list[bytes]:
    """The members of one entry map, in key order, patched from the record of this map's last call.

    The record is found by the instance's start time and input object: a wrong guess
    (two instances alike in both) only costs speed, as every entry is compared with the
    record's own and whatever differs is serialised again.
    """
    record = _MAPS.pop(record_key, None)
    # The record is out of the cache while it is patched: an entry that is not JSON raises
    # midway, and a half-patched record must not serve the next call.
    if record is None or not _patch(name, record, entries):
        record = _build(name, entries)
    _remember(record_key, record)
    return record.members


def _build(name: str, entries: dict[str, Any]) -> _MapRecord:
    keys = sorted(entries)
    values = [entries[key] for key in keys]
    members = [_member(name, key, value) for key, value in zip(keys, values, strict=True)]
    return _MapRecord(keys, values, members, set(keys))


def _patch(name: str, record: _MapRecord, entries: dict[str, Any]) -> bool:
    """Bring ``record`` to ``entries``; False when so much changed that building afresh
    is cheaper (the record is then left half-patched: the caller replaces it)."""
    keys, values, members = record.keys, record.values, record.members
    changed = list(
        compress(range(len(keys)), map(is_not, map(entries.get, keys, repeat(_MISSING)), values))
    )
    if len(changed) > len(keys) // 4 + 8:
        return False
    removed: list[int] = []
    for index in changed:
        key = keys[index]
        value = entries.get(key, _MISSING)
        if value is _MISSING:
            removed.append(index)
        else:
            values[index] = value
            members[index] = _member(name, key, value)
    for index in reversed(removed):
        record.known.discard(keys[index])
        del keys[index], values[index], members[index]
    if len(entries) != len(keys):  # keys were added (the count alone cannot hide one)
        added = list(filterfalse(record.known.__contains__, entries))
        if len(added) > len(keys) // 4 + 8:
            return False
        for key in added:
            index = bisect_left(keys, key)
            value = entries[key]
            keys.insert(index, key)
            values.insert(index, value)
            members.insert(index, _member(name, key, value))
            record.known.add(key)
    return True


def _remember(record_key: tuple[str, str, int], record: _MapRecord) -> None:
    _MAPS[record_key] = record
    held = sum(len(kept.keys) for kept in _MAPS.values())  # at most _MAPS_LIMIT records
    while len(_MAPS) > 1 and (len(_MAPS) > _MAPS_LIMIT or held > _MAPS_ENTRY_LIMIT):
        held -= len(_MAPS.popitem(last=False)[1].keys)


def _member(name: str, key: str, entry: object) -> bytes:
    """``,"key":{...entry...}``, remembered for this very entry object under this key."""
    cached = _ENTRIES.get(id(entry))
    if cached is not None and cached[0] is entry and cached[1] == key:
        return cached[2]
    if isinstance(entry, Frame) and len(entry.items) >= WIDE_FRAME_FROM:
        # Not kept here: a wide frame changes on every transition, and each version held
        # its two tuples and its bytes (~0.4 MB at 10,000 items) until the cache filled,
        # gigabytes over a Map's run. Its map's record keeps the frame that is current.
        return b"," + canonical_json(key) + b":" + _frame_bytes(entry)
    body = canonical_json(_ENTRY_ADAPTERS[name].dump_python(entry, mode="json"))
    encoded = b"," + canonical_json(key) + b":" + body
    if len(_ENTRIES) >= _CACHE_LIMIT:
        _ENTRIES.clear()
    _ENTRIES[id(entry)] = (entry, key, encoded)
    return encoded


# --- a wide Map's frame, piece by piece ------------------------------------------------

WIDE_FRAME_FROM = 64
"""Items from which a Map's frame is serialised piece by piece."""
_FRAME_ADAPTER: TypeAdapter[Frame] = TypeAdapter(Frame)
_ITEMS_ADAPTER: TypeAdapter[tuple[Any, ...]] = TypeAdapter(tuple[Any, ...])
_DONE_ADAPTER: TypeAdapter[bool] = TypeAdapter(StrictBool)
_FRAME_PIECES = {"done", "effective_input", "items", "results"}


@dataclass(slots=True)
class _FrameRecord:
    """A Map frame's large fields as last serialised, holding the objects they came from
    (so identity means sameness while the record lives)."""

    items: tuple[Any, ...]
    items_bytes: bytes
    effective_input: Any
    effective_input_bytes: bytes
    results: tuple[Any, ...]
    result_parts: list[bytes]
    done: tuple[bool, ...]
    done_parts: list[bytes]


_FRAMES: OrderedDict[int, _FrameRecord] = OrderedDict()
"""By the id of the frame's ``items``: one tuple for the whole life of a Map's frame."""
_FRAMES_LIMIT = 16


def _frame_bytes(frame: Frame) -> bytes:
    record = _FRAMES.get(id(frame.items))
    if record is None or record.items is not frame.items:
        record = _FrameRecord(
            frame.items,
            canonical_json(_ITEMS_ADAPTER.dump_python(frame.items, mode="json")),
            frame.effective_input,
            _value_bytes(_ANY_ADAPTER, frame.effective_input),
            frame.results,
            _parts(_ANY_ADAPTER, frame.results),
            frame.done,
            _parts(_DONE_ADAPTER, frame.done),
        )
        _FRAMES[id(frame.items)] = record
        if len(_FRAMES) > _FRAMES_LIMIT:
            _FRAMES.popitem(last=False)
    else:
        _FRAMES.move_to_end(id(frame.items))
        # Each field's new bytes are made before the record takes the new object: a value
        # that is not JSON raises midway and must leave the record as it was.
        if record.effective_input is not frame.effective_input:
            record.effective_input_bytes = _value_bytes(_ANY_ADAPTER, frame.effective_input)
            record.effective_input = frame.effective_input
        if record.results is not frame.results:
            record.result_parts = _repatch(
                _ANY_ADAPTER, record.results, record.result_parts, frame.results
            )
            record.results = frame.results
        if record.done is not frame.done:
            record.done_parts = _repatch(_DONE_ADAPTER, record.done, record.done_parts, frame.done)
            record.done = frame.done
    pieces = {
        name: canonical_json(value)
        for name, value in _FRAME_ADAPTER.dump_python(
            frame, mode="json", exclude=_FRAME_PIECES
        ).items()
    }
    pieces["done"] = b"[" + b",".join(record.done_parts) + b"]"
    pieces["effective_input"] = record.effective_input_bytes
    pieces["items"] = record.items_bytes
    pieces["results"] = b"[" + b",".join(record.result_parts) + b"]"
    return b"{" + b",".join(_FIELD_NAMES[name] + pieces[name] for name in sorted(pieces)) + b"}"


_FIELD_NAMES: dict[str, bytes] = {
    name: canonical_json(name) + b":"
    for name in _FRAME_ADAPTER.dump_python(
        Frame(owner="", kind="map", results=(), done=(), running=0), mode="json"
    )
}


def _value_bytes(adapter: TypeAdapter[Any], value: Any) -> bytes:
    return canonical_json(adapter.dump_python(value, mode="json"))


def _parts(adapter: TypeAdapter[Any], values: tuple[Any, ...]) -> list[bytes]:
    """Each element's bytes; alike elements (a fresh frame's ``None`` results and
    ``False`` flags) are serialised once."""
    seen: dict[int, bytes] = {}
    parts: list[bytes] = []
    for value in values:  # values holds every element alive: ids stay unique meanwhile
        encoded = seen.get(id(value))
        if encoded is None:
            encoded = seen[id(value)] = _value_bytes(adapter, value)
        parts.append(encoded)
    return parts


def _repatch(
    adapter: TypeAdapter[Any], old: tuple[Any, ...], parts: list[bytes], new: tuple[Any, ...]
) -> list[bytes]:
    """``new``'s element bytes from ``old``'s (``parts``): only elements that are not the
    very same object are serialised (``old`` is alive here, so its elements are too)."""
    if len(old) != len(new):
        return _parts(adapter, new)
    # Every new element is serialised before ``parts`` changes: one that is not JSON
    # raises and leaves ``parts`` matching ``old``, which the record still names.
    changed = [
        (index, _value_bytes(adapter, new[index]))
        for index in compress(range(len(new)), map(is_not, new, old))
    ]
    for index, encoded in changed:
        parts[index] = encoded
    return parts
