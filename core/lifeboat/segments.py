"""Replica segments: many instances' changes shipped in one object, read as if per instance.

One conditional write per changed instance caps what a replicator can ship at the
cloud client's cost per request (2-4 ms of CPU with boto3 or the Azure SDK: a few
hundred instances a second). So a replication round writes one *segment* instead: every
instance it ships, each entry the instance's header and its sealed snapshot (or no
snapshot: a *tombstone*, the instance finished). Segments are immutable and uniquely
named::

    lifeboat/<site>/segments/<written at, ms, 15 digits>-<random>.json

Readers see one view: for each instance, the newest (``ReplicaHeader.order``) of its
per-instance replica and its segment entries; a tombstone that is newest hides the
instance. A higher epoch written per instance by a cloud that took the instance over
(``put_decision``'s fence) outranks every segment entry of the site, so a segment can
never undo a takeover.

*Compaction* folds segments into the per-instance replicas (each entry through the
conditional ``put``/``remove``, so the ordering rule still decides) and only then
deletes them: a reader that lists segments first and reads the per-instance replicas
after sees every change at least once, whether a segment was compacted in between or not.
One compactor runs per site (the replicator's leader), so no two compactors race.

This module is the format and the rules (no I/O); ``SegmentedReplicas`` gives a store
(``adapters.aws.lifeboat``, ``adapters.azure.lifeboat``) the merged ``headers``/``read``
from the store's own primitives.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from rustyflower.core.lifeboat.replica import (
    Replica,
    ReplicaError,
    ReplicaHeader,
    instances_prefix,
    site_root,
)

__all__ = [
    "SEGMENT_FORMAT",
    "SegmentEntry",
    "SegmentedReplicas",
    "decode_segment",
    "encode_segment",
    "merged_headers",
    "newest_entries",
    "segment_name",
    "segment_written_ms",
    "segments_prefix",
]

SEGMENT_FORMAT = "rustyflower.replica-segment/1"

log = logging.getLogger("rustyflower.replication")
_CONSISTENT_READS = 5
_READERS = 16


@dataclass(frozen=True)
class SegmentEntry:
    """One instance's change in a segment: its sealed snapshot, or None when it finished."""

    header: ReplicaHeader
    data: bytes | None
    shipped_ms: int = 0
    """When this change was first shipped (the site store's clock, ms); a compaction that
    carries the entry into a new segment keeps it, so its age is the change's own."""

    @property
    def tombstone(self) -> bool:
        return self.data is None


def segments_prefix(site: str) -> str:
    return f"{site_root(site)}segments/"


def segment_name(site: str, written_ms: int, nonce: str | None = None) -> str:
    """A new segment's name: ordered by when it was written, unique by its random part."""
    return f"{segments_prefix(site)}{written_ms:015d}-{nonce or secrets.token_hex(6)}.json"


def segment_written_ms(name: str) -> int | None:
    """When a segment was written, from its name (None: not a segment's name)."""
    stamp = name.rsplit("/", 1)[-1].split("-", 1)[0]
    return int(stamp) if stamp.isdigit() else None


def encode_segment(site: str, entries: Sequence[SegmentEntry]) -> bytes:
    """The segment's bytes: JSON, each snapshot base64 (sealed bytes may be encrypted)."""
    document = {
        "format": SEGMENT_FORMAT,
        "site": site,
        "entries": [
            {
                "header": entry.header.metadata(),
                "data": None if entry.data is None else base64.b64encode(entry.data).decode(),
                "shipped_ms": entry.shipped_ms,
            }
            for entry in entries
        ],
    }
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


