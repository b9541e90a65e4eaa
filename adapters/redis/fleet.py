"""What the workers on a Redis report about themselves, for `rustyflower workers` and dashboards.

Each running worker keeps a heartbeat key (``Keyspace.worker_health``) with its threads'
health, its activities and its counters; the key expires when the worker stops renewing
it. Work routed to an activity (because the worker that read it lacks the activity)
waits on that activity's streams until a worker that has it runs it.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from rustyflower.adapters.redis.keys import CONSUMER_GROUP, Keyspace


def fleet_report(client: redis.Redis, keys: Keyspace) -> dict[str, Any]:
    """``{"workers": [...heartbeats...], "waiting": [{"activity", "messages", "workers"}]}``."""
    workers: list[dict[str, Any]] = []
    for key in client.scan_iter(match=keys.worker_health_pattern(), count=500):
        try:
            raw = client.get(key)
            found = json.loads(raw) if raw is not None else None  # None: expired meanwhile
        except (redis.ResponseError, ValueError):
            continue  # a key of another prefix that happens to match (prefixes may hold ':')
        if isinstance(found, dict):
            workers.append(found)
    workers.sort(key=lambda worker: str(worker.get("name", "")))
    waiting = []
    routed = sorted(_text(m) for m in client.smembers(keys.routed_activities()))
    for activity in routed:
        messages = sum(
            waiting_messages(client, keys.activity_stream(shard, activity))
            for shard in range(keys.shards)
        )
        if messages:
            able = [w["name"] for w in workers if activity in w.get("activities", [])]
            waiting.append({"activity": activity, "messages": messages, "workers": able})
    return {"workers": workers, "waiting": waiting}


def waiting_messages(client: redis.Redis, stream: str) -> int:
    """Entries of ``stream`` its consumer group has not read or not acknowledged yet."""
    if not client.exists(stream):
        return 0
    for group in client.xinfo_groups(stream):
        if _text(group["name"]) == CONSUMER_GROUP:
            lag = group.get("lag")
            if lag is None:  # the server cannot tell (entries deleted): count what is left
                return int(client.xlen(stream))
            return int(lag) + int(group["pending"])
    return int(client.xlen(stream))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
