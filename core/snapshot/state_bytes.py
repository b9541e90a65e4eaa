"""The canonical bytes of an instance's state, re-using what did not change since the last
transition.

A transition changes a few tokens and pending entries; a wide Map or Parallel has
thousands of them. Serialising the whole state every time made each transition cost
time in proportion to the Map's width (a 2,000-item Map: ~35 ms a transition, 70 s for
its items; bench/growth_bench.py). The engine keeps an unchanged token, pending entry or
frame as the very same (immutable) object from one transition to the next, so its
canonical bytes are remembered per object and only what changed is serialised. The
bytes are exactly those of ``canonical_json`` over the whole state
(tests/unit/test_state_bytes.py checks it on every kind of state).
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from rustyflower.core.engine.state import STATE_ADAPTER, Frame, InstanceState, Pending, Token
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
_CACHE_LIMIT = 50_000
"""Entries remembered (each holds its object, so an id is never reused while cached)."""
_ENTRIES: dict[int, tuple[object, str, bytes]] = {}
_MARKERS = {name: f"\x00rustyflower state {name}\x00" for name in _ENTRY_ADAPTERS}
_MARKER_BYTES = {name: canonical_json(marker) for name, marker in _MARKERS.items()}


def state_bytes(state: InstanceState) -> bytes:
    """``canonical_json(STATE_ADAPTER.dump_python(state, mode="json"))``, faster.

    A small state (fewer than ``PIECEWISE_FROM`` entries) is serialised whole: there the
    pieces would cost more than they save (callgrind: about 15% more instructions for a
    one-token state). Otherwise the rest of the state is serialised in one go with a
    marker in place of each of the three entry maps, then each marker is replaced by the
    map's bytes (a marker found other than exactly once, as in data that holds the very
    marker text, takes the whole serialisation instead).
    """
    if len(state.tokens) + len(state.pending) + len(state.frames) < PIECEWISE_FROM:
        return canonical_json(STATE_ADAPTER.dump_python(state, mode="json"))
    rest = STATE_ADAPTER.dump_python(state, mode="json", exclude=_ENTRY_FIELDS)
    rest.update(_MARKERS)
    encoded = canonical_json(rest)
    for name, adapter in _ENTRY_ADAPTERS.items():
        marker = _MARKER_BYTES[name]
        if encoded.count(marker) != 1:
            return canonical_json(STATE_ADAPTER.dump_python(state, mode="json"))
        entries: dict[str, Any] = getattr(state, name)
        parts = [_member(adapter, key, entries[key]) for key in sorted(entries)]
        encoded = encoded.replace(marker, b"{" + b",".join(parts) + b"}")
    return encoded


def _member(adapter: TypeAdapter[Any], key: str, entry: object) -> bytes:
    """``"key":{...entry...}``, remembered for this very entry object under this key."""
    cached = _ENTRIES.get(id(entry))
    if cached is not None and cached[0] is entry and cached[1] == key:
        return cached[2]
    encoded = canonical_json(key) + b":" + canonical_json(adapter.dump_python(entry, mode="json"))
    if len(_ENTRIES) >= _CACHE_LIMIT:
        _ENTRIES.clear()
    _ENTRIES[id(entry)] = (entry, key, encoded)
    return encoded