def decode_segment(body: bytes, where: str) -> list[SegmentEntry]:
    """The entries of a segment; ``ReplicaError`` naming ``where`` for anything else."""
    try:
        document = json.loads(body)
    except ValueError:
        raise ReplicaError(f"{where} is not a replica segment (not JSON)") from None
    if not isinstance(document, dict) or document.get("format") != SEGMENT_FORMAT:
        found = document.get("format") if isinstance(document, dict) else None
        raise ReplicaError(
            f"{where} is not a replica segment (format {found!r}, expected {SEGMENT_FORMAT!r})"
        )
    raw_entries = document.get("entries")
    if not isinstance(raw_entries, list):
        raise ReplicaError(f"{where}: 'entries' must be a list")
    return [_entry(raw, f"{where} entry {index}") for index, raw in enumerate(raw_entries)]


def _entry(raw: Any, where: str) -> SegmentEntry:
    if not isinstance(raw, dict) or not isinstance(raw.get("header"), dict):
        raise ReplicaError(f"{where}: an entry is an object with a 'header' object")
    header = ReplicaHeader.from_metadata(
        {str(name): str(value) for name, value in raw["header"].items()}, where
    )
    shipped_ms = raw.get("shipped_ms", 0)
    if not isinstance(shipped_ms, int) or isinstance(shipped_ms, bool) or shipped_ms < 0:
        raise ReplicaError(f"{where}: 'shipped_ms' must be a whole number of milliseconds")
    data = raw.get("data")
    if data is None:
        if not header.finished:
            raise ReplicaError(f"{where}: only a finished instance's entry may carry no snapshot")
        return SegmentEntry(header, None, shipped_ms)
    if not isinstance(data, str):
        raise ReplicaError(f"{where}: 'data' must be base64 text")
    try:
        return SegmentEntry(header, base64.b64decode(data, validate=True), shipped_ms)
    except binascii.Error:
        raise ReplicaError(f"{where}: 'data' is not base64") from None


def newest_entries(entries: Iterable[SegmentEntry]) -> dict[str, SegmentEntry]:
    """Each instance's newest entry (by epoch, then seq; of equals, the later given)."""
    newest: dict[str, SegmentEntry] = {}
    for entry in entries:
        there = newest.get(entry.header.instance_id)
        if there is None or entry.header.order >= there.header.order:
            newest[entry.header.instance_id] = entry
    return newest


def merged_headers(
    base: Iterable[ReplicaHeader], segments: dict[str, SegmentEntry]
) -> list[ReplicaHeader]:
    """What a reader sees: per instance, the newer of the per-instance replica's header and
    its newest segment entry (the replica on a tie: a compacted entry is the same point);
    an instance whose newest is a tombstone is not there."""
    seen: dict[str, ReplicaHeader] = {header.instance_id: header for header in base}
    for instance_id, entry in segments.items():
        there = seen.get(instance_id)
        if there is not None and there.order >= entry.header.order:
            continue
        if entry.tombstone:
            seen.pop(instance_id, None)
        else:
            seen[instance_id] = entry.header
    return list(seen.values())


