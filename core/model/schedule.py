"""Schedule metadata: when a flow starts by itself (the runners carry it out).

Its fields are checked by the rules every runtime applies (``core.schedules``): the cron
language, the time zone, the policies and JSON input. The names its schedules get are
checked with the whole definition (``FlowDefinition``), as they include the flow's name.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, JsonValue, field_validator

from rustyflower.core.model.common import MODEL_CONFIG
from rustyflower.core.schedules.cron import cron_expression, time_zone
from rustyflower.core.schedules.spec import CatchUp, Overlap, check_input


class Schedule(BaseModel):
    """A cron schedule in a time zone, with what to do on overlap and after downtime."""

    model_config = MODEL_CONFIG

    name: str | None = Field(default=None, max_length=80)
    cron: str
    timezone: str = "UTC"
    input: JsonValue = None
    overlap: Overlap = "skip"
    catch_up: CatchUp = "latest"
    enabled: bool = True

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        cron_expression(value)  # InvalidScheduleError is a ValueError: pydantic reports it
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        time_zone(value)
        return value

    @field_validator("input")
    @classmethod
    def _plain_json(cls, value: Any) -> Any:
        return check_input(value)
