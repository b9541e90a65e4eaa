"""Reading work from the shards' streams: what one executor round of the worker reads.

A shard's three streams (one per priority) are read in strict priority order by one
script (``scripts.READ_BY_PRIORITY``); a thread that serves several shards (on a
cluster, on several nodes) reads them all in one pipelined round trip, and blocks only
when all were empty, briefly and on one shard at a time, since no single read can wait
on several nodes at once.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.commands.core import Script

from rustyflower.adapters.redis.keys import CONSUMER_GROUP, PRIORITIES, Keyspace
from rustyflower.adapters.redis.scripting import run_scripts

Batch = list[tuple[int, str, dict[Any, Any]]]
"""Messages of one shard: (priority index, message id, fields), highest priority first."""

MULTI_SHARD_BLOCK_MS = 20
"""How long a thread that reads several shards blocks on one of them when all were empty:
work that arrives on another shard meanwhile waits at most about this long."""


def read_shards(
    client: redis.Redis,
    read_by_priority: Script,
    keys: Keyspace,
    shards: list[int],
    *,
    consumer: str,
    count: int,
) -> list[tuple[int, Batch]]:
    """Up to ``count`` messages from each of ``shards``, in one round trip; only the
    shards that had some."""
    replies = run_scripts(
        client,
        [
            (read_by_priority, keys.streams(shard), [CONSUMER_GROUP, consumer, count])
            for shard in shards
        ],
    )
    return [(shard, batch_of(found)) for shard, found in zip(shards, replies, strict=True) if found]


def blocking_read(
    client: redis.Redis, keys: Keyspace, shard: int, consumer: str, block_ms: int
) -> Batch:
    """One message of the shard's streams, waiting up to ``block_ms`` for it."""
    streams: dict[Any, Any] = {stream: ">" for stream in keys.streams(shard)}
    response: Any = client.xreadgroup(CONSUMER_GROUP, consumer, streams, count=1, block=block_ms)
    return _batch_of_streams(response)


OWN_PENDING_MAX = 1_000
"""Messages of a consumer's pending list read at once per stream: a thread holds at most
two batches and one in flight, so more is a leftover of a crash, taken on later rounds."""


def own_pending(client: redis.Redis, keys: Keyspace, shard: int, consumer: str) -> Batch:
    """The messages the shard's streams gave ``consumer`` and that are not acknowledged
    (read from its pending list: ID 0), highest priority first; deleted ones left out."""
    streams: dict[Any, Any] = {stream: "0" for stream in keys.streams(shard)}
    response: Any = client.xreadgroup(CONSUMER_GROUP, consumer, streams, count=OWN_PENDING_MAX)
    return _batch_of_streams(response)


def _batch_of_streams(response: Any) -> Batch:
    """An XREADGROUP reply over a shard's streams, highest priority first (an entry
    deleted since it was delivered comes without fields: left out)."""
    batch = [
        (priority_of(stream), _text(message_id), fields)
        for stream, entries in response or []
        for message_id, fields in entries
        if fields
    ]
    return sorted(batch, key=lambda item: item[0])


def batch_of(found: Any) -> Batch:
    """READ_BY_PRIORITY's reply as (priority, message id, fields) entries."""
    priority, entries = int(found[0]), found[1]
    return [
        (priority, _text(message_id), dict(zip(flat[::2], flat[1::2], strict=True)))
        for message_id, flat in entries
    ]


def priority_of(stream: bytes | str) -> int:
    names: list[str] = list(PRIORITIES)
    return names.index(_text(stream).rsplit(":", 1)[1])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