class SegmentedReplicas:
    """The merged view and the segment cache, over a store's own primitives.

    A store provides ``site``, ``where`` and the ``_``-methods below; it gets
    ``put_segment``, ``segment_names``, ``segment_entries``, ``delete_segments`` and the
    merged ``headers`` and ``read`` (its own per-instance ones renamed ``base_headers``
    and ``read_base``). Segments are immutable, so what was read or written is cached by
    name for as long as the segment is listed.
    """

    site: str

    def __init__(self) -> None:
        self._segments: dict[str, list[SegmentEntry]] = {}
        self._segments_lock = threading.Lock()
        self.unreadable: dict[str, str] = {}
        """Segments that are not RustyFlower segments, with why (left out of the view)."""

    # --- what a store provides ------------------------------------------------------------

    @property
    def where(self) -> str:
        raise NotImplementedError

    def base_headers(self) -> list[ReplicaHeader]:
        raise NotImplementedError

    def read_base(self, instance_id: str) -> Replica | None:
        raise NotImplementedError

    def _write_object(self, name: str, body: bytes) -> None:
        raise NotImplementedError

    def _list_objects(self, prefix: str) -> list[str]:
        raise NotImplementedError

    def _read_object(self, name: str) -> bytes | None:
        """The object's bytes, None when it is gone."""
        raise NotImplementedError

    def _read_objects(self, names: Sequence[str]) -> list[bytes | None]:
        """Each object's bytes, None where it is gone (read side by side: a takeover reads
        every segment not compacted yet)."""
        if not names:
            return []
        with ThreadPoolExecutor(max_workers=min(_READERS, len(names))) as pool:
            return list(pool.map(self._read_object, names))

    def _delete_objects(self, names: Sequence[str]) -> None:
        raise NotImplementedError

    # --- segments ----------------------------------------------------------------------------

    def put_segment(self, entries: Sequence[SegmentEntry], written_ms: int) -> str:
        """Write the entries as one new segment; its name."""
        name = segment_name(self.site, written_ms)
        self._write_object(name, encode_segment(self.site, entries))
        with self._segments_lock:
            self._segments[name] = list(entries)
        return name

    def segment_names(self) -> list[str]:
        """The segments there now, oldest first."""
        return sorted(self._list_objects(segments_prefix(self.site)))

    def segment_entries(self, names: Sequence[str]) -> dict[str, list[SegmentEntry]]:
        """The entries of the named segments (those gone since the listing are left out)."""
        with self._segments_lock:
            missing = [
                name for name in names if name not in self._segments and name not in self.unreadable
            ]
        read: dict[str, list[SegmentEntry]] = {}
        for name, body in zip(missing, self._read_objects(missing), strict=True):
            if body is None:
                continue
            try:
                read[name] = decode_segment(body, name)
            except ReplicaError as error:
                # one unreadable object must not hide every other change: it is named,
                # left out of the view and never compacted (so never deleted)
                self.unreadable[name] = str(error)
                log.error("replicas in %s: %s; left out", self.where, error)
        listed = set(names)
        with self._segments_lock:
            self._segments.update(read)
            for name in [name for name in self._segments if name not in listed]:
                del self._segments[name]  # compacted: its changes are in the replicas now
            return {name: self._segments[name] for name in names if name in self._segments}

    def delete_segments(self, names: Sequence[str]) -> None:
        self._delete_objects(names)
        with self._segments_lock:
            for name in names:
                self._segments.pop(name, None)

    def base_names(self) -> set[str]:
        """The names of the per-instance replicas there now."""
        return set(self._list_objects(instances_prefix(self.site)))

    def current_segments(self) -> dict[str, list[SegmentEntry]]:
        """Every segment there now, read whole. A compaction writes what it keeps (into
        the replicas or a new segment) before it deletes: when a listed segment is gone at
        its reading, listing again finds where its changes went."""
        for _ in range(_CONSISTENT_READS):
            names = self.segment_names()
            loaded = self.segment_entries(names)
            if all(name in loaded or name in self.unreadable for name in names):
                break
        return loaded

    def _segment_view(self) -> dict[str, SegmentEntry]:
        # segments before the per-instance replicas: a segment folded and deleted meanwhile
        # reached the replicas first
        loaded = self.current_segments()
        return newest_entries(entry for name in sorted(loaded) for entry in loaded[name])

    # --- the merged view ----------------------------------------------------------------------

    def headers(self) -> list[ReplicaHeader]:
        """Every in-flight instance's newest header, segments included."""
        view = self._segment_view()
        return merged_headers(self.base_headers(), view)

    def read(self, instance_id: str) -> Replica | None:
        """The instance's newest replica, segments included (None: none, or it finished)."""
        entry = self._segment_view().get(instance_id)
        base = self.read_base(instance_id)
        if entry is None or (base is not None and base.header.order >= entry.header.order):
            return base
        if entry.data is None:
            return None
        return Replica(entry.header, entry.data)
