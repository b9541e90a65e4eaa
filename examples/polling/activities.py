"""Activities of the polling example: an export that becomes ready after a few polls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rustyflower import ActivityRegistry

registry = ActivityRegistry()


def _stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@registry.activity
def start_export(payload: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "job_id": f"export-{payload.get('table', 'orders')}",
        "status": "running",
        "polls": 0,
        "ready_after": payload.get("ready_after_polls", 3),
        "poll_seconds": payload.get("poll_seconds", 1),
        "deadline": _stamp(now + timedelta(seconds=payload.get("deadline_seconds", 30))),
        "checked_at": _stamp(now),
    }


@registry.activity
def check_export(job: dict[str, Any]) -> dict[str, Any]:
    """A real check asks the export service; this one is ready after ``ready_after`` polls."""
    polls = job["polls"] + 1
    status = "ready" if polls >= job["ready_after"] else "running"
    return {**job, "polls": polls, "status": status, "checked_at": _stamp(datetime.now(UTC))}
