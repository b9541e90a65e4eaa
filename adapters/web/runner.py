"""The runner at a glance: its workers, its queues and its cron schedules.

Read from Redis at each call (as ``/metrics`` is), so every API process shows the same
whichever worker reported it; the dashboard's Workers and Queues pages show these.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends

from rustyflower.adapters.redis.runner_stats import WORKER_ALIVE_SECONDS
from rustyflower.adapters.web.auth import require_token
from rustyflower.adapters.web.instances import Client
from rustyflower.adapters.web.models import ERRORS, QueuesOut, ScheduleOut, WorkersOut
from rustyflower.core.timeutil import format_timestamp

router = APIRouter(dependencies=[Depends(require_token)], tags=["runner"])


@router.get("/v1/workers", response_model=WorkersOut, responses=ERRORS)
async def workers(client: Client) -> dict[str, Any]:
    """Running workers from their heartbeats (alive: one within the last 15 s), their
    threads' health, and work routed to an activity that waits for a worker with it
    (what `rustyflower workers` shows)."""
    report = await client.workers()
    now = time.time()
    found = [_worker(heartbeat, now) for heartbeat in report["workers"]]
    return {
        "workers": found,
        "alive": sum(1 for worker in found if worker["alive"]),
        "routed": report["waiting"],
    }


@router.get("/v1/queues", response_model=QueuesOut, responses=ERRORS)
async def queues(client: Client) -> dict[str, Any]:
    """Work queued per priority (waiting: not yet taken; in progress: taken, not yet
    acknowledged), parked by limits, timers and their lag, dead letters, routed work."""
    stats = await client.stats()
    routed = (await client.workers())["waiting"]
    rows = [
        {
            "priority": priority,
            "waiting": stats.queue_waiting.get(priority, 0),
            "in_progress": stats.queue_in_progress.get(priority, 0),
        }
        for priority in stats.queue_waiting
    ]
    return {
        "queues": rows,
        "waiting": sum(row["waiting"] for row in rows),
        "in_progress": sum(row["in_progress"] for row in rows),
        "deferred": stats.deferred,
        "timers": {
            "scheduled": stats.timers_scheduled,
            "overdue": stats.timers_overdue,
            "lag_seconds": round(stats.oldest_overdue_seconds, 3),
        },
        "dead_letters": stats.dead_letters,
        "routed": routed,
    }


@router.get("/v1/schedules", response_model=list[ScheduleOut], responses=ERRORS)
async def schedules(client: Client) -> list[dict[str, Any]]:
    """Every cron schedule with its last and next fire (`rustyflower schedule list`)."""
    return [view.as_dict() for view in await client.schedules()]


def _worker(heartbeat: dict[str, Any], now: float) -> dict[str, Any]:
    """A heartbeat as the API shows it; tolerant of fields an older worker does not write."""
    beat = float(heartbeat.get("at") or 0.0)
    age = max(0.0, now - beat)
    started = heartbeat.get("started_at")
    threads = heartbeat.get("threads") or {}
    return {
        "name": str(heartbeat.get("name", "")),
        "host": heartbeat.get("host"),
        "pid": heartbeat.get("pid"),
        "alive": age <= WORKER_ALIVE_SECONDS,
        "healthy": bool(heartbeat.get("healthy", False)),
        "heartbeat_age_seconds": round(age, 3),
        "last_heartbeat": _time(beat),
        "started_at": _time(float(started)) if started else None,
        "concurrency": heartbeat.get("concurrency"),
        "activities": list(heartbeat.get("activities") or []),
        "threads": [
            {
                "name": str(name),
                "healthy": bool(thread.get("alive", True)) and thread.get("failing_since") is None,
                "alive": bool(thread.get("alive", True)),
                "rounds": int(thread.get("rounds") or 0),
                "failures": int(thread.get("failures") or 0),
                "restarts": int(thread.get("restarts") or 0),
                "failing_since": thread.get("failing_since"),
                "last_error": thread.get("last_error"),
            }
            for name, thread in sorted(threads.items())
        ],
        "problems": [str(problem) for problem in heartbeat.get("problems") or []],
        "stats": {str(k): int(v) for k, v in (heartbeat.get("stats") or {}).items()},
    }


def _time(seconds: float) -> str:
    return format_timestamp(datetime.fromtimestamp(seconds, UTC))
