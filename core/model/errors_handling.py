"""Retry and catch policies, with the meaning (and limits) of ASL's Retry and Catch."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from rustyflower.core.contract import ReservedError
from rustyflower.core.model.common import MODEL_CONFIG, ErrorName, ReferencePath, StateName


class Retry(BaseModel):
    """Retry the state when it fails with one of ``errors``."""

    model_config = MODEL_CONFIG

    errors: list[ErrorName] = Field(default_factory=lambda: [ReservedError.ALL], min_length=1)
    interval_seconds: int = Field(default=1, ge=1, le=99_999_999)
    max_attempts: int = Field(default=3, ge=0, le=99_999_999)
    backoff_rate: float = Field(default=2.0, ge=1.0, le=1_000.0)
    max_delay_seconds: int | None = Field(default=None, ge=1, le=31_622_400)
    jitter: Literal["none", "full"] = "none"

    @model_validator(mode="after")
    def _all_alone(self) -> Retry:
        if ReservedError.ALL in self.errors and len(self.errors) > 1:
            raise ValueError(f"{ReservedError.ALL} must appear alone in its errors list")
        return self


class Catch(BaseModel):
    """Go to ``next`` when the state fails with one of ``errors`` (after retries)."""

    model_config = MODEL_CONFIG

    errors: list[ErrorName] = Field(default_factory=lambda: [ReservedError.ALL], min_length=1)
    next: StateName
    result_path: ReferencePath | None = "$"

    @model_validator(mode="after")
    def _all_alone(self) -> Catch:
        if ReservedError.ALL in self.errors and len(self.errors) > 1:
            raise ValueError(f"{ReservedError.ALL} must appear alone in its errors list")
        return self
