"""Listing instances a page at a time: newest first, filtered, with a cursor that holds.

The order is (start time, instance id), latest first, read from the start-time index of
each shard (``indexes.TimeIndexes``); the cursor is the last row's pair, so a page
continues after it even while new instances arrive (they sort before it) or listed ones
change status (each is listed at most once). A page reads its own rows (and, with a
filter, the index entries it skips), never every candidate.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rustyflower.adapters.redis.indexes import TimeIndexes, millis_of
from rustyflower.adapters.redis.keys import PRIORITIES
from rustyflower.core.errors import RustyFlowerError
from rustyflower.core.instance_store import LOCAL, InstanceInfo

STATUSES = ("running", "succeeded", "failed", "cancelled")
MAX_PAGE = 1000
INFO_FIELDS = (
    "flow", "version", "status", "held", "seq", "epoch", "priority",
    "updated_at", "created_at", "owner", "owner_at",
)  # fmt: skip


class CursorError(RustyFlowerError, ValueError):
    """A listing cursor that this store did not hand out (or that was altered)."""


@dataclass(frozen=True)
class InstancePage:
    """One page of a listing; ``next_cursor`` None: this was the last page."""

    items: list[InstanceInfo]
    next_cursor: str | None


def encode_cursor(started_ms: float, instance_id: str) -> str:
    raw = json.dumps([int(started_ms), instance_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The (start time in ms, id) a cursor holds; a cursor of the earlier form, whose
    first part was the creation timestamp's text, is read too."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        raise CursorError(f"cursor {cursor[:40]!r} is not one this listing handed out") from None
    if not isinstance(value, list) or len(value) != 2 or not isinstance(value[1], str):
        raise CursorError(f"cursor {cursor[:40]!r} is not one this listing handed out")
    started = value[0]
    if isinstance(started, str) and started:
        started = millis_of(started)
    if isinstance(started, bool) or not isinstance(started, int) or started <= 0:
        raise CursorError(f"cursor {cursor[:40]!r} is not one this listing handed out")
    return float(started), value[1]


def page_instances(
    indexes: TimeIndexes,
    read_infos: Callable[[list[str]], list[InstanceInfo | None]],
    *,
    status: str | None = None,
    flow: str | None = None,
    held: bool | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> InstancePage:
    """Up to ``limit`` instances after ``cursor``, newest first; ``read_infos`` reads the
    rows' summaries in one round trip (None for one removed meanwhile)."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"status {status!r}: use one of {', '.join(STATUSES)}")
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be from 1 to {MAX_PAGE}")
    before = decode_cursor(cursor) if cursor is not None else None
    rows = indexes.newest(status, flow, held, limit + 1, before)
    more = len(rows) > limit
    rows = rows[:limit]
    infos = read_infos([instance_id for _, instance_id in rows])
    # a row whose status changed between the index read and now is left out of this
    # page; the cursor still moves past it, so no other row is skipped or repeated
    items = [
        info
        for info in infos
        if info is not None
        and (status is None or info.status == status)
        and (flow is None or info.flow == flow)
        and (held is None or info.held == held)
    ]
    return InstancePage(items, encode_cursor(*rows[-1]) if more and rows else None)


def info_of(instance_id: str, values: list[Any]) -> InstanceInfo:
    text = [_text(value) if value is not None else "" for value in values]
    return InstanceInfo(
        instance_id=instance_id,
        flow=text[0],
        version=text[1],
        status=text[2],
        held=text[3] == "1",
        seq=int(text[4]),
        epoch=int(text[5] or 0),
        priority=text[6] if text[6] in PRIORITIES else "normal",
        updated_at=text[7],
        created_at=text[8] or text[7],
        owner=text[9] or LOCAL,
        owner_since=text[10],
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
