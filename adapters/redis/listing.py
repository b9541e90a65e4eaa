"""Listing instances a page at a time: newest first, filtered, with a cursor that holds.

The order is (creation time, instance id), latest first; the cursor is the last row's
pair, so a page continues after it even while new instances arrive (they sort before
it) or listed ones change status (each is listed at most once).

Every page reads the candidates' creation times from their hashes, which costs one
pipelined read per candidate of the filters given (the status and flow indexes are
sets, in no order). A start-time index (a sorted set per shard) would let a page read
only its own rows; until the store has one, this is linear in the candidates.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis

from rustyflower.adapters.redis.keys import PRIORITIES, Keyspace
from rustyflower.core.errors import RustyFlowerError
from rustyflower.core.instance_store import LOCAL, InstanceInfo

STATUSES = ("running", "succeeded", "failed", "cancelled")
MAX_PAGE = 1000
INFO_FIELDS = (
    "flow", "version", "status", "held", "seq", "epoch", "priority",
    "updated_at", "created_at", "owner", "owner_at",
)  # fmt: skip
_READ_CHUNK = 1000


class CursorError(RustyFlowerError, ValueError):
    """A listing cursor that this store did not hand out (or that was altered)."""


@dataclass(frozen=True)
class InstancePage:
    """One page of a listing; ``next_cursor`` None: this was the last page."""

    items: list[InstanceInfo]
    next_cursor: str | None


def encode_cursor(info: InstanceInfo) -> str:
    raw = json.dumps([info.created_at, info.instance_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        raise CursorError(f"cursor {cursor[:40]!r} is not one this listing handed out") from None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(part, str) for part in value)
    ):
        raise CursorError(f"cursor {cursor[:40]!r} is not one this listing handed out")
    return value[0], value[1]


def page_instances(
    client: redis.Redis,
    keys: Keyspace,
    *,
    status: str | None = None,
    flow: str | None = None,
    held: bool | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> InstancePage:
    """Up to ``limit`` instances after ``cursor``, newest first."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"status {status!r}: use one of {', '.join(STATUSES)}")
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be from 1 to {MAX_PAGE}")
    after = decode_cursor(cursor) if cursor is not None else None
    candidates = _candidates(client, keys, status, flow)
    rows = [
        info
        for info in _infos(client, keys, candidates)
        if (held is None or info.held == held)
        and (status is None or info.status == status)
        and (flow is None or info.flow == flow)
        and (after is None or (info.created_at, info.instance_id) < after)
    ]
    rows.sort(key=lambda info: (info.created_at, info.instance_id), reverse=True)
    page = rows[:limit]
    more = len(rows) > limit
    return InstancePage(page, encode_cursor(page[-1]) if more and page else None)


def _candidates(
    client: redis.Redis, keys: Keyspace, status: str | None, flow: str | None
) -> list[str]:
    found: set[str] = set()
    for shard in range(keys.shards):
        if status is not None and flow is not None:
            members: Any = client.sinter(
                [keys.status_index(shard, status), keys.flow_index(shard, flow)]
            )
        elif status is not None:
            members = client.smembers(keys.status_index(shard, status))
        elif flow is not None:
            members = client.smembers(keys.flow_index(shard, flow))
        else:
            members = client.sunion([keys.status_index(shard, each) for each in STATUSES])
        found.update(_text(member) for member in members)
    return sorted(found)


def _infos(client: redis.Redis, keys: Keyspace, ids: list[str]) -> Iterable[InstanceInfo]:
    for offset in range(0, len(ids), _READ_CHUNK):
        chunk = ids[offset : offset + _READ_CHUNK]
        pipe = client.pipeline(transaction=False)
        for instance_id in chunk:
            pipe.hmget(keys.instance(instance_id), INFO_FIELDS)
        for instance_id, values in zip(chunk, pipe.execute(), strict=True):
            if values[4] is None:  # removed between the index read and now
                continue
            yield info_of(instance_id, values)


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
