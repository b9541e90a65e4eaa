"""Azurite (the Azure Storage emulator) for the tests: found, started, stopped.

Azurite is the npm package ``azurite``. The tests look for its ``azurite-blob`` command in:

1. ``$RUSTYFLOWER_AZURITE`` (a path to ``azurite-blob``),
2. ``.ci/node/node_modules/.bin/azurite-blob`` (``bash .ci/azurite.sh`` installs it
   there: ``npm install --prefix .ci/node azurite@3``),
3. ``azurite-blob`` on ``PATH``.

It listens on a free loopback port, keeps everything in memory and is stopped when the
test session ends. Under ``CI=true`` a missing Azurite fails the tests that need it;
elsewhere they are skipped with the command that installs it.

The account key in the connection string is Azurite's documented, public development
key: test data, not a secret.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tooling import missing_tool

REPO = Path(__file__).resolve().parents[2]
ENV_EXECUTABLE = "RUSTYFLOWER_AZURITE"
LOCAL_EXECUTABLE = REPO / ".ci" / "node" / "node_modules" / ".bin" / "azurite-blob"
INSTALL_HINT = "bash .ci/azurite.sh  (npm install --prefix .ci/node azurite@3)"

ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
FLAGS = (
    "--skipApiVersionCheck",  # current storage SDKs speak newer API versions than Azurite knows
    "--loose",
    "--silent",
    "--inMemoryPersistence",
    "--disableTelemetry",
)
START_TIMEOUT = 30.0


class AzuriteNotInstalled(RuntimeError):
    pass


def find_executable(service: str = "blob") -> str:
    """``azurite-<service>`` (``blob`` or ``queue``) where the module docstring says."""
    explicit = os.environ.get(ENV_EXECUTABLE, "").strip()
    if explicit:
        if service != "blob":
            explicit = str(Path(explicit).with_name(f"azurite-{service}"))
        if not os.access(explicit, os.X_OK):
            raise AzuriteNotInstalled(f"${ENV_EXECUTABLE}={explicit} is not an executable")
        return explicit
    local = LOCAL_EXECUTABLE.with_name(f"azurite-{service}")
    if os.access(local, os.X_OK):
        return str(local)
    on_path = shutil.which(f"azurite-{service}")
    if on_path:
        return on_path
    raise AzuriteNotInstalled(f"Azurite is not installed; install it with: {INSTALL_HINT}")


def connection_string(port: int, host: str = "127.0.0.1") -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://{host}:{port}/{ACCOUNT};"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepting(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Azurite:
    """One ``azurite-blob`` (or ``azurite-queue``) process on 127.0.0.1, in memory."""

    def __init__(self, executable: str | None = None, service: str = "blob") -> None:
        self.service = service
        self.executable = executable or find_executable(service)
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def connection_string(self) -> str:
        return connection_string(self.port)

    @property
    def blob_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def endpoint(self) -> str:
        """The service's endpoint (``BlobEndpoint``/``QueueEndpoint`` of a connection string)."""
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    def start(self, attempts: int = 3) -> Azurite:
        self._workdir = tempfile.TemporaryDirectory(prefix="azurite-")
        last_error = ""
        for _ in range(attempts):  # the free port may be taken between probe and bind
            self.port = free_port()
            command = [
                self.executable,
                f"--{self.service}Host",
                "127.0.0.1",
                f"--{self.service}Port",
                str(self.port),
                *FLAGS,
            ]
            log = Path(self._workdir.name) / "azurite.log"
            with log.open("wb") as out:
                self._process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    cwd=self._workdir.name,  # in-memory: nothing is written, but not here
                )
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    break
                if _accepting(self.port):
                    return self
                time.sleep(0.1)
            last_error = log.read_text(errors="replace")[-2000:]
            self._kill()
        self.stop()
        raise RuntimeError(f"Azurite did not start ({' '.join(FLAGS)}):\n{last_error}")

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def stop(self) -> None:
        self._kill()
        if self._workdir is not None:
            with contextlib.suppress(OSError):
                self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


@contextlib.contextmanager
def running_azurite() -> Iterator[Azurite]:
    """Start Azurite for the ``with`` block; ``AzuriteNotInstalled`` when it is missing."""
    with Azurite() as azurite:
        yield azurite


# --- pytest fixtures: import them into a test module (or a conftest) to use them --------
#
#     from tests.azure.azurite import azurite_fixture, azurite_connection_string_fixture


@pytest.fixture(scope="session", name="azurite")
def azurite_fixture() -> Iterator[Azurite]:
    """A running Azurite blob service on 127.0.0.1 for the whole session.

    Skipped when Azurite is not installed, except under ``CI=true`` where that fails.
    """
    try:
        server = Azurite()
    except AzuriteNotInstalled as missing:
        missing_tool(str(missing))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session", name="azurite_connection_string")
def azurite_connection_string_fixture(azurite: Azurite) -> str:
    """The connection string of the session's Azurite (its public development key)."""
    return azurite.connection_string
