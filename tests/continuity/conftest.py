"""Fixtures: the real Redis servers of the runner tests (embedded Valkey and redis-server)."""

from __future__ import annotations

from tests.redis.conftest import runtime, server

__all__ = ["runtime", "server"]
