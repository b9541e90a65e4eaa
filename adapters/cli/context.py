"""What the runner commands connect to: Redis URL, key prefix, snapshot keys.

Every command that talks to a Redis takes the same options (``--redis-url``,
``--prefix``, ``--data-dir``) and builds its client, store and conductor here, once.
This module also decides how errors read and which exit code they give, so every
command reports the same fault the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import redis
import typer

from rustyflower.adapters.redis.connection import (
    DEFAULT_DATA_DIR,
    URL_VARIABLE,
    RedisUnavailableError,
    connect,
    redact,
    resolve_url,
)
from rustyflower.adapters.redis.keys import Keyspace
from rustyflower.adapters.redis.schedule_store import ScheduleStore
from rustyflower.adapters.redis.store import RedisStore
from rustyflower.core.errors import DefinitionError, EpochConflictError, RustyFlowerError
from rustyflower.core.snapshot import SnapshotKeys

if TYPE_CHECKING:
    from rustyflower.adapters.redis.conductor import Conductor
    from rustyflower.adapters.redis.limits import Limits

PREFIX_VARIABLE = "RUSTYFLOWER_PREFIX"
DATA_DIR_VARIABLE = "RUSTYFLOWER_DATA_DIR"
SHARDS_VARIABLE = "RUSTYFLOWER_SHARDS"

EXIT_OK = 0
EXIT_FLOW_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_ENVIRONMENT = 3
"""Redis unreachable or gone, bad environment settings, or ``start --wait --timeout``."""

_PANEL = "Connection"

RedisUrlOption = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        help=(
            f"redis://, rediss:// (TLS) or unix:// URL [env: {URL_VARIABLE}; default: the "
            "server of `rustyflower dev` in --data-dir]"
        ),
        show_default=False,
        rich_help_panel=_PANEL,
    ),
]
PrefixOption = Annotated[
    str,
    typer.Option(
        "--prefix", envvar=PREFIX_VARIABLE, help="Key prefix in Redis.", rich_help_panel=_PANEL
    ),
]
DataDirOption = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar=DATA_DIR_VARIABLE,
        help="Where `rustyflower dev` keeps its data and server.url.",
        rich_help_panel=_PANEL,
    ),
]


class CliEnvironmentError(RustyFlowerError):
    """The environment (settings, a server) is not usable; exit 3."""


class TimedOutError(RustyFlowerError):
    """``start --wait --timeout`` ran out before the instance finished; exit 3."""


@dataclass
class Connection:
    """Lazily built client, store and conductor for one command."""

    redis_url: str | None = None
    prefix: str = "rf"
    data_dir: Path = DEFAULT_DATA_DIR
    _url: str | None = field(default=None, init=False)
    _client: redis.Redis | None = field(default=None, init=False, repr=False)
    _store: RedisStore | None = field(default=None, init=False, repr=False)
    _conductor: Conductor | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        if self._url is None:
            self._url = resolve_url(self.redis_url, self.data_dir)
        return self._url

    @property
    def keyspace(self) -> Keyspace:
        raw_shards = os.environ.get(SHARDS_VARIABLE, "1")
        try:
            return Keyspace(prefix=self.prefix, shards=int(raw_shards))
        except ValueError as error:
            raise CliEnvironmentError(
                f"--prefix {self.prefix!r} / {SHARDS_VARIABLE}={raw_shards!r}: {error}"
            ) from None

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            keyspace = self.keyspace  # a bad prefix fails before any network I/O
            del keyspace
            global _current_url  # noqa: PLW0603 - for "went away" messages in error handling
            _current_url = self.url
            self._client = connect(self.url)
        return self._client

    @property
    def store(self) -> RedisStore:
        if self._store is None:
            self._store = RedisStore(self.client, self.keyspace, snapshot_keys())
        return self._store

    @property
    def conductor(self) -> Conductor:
        if self._conductor is None:
            from rustyflower.adapters.redis.conductor import Conductor  # noqa: PLC0415

            self._conductor = Conductor(self.store)
        return self._conductor

    def limits(self) -> Limits:
        from rustyflower.adapters.redis.limits import Limits  # noqa: PLC0415

        return Limits(self.client, self.keyspace)

    def schedules(self) -> ScheduleStore:
        return ScheduleStore(self.client, self.keyspace)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def snapshot_keys() -> SnapshotKeys:
    try:
        return SnapshotKeys.from_env(os.environ)
    except ValueError as error:
        raise CliEnvironmentError(str(error)) from None


_current_url: str | None = None


def describe_error(error: BaseException) -> tuple[int, list[str]] | None:
    """The exit code and message lines for an error a command let through; None: a bug."""
    if isinstance(error, DefinitionError):
        source = error.source or "flow"
        return EXIT_BAD_INPUT, [f"{source}: {problem}" for problem in error.problems]
    if isinstance(error, RedisUnavailableError | CliEnvironmentError | TimedOutError):
        return EXIT_ENVIRONMENT, [str(error)]
    if isinstance(error, EpochConflictError):
        return EXIT_BAD_INPUT, [f"refused: {error}"]
    if isinstance(error, RustyFlowerError):
        return EXIT_BAD_INPUT, [str(error)]
    if isinstance(error, redis.AuthenticationError):
        return EXIT_ENVIRONMENT, [f"Redis at {_where()} refused the credentials: {error}"]
    if isinstance(error, redis.ConnectionError | redis.TimeoutError):
        return EXIT_ENVIRONMENT, [f"Redis at {_where()} went away ({error})"]
    if isinstance(error, redis.ResponseError):
        return EXIT_ENVIRONMENT, [f"Redis at {_where()} answered: {error}"]
    return None


def _where() -> str:
    return redact(_current_url) if _current_url else "(unknown)"
