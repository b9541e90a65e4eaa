"""What the runner commands connect to: Redis URL, key prefix, snapshot keys.

The connection options are read in one place and the client is built once per run:

* ``rustyflower --redis-url URL --prefix P --data-dir D COMMAND ...`` (the group's
  callback, ``main.main_options``) puts a ``Connection`` in the click context;
* every command that talks to a Redis is a ``ConnectedCommand``: it accepts the same
  options after its name as well (``rustyflower status ID --redis-url URL``, the
  placement users have always typed), and those override the group's;
* the command asks ``connection_of(ctx)`` for the client, store or conductor, which are
  built on first use, so a command that fails on its arguments never touches the network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import redis
import typer
import typer.main

from rustyflower.adapters.cli.errors import CliEnvironmentError, CliInputError
from rustyflower.adapters.cli.options import Command
from rustyflower.adapters.redis.connection import (
    DEFAULT_DATA_DIR,
    URL_VARIABLE,
    connect,
    redact,
    resolve_url,
)
from rustyflower.adapters.redis.keys import Keyspace
from rustyflower.adapters.redis.schedule_store import ScheduleStore
from rustyflower.adapters.redis.store import RedisStore
from rustyflower.core.snapshot import SnapshotKeys

if TYPE_CHECKING:
    from rustyflower.adapters.redis.conductor import Conductor
    from rustyflower.adapters.redis.limits import Limits
    from rustyflower.client import Client

PREFIX_VARIABLE = "RUSTYFLOWER_PREFIX"
DATA_DIR_VARIABLE = "RUSTYFLOWER_DATA_DIR"
SHARDS_VARIABLE = "RUSTYFLOWER_SHARDS"
DEFAULT_PREFIX = "rf"

PANEL = "Connection"
_URL_HELP = (
    f"redis://, rediss:// (TLS) or unix:// URL (env: {URL_VARIABLE}; default: the server "
    "of `rustyflower dev` in --data-dir)."
)
_PREFIX_HELP = "Key prefix in Redis."
_DATA_DIR_HELP = "Where `rustyflower dev` keeps its data and server.url."

# The group's options: they read the environment and carry the defaults.
RedisUrlOption = Annotated[
    str | None,
    typer.Option("--redis-url", help=_URL_HELP, show_default=False, rich_help_panel=PANEL),
]
PrefixOption = Annotated[
    str,
    typer.Option("--prefix", envvar=PREFIX_VARIABLE, help=_PREFIX_HELP, rich_help_panel=PANEL),
]
DataDirOption = Annotated[
    Path,
    typer.Option(
        "--data-dir", envvar=DATA_DIR_VARIABLE, help=_DATA_DIR_HELP, rich_help_panel=PANEL
    ),
]


@dataclass
class Connection:
    """Lazily built client, store and conductor for one run of the command."""

    redis_url: str | None = None
    prefix: str = DEFAULT_PREFIX
    data_dir: Path = DEFAULT_DATA_DIR
    _url: str | None = field(default=None, init=False)
    _client: redis.Redis | None = field(default=None, init=False, repr=False)
    _store: RedisStore | None = field(default=None, init=False, repr=False)
    _conductor: Conductor | None = field(default=None, init=False, repr=False)
    _public: Client | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        if self._url is None:
            self._url = resolve_url(self.redis_url, self.data_dir)
        return self._url

    @property
    def where(self) -> str | None:
        """The redacted URL once it is known (for messages about the server)."""
        return redact(self._url) if self._url is not None else None

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

    @property
    def public_client(self) -> Client:
        """``rustyflower.client.Client`` on this run's store: what the instance and control
        commands use, so they do exactly what a program does."""
        if self._public is None:
            from rustyflower.client import Client  # noqa: PLC0415

            self._public = Client(self.store, self.url)
        return self._public

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


def connection_of(ctx: typer.Context) -> Connection:
    """The run's connection: made by the group's callback, completed by the command's options."""
    found = ctx.find_object(Connection)
    if found is None:  # a command invoked without the `rustyflower` group (embedding)
        found = Connection(
            prefix=os.environ.get(PREFIX_VARIABLE) or DEFAULT_PREFIX,
            data_dir=Path(os.environ.get(DATA_DIR_VARIABLE) or DEFAULT_DATA_DIR),
        )
        ctx.find_root().obj = found
        ctx.obj = found
    return found


# --- the options after a command's name ------------------------------------------------------


def _placed_after_the_command(
    redis_url: Annotated[
        str | None,
        typer.Option("--redis-url", help=_URL_HELP, show_default=False, rich_help_panel=PANEL),
    ] = None,
    prefix: Annotated[
        str | None,
        typer.Option(
            "--prefix",
            help=f"{_PREFIX_HELP} (env: {PREFIX_VARIABLE}; default: {DEFAULT_PREFIX})",
            show_default=False,
            rich_help_panel=PANEL,
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help=f"{_DATA_DIR_HELP} (env: {DATA_DIR_VARIABLE}; default: {DEFAULT_DATA_DIR})",
            show_default=False,
            rich_help_panel=PANEL,
        ),
    ] = None,
) -> None:
    """Only its signature matters: typer turns it into the options below."""


def _command_options() -> dict[str, Any]:
    template = typer.Typer(add_completion=False)
    template.command()(_placed_after_the_command)
    return {param.name: param for param in typer.main.get_command(template).params}


_COMMAND_OPTIONS = _command_options()


class ConnectedCommand(Command):
    """A command that takes the connection options after its name as well as before it.

    Given there, they override the group's (``rustyflower --prefix a status ID --prefix b``
    reads prefix b). The command function never sees them: it asks ``connection_of(ctx)``.
    """

    connection_options: tuple[str, ...] = ("redis_url", "prefix", "data_dir")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(_COMMAND_OPTIONS[name] for name in self.connection_options)

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click Context
        given = {name: ctx.params.pop(name, None) for name in self.connection_options}
        settings = connection_of(ctx)
        if given.get("redis_url") is not None:
            settings.redis_url = given["redis_url"]
        if given.get("prefix") is not None:
            settings.prefix = given["prefix"]
        if given.get("data_dir") is not None:
            settings.data_dir = Path(given["data_dir"])
        return super().invoke(ctx)


class LocalCloudCommand(ConnectedCommand):
    """A local cloud's command (``cloud azure``): it connects to no Redis, but takes
    ``--data-dir`` after its name too (where it records its settings for the other
    commands: ``adapters.localcloud.record``)."""

    connection_options = ("data_dir",)


class ServerCommand(ConnectedCommand):
    """``dev``: it starts its own server, so it takes no --redis-url."""

    connection_options = ("prefix", "data_dir")

    def invoke(self, ctx: Any) -> Any:
        if connection_of(ctx).redis_url is not None:
            raise CliInputError("dev starts its own server: give it no --redis-url")
        return super().invoke(ctx)
