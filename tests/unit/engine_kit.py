"""Helpers the engine unit tests share: a fixed clock, flow building, command picking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rustyflower.core.engine import Command, Event, FinishFlow, Snapshot, Transition, advance
from rustyflower.core.errors import EventRejectedError
from rustyflower.core.model import FlowDefinition, parse_definition
from rustyflower.core.snapshot.document import encode_snapshot

NOW = datetime(2024, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def flow(states: dict[str, Any], start_at: str = "A", **extra: Any) -> FlowDefinition:
    return parse_definition({"name": "f", "start_at": start_at, "states": states, **extra})


def of(commands: tuple[Command, ...], kind: type) -> list[Any]:
    return [command for command in commands if isinstance(command, kind)]


def one(commands: tuple[Command, ...], kind: type) -> Any:
    found = of(commands, kind)
    assert len(found) == 1, commands
    return found[0]


def finish(transition: Transition) -> FinishFlow:
    command = transition.commands[-1]
    assert isinstance(command, FinishFlow), transition.commands
    return command


def rejected(snapshot: Snapshot, event: Event, error: type[Exception], now: datetime = NOW) -> None:
    """The event raises exactly ``error`` and leaves the snapshot as it was."""
    before = encode_snapshot(snapshot)
    with pytest.raises(EventRejectedError) as caught:
        advance(snapshot, event, now)
    assert type(caught.value) is error
    assert encode_snapshot(snapshot) == before
