"""The ledger: where each failed-over instance went (cloud, epoch, execution or
orchestration, child flows), for failback and for people.

It is a convenience, never the authority (the store's epoch and owner are). The store
keeps it (``InstanceStore.record_ledger``); this module decides what a record holds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from rustyflower.core.instance_store import InstanceStore
from rustyflower.core.timeutil import format_timestamp

__all__ = ["children", "forget", "read", "record"]


def record(store: InstanceStore, instance_id: str, fields: Mapping[str, Any]) -> None:
    """Write where the instance went (replacing its previous record); None values are
    left out, others not text are written as JSON; ``at`` is now."""
    values = {
        name: value if isinstance(value, str) else json.dumps(value)
        for name, value in fields.items()
        if value is not None
    }
    values["at"] = format_timestamp(datetime.now(UTC))
    store.record_ledger(instance_id, values)


def read(store: InstanceStore, instance_id: str) -> dict[str, str]:
    """The recorded failover of an instance (empty when none is recorded)."""
    return store.ledger(instance_id)


def forget(store: InstanceStore, instance_id: str) -> None:
    store.forget_ledger(instance_id)


def children(entry: Mapping[str, str]) -> list[str]:
    """The child flows a record says went with the instance."""
    raw = entry.get("children")
    if not raw:
        return []
    try:
        value = json.loads(raw)
    except ValueError:
        return []
    return [str(item) for item in value] if isinstance(value, list) else []
