"""Fixtures of the orchestrator tests (opt in with ``pytest.mark.usefixtures("azure_env")``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.azure.support import MEMORY_SINK, app_settings


@pytest.fixture
def azure_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The Function App's settings in the process environment, and an empty test sink."""
    settings = app_settings()
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    MEMORY_SINK.puts.clear()
    yield settings
    MEMORY_SINK.puts.clear()
