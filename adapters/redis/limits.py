"""Queue limits shared by every worker: concurrency per flow or per key, rate per activity.

Limits are stored in Redis (``rustyflower limits set ...``), so every worker enforces the
same numbers; work that may not run yet is parked and retried later, never dropped.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import redis

from rustyflower.adapters.redis import scripts
from rustyflower.adapters.redis.keys import Keyspace

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_PER_SECOND = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60}
_PER_SECOND |= {"h": 3600, "hour": 3600}


def parse_rate(text: str) -> float:
    """'10/s', '600/min', '5/h' -> calls per second."""
    match = _RATE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a rate; write for example 10/s, 600/min or 5/h")
    per_second = float(match.group(1)) / _PER_SECOND[match.group(2)]
    if per_second <= 0:
        raise ValueError(f"rate {text!r} must be above zero")
    return per_second


@dataclass
class LimitSettings:
    """The limits in force: flow name -> max running activities, key limit, activity rates."""

    flows: dict[str, int] = field(default_factory=dict)
    per_key: int | None = None
    rates: dict[str, float] = field(default_factory=dict)
    bursts: dict[str, int] = field(default_factory=dict)
    """Calls an activity may make at once after a quiet spell (default 1: even spacing)."""


class Limits:
    """Reads the shared settings (cached briefly) and applies them with Redis scripts."""

    def __init__(
        self,
        client: redis.Redis,
        keyspace: Keyspace,
        lease_ms: int = 60_000,
        refresh_s: float = 2.0,
    ) -> None:
        self.client = client
        self.keys = keyspace
        self.lease_ms = lease_ms
        self.refresh_s = refresh_s
        self._acquire = client.register_script(scripts.ACQUIRE)
        self._take_token = client.register_script(scripts.TAKE_TOKEN)
        self._settings = LimitSettings()
        self._loaded_at = 0.0

    # --- settings -------------------------------------------------------------------------

    @property
    def _key(self) -> str:
        return f"{self.keys.prefix}:limits"

    def settings(self) -> LimitSettings:
        if time.monotonic() - self._loaded_at > self.refresh_s:
            raw = {_text(k): _text(v) for k, v in self.client.hgetall(self._key).items()}
            settings = LimitSettings()
            for name, value in raw.items():
                kind, _, target = name.partition(":")
                if kind == "flow":
                    settings.flows[target] = int(value)
                elif kind == "key":
                    settings.per_key = int(value)
                elif kind == "rate":
                    settings.rates[target] = float(value)
                elif kind == "burst":
                    settings.bursts[target] = int(value)
            self._settings = settings
            self._loaded_at = time.monotonic()
        return self._settings

    def set_flow_concurrency(self, flow: str, limit: int | None) -> None:
        self._set(f"flow:{flow}", limit)

    def set_key_concurrency(self, limit: int | None) -> None:
        self._set("key:", limit)

    def set_rate(self, activity: str, rate: str | None, burst: int = 1) -> None:
        """``rate`` like '10/s'; ``burst`` calls may start together after a quiet spell."""
        if burst < 1:
            raise ValueError("a burst is at least 1")
        self._set(f"rate:{activity}", parse_rate(rate) if rate is not None else None)
        self._set(f"burst:{activity}", burst if rate is not None and burst > 1 else None)

    def _set(self, name: str, value: float | None) -> None:
        if value is None:
            self.client.hdel(self._key, name)
        else:
            if value <= 0:
                raise ValueError("a limit must be above zero")
            self.client.hset(self._key, name, str(value))
        self._loaded_at = 0.0

    def describe(self) -> dict[str, str]:
        return {_text(k): _text(v) for k, v in self.client.hgetall(self._key).items()}

    # --- enforcing ------------------------------------------------------------------------

    def admit(self, holder: str, flow: str | None, key: str | None, activity: str) -> int:
        """0 when the work may run now (slots taken), else milliseconds to wait."""
        settings = self.settings()
        rate = settings.rates.get(activity)
        if rate is not None:
            burst = settings.bursts.get(activity, 1)
            token_args: list[int | float] = [_now_ms(), rate, burst]
            wait = int(self._take_token(keys=[self.keys.rate(activity)], args=token_args))
            if wait > 0:
                return wait
        taken: list[str] = []
        for semaphore, limit in self._semaphores(settings, flow, key):
            if not self._try(semaphore, limit, holder):
                for name in taken:
                    self.client.zrem(name, holder)
                return 200
            taken.append(semaphore)
        return 0

    def renew(self, holder: str, flow: str | None, key: str | None) -> None:
        for semaphore, limit in self._semaphores(self.settings(), flow, key):
            self._try(semaphore, limit, holder)

    def release(self, holder: str, flow: str | None, key: str | None) -> None:
        for semaphore, _ in self._semaphores(self.settings(), flow, key):
            self.client.zrem(semaphore, holder)

    def _semaphores(
        self, settings: LimitSettings, flow: str | None, key: str | None
    ) -> list[tuple[str, int]]:
        found = []
        if flow is not None and flow in settings.flows:
            found.append((self.keys.semaphore(f"flow:{flow}"), settings.flows[flow]))
        if key is not None and settings.per_key is not None:
            found.append((self.keys.semaphore(f"key:{key}"), settings.per_key))
        return found

    def _try(self, semaphore: str, limit: int, holder: str) -> bool:
        now = _now_ms()
        args: list[int | str] = [now, limit, holder, now + self.lease_ms, self.lease_ms * 2]
        return bool(int(self._acquire(keys=[semaphore], args=args)))


def _now_ms() -> int:
    return int(time.time() * 1000)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
