"""Reaching a Redis: URLs that cannot be used, redaction of every form of URL, and the
embedded server a killed `dev` leaves behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
import redis

from rustyflower.adapters.redis.connection import (
    EmbeddedValkey,
    RedisUnavailableError,
    RedisUrlError,
    ServerRunningError,
    check_url,
    connect,
    redact,
)
from tests.redis.conftest import Runtime
from tests.redis.servers import free_port

SECRET = "pa/ss#wo?rd:x@y"
"""A password with every character that ends a part of a URL."""

# Each URL holds a secret made of Zq9 and Xw7 (split by the character that breaks the URL);
# no message may show either half.
URLS_THAT_CANNOT_BE_USED = [
    ("redis://:Zq9/Xw7@127.0.0.1:6379/0", "'@' after its host part"),
    ("redis://ops:Zq9#Xw7@127.0.0.1:6379/0", "'@' after its host part"),
    ("redis://ops:Zq9?Xw7@127.0.0.1:6379/0", "'@' after its host part"),
    ("redis://127.0.0.1:99999/0", "port that is not a number from 1 to 65535"),
    ("redis://127.0.0.1:6379x/0", "port that is not a number from 1 to 65535"),
    ("redis://:Zq9Xw7", "port that is not a number from 1 to 65535"),
    ("http://ops:Zq9Xw7@127.0.0.1:6379", "is not a Redis URL"),
    ("redis:/ops:Zq9Xw7@127.0.0.1:6379", "is not a Redis URL"),
    ("ops:Zq9Xw7@127.0.0.1:6379", "is not a Redis URL"),
    ("redis://ops:Zq9Xw7@", "names no host"),
    ("unix://", "names no socket"),
    ("redis://127.0.0.1:6379/0?socket_timeout=soon&password=Zq9Xw7", "cannot be used"),
]


@pytest.mark.parametrize(("url", "expected"), URLS_THAT_CANNOT_BE_USED)
def test_a_url_that_cannot_be_used_is_one_clear_error_without_the_password(
    url: str, expected: str
) -> None:
    """Before: tracebacks (bad port, '/' in a password) that printed part of the password,
    and 'is not a Redis URL' quoting an http:// URL whole."""
    with pytest.raises(RedisUrlError) as raised:
        connect(url)
    message = str(raised.value)
    assert expected in message and "\n" not in message
    assert "Zq9" not in message and "Xw7" not in message, message


@pytest.mark.parametrize(
    "url",
    [
        f"redis://ops:{SECRET}@db.example:6379/0",
        f"rediss://:{SECRET}@db.example:6380/1",
        f"unix://ops:{SECRET}@/run/redis.sock?db=0",
        f"redis://db.example:6379/0?db=1&password={SECRET}",
        f"redis://db.example/0?PASSWORD={SECRET}&ssl_cert_reqs=none",
        f"http://ops:{SECRET}@db.example",
        f"ops:{SECRET}@db.example:6379",
        f"redis://ops:{quote(SECRET, safe='')}@db.example:6379/0",
    ],
)
def test_redaction_holds_for_every_form_of_url(url: str) -> None:
    shown = redact(url)
    assert "***" in shown
    for fragment in ("pa/ss", "wo?rd", "rd:x", "pa%2Fss", "wo%3Frd"):
        assert fragment not in shown, shown


def test_check_url_accepts_the_documented_forms() -> None:
    for url in (
        "redis://127.0.0.1:6379/0",
        "redis://ops:s3cret@db.example:6379/0",
        f"rediss://ops:{quote(SECRET, safe='')}@db.example:6380/0",
        "redis://db.example",
        "unix:///run/redis.sock?db=0",
        "REDIS://db.example:6379",
    ):
        check_url(url)


@pytest.mark.emulator
def test_a_percent_encoded_password_with_url_characters_connects(runtime: Runtime) -> None:
    user = f"u{uuid.uuid4().hex[:8]}"
    runtime.client.acl_setuser(user, enabled=True, passwords=[f"+{SECRET}"], commands=["+@all"])
    try:
        url = f"redis://{user}:{quote(SECRET, safe='')}@127.0.0.1:{runtime.server.port}/0"
        client = connect(url)
        assert client.ping()
        client.close()
    finally:
        runtime.client.acl_deluser(user)


def test_an_unreachable_server_is_reported_redacted() -> None:
    url = f"redis://ops:{quote(SECRET, safe='')}@127.0.0.1:{free_port()}/0"
    with pytest.raises(RedisUnavailableError, match="cannot reach Redis at redis://ops:\\*\\*\\*@"):
        connect(url)


# --- the embedded server of a killed owner -----------------------------------------------------

OWNER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from rustyflower.adapters.redis.connection import EmbeddedValkey
    server = EmbeddedValkey(Path(sys.argv[1]))
    print(server.start(), flush=True)
    time.sleep(600)
    """
)


def _owner(data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    """A process that starts the embedded server and keeps it (as `dev` does)."""
    process = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(data_dir)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.emulator
def test_the_server_of_a_killed_owner_is_stopped_and_replaced(tmp_path: Path) -> None:
    """Before: the next start refused ('already running') until someone found the PID."""
    data_dir = tmp_path / ".rustyflower"
    owner, url = _owner(data_dir)
    orphan_pid = int(redis.Redis.from_url(url).info("server")["process_id"])
    redis.Redis.from_url(url).set("kept", "yes")
    owner.kill()  # kill -9: the server outlives its owner
    owner.wait()
    assert redis.Redis.from_url(url).ping()

    server = EmbeddedValkey(data_dir)
    new_url = server.start()
    try:
        assert server.replaced == orphan_pid
        assert _gone(orphan_pid)
        client = redis.Redis.from_url(new_url)
        assert client.get("kept") == b"yes"  # append-only file flushed on SIGTERM
        assert int(client.info("server")["process_id"]) != orphan_pid
        client.close()
    finally:
        server.stop()
    assert not (data_dir / "server.url").exists() and not (data_dir / "server.pid").exists()


@pytest.mark.emulator
def test_the_server_of_a_live_owner_is_left_alone(tmp_path: Path) -> None:
    data_dir = tmp_path / ".rustyflower"
    owner, url = _owner(data_dir)
    try:
        with pytest.raises(ServerRunningError, match="already running at"):
            EmbeddedValkey(data_dir).start()
        assert redis.Redis.from_url(url).ping()
    finally:
        owner.send_signal(signal.SIGTERM)  # no handler: the server outlives it, stop it too
        owner.wait()
        redis.Redis.from_url(url).shutdown(nosave=True)


@pytest.mark.emulator
def test_stale_files_of_a_stopped_server_are_cleared(tmp_path: Path) -> None:
    data_dir = tmp_path / ".rustyflower"
    data_dir.mkdir()
    (data_dir / "server.url").write_text(f"redis://127.0.0.1:{free_port()}/0\n")
    server = EmbeddedValkey(data_dir)
    try:
        assert server.start().startswith("redis://127.0.0.1:")
        assert server.replaced is None
    finally:
        server.stop()
