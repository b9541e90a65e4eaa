"""Schedule metadata: when a flow starts by itself (the runners carry it out)."""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, Field, JsonValue, field_validator

from rustyflower.core.model.common import MODEL_CONFIG


class Schedule(BaseModel):
    """A cron schedule in a time zone, with what to do on overlap and after downtime."""

    model_config = MODEL_CONFIG

    name: str | None = Field(default=None, max_length=80)
    cron: str
    timezone: str = "UTC"
    input: JsonValue = None
    overlap: Literal["skip", "allow", "buffer_one"] = "skip"
    catch_up: Literal["none", "latest", "all"] = "latest"
    enabled: bool = True

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        if not croniter.is_valid(value):
            raise ValueError(
                f"{value!r} is not a valid cron expression (5 fields: m h dom mon dow)"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value
