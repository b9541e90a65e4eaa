"""RFC 3339 timestamps as the engine, snapshots and ASL all read and write them."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_timestamp(text: object) -> datetime | None:
    """Parse an RFC 3339 time with a 'T' separator and a zone; None when it is not one."""
    if not isinstance(text, str) or len(text) < 20 or text[10] != "T":
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed


def format_timestamp(moment: datetime) -> str:
    """UTC, 'Z' suffix, microseconds only when present: stable text for snapshots."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: RustyFlower only handles aware UTC times")
    text = moment.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def require_aware(moment: datetime) -> datetime:
    """Reject naive datetimes early: a naive 'now' would silently shift every timer."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("'now' must be a timezone-aware datetime (UTC)")
    return moment
