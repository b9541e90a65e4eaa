"""Azurite, the Azure Storage emulator, for the local Azure: found, started, stopped.

Azurite is the npm package ``azurite`` (Node.js 18+): ``npm install -g azurite``, or in a
RustyFlower checkout ``bash .ci/azurite.sh`` (it installs into ``.ci/node``). Its
``azurite`` command serves Blob, Queue and Table on three ports; here they listen on
127.0.0.1 only, on the ports given or free ones, with the data in a temporary folder
removed when it stops. It runs in a session of its own, so a Ctrl-C in the terminal
reaches the command that started it, which stops it.

The account and key in the connection string are Azurite's documented, public
development account (``devstoreaccount1``): they open nothing but this emulator.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rustyflower.core.errors import RustyFlowerError

__all__ = [
    "ACCOUNT",
    "INSTALL_HINT",
    "SERVICES",
    "Azurite",
    "AzuriteError",
    "AzuriteNotInstalledError",
    "PortTakenError",
    "find_azurite",
    "port_is_free",
]

ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
SERVICES = ("blob", "queue", "table")
HOST = "127.0.0.1"
INSTALL_HINT = "npm install -g azurite  (or, in a RustyFlower checkout: bash .ci/azurite.sh)"
CHECKOUT_EXECUTABLE = Path(".ci") / "node" / "node_modules" / ".bin" / "azurite"
FLAGS = (
    "--skipApiVersionCheck",  # current storage SDKs speak newer API versions than Azurite knows
    "--loose",
    "--silent",
    "--disableTelemetry",
)
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class AzuriteError(RustyFlowerError):
    """Azurite cannot be started."""


class AzuriteNotInstalledError(AzuriteError):
    """No ``azurite`` command was found."""


class PortTakenError(AzuriteError):
    """A port asked for is in use."""


def find_azurite(given: str | None, checkouts: tuple[Path, ...] = ()) -> str:
    """The ``azurite`` executable: ``given``, else on ``PATH``, else in a checkout's
    ``.ci/node`` (where ``bash .ci/azurite.sh`` installs it)."""
    if given:
        if not os.access(given, os.X_OK) or Path(given).is_dir():
            raise AzuriteNotInstalledError(
                f"--azurite {given}: not an executable; install Azurite with: {INSTALL_HINT}"
            )
        return given
    on_path = shutil.which("azurite")
    if on_path:
        return on_path
    for checkout in checkouts:
        local = checkout / CHECKOUT_EXECUTABLE
        if os.access(local, os.X_OK):
            return str(local)
    raise AzuriteNotInstalledError(
        f"Azurite (the Azure Storage emulator) is not installed; install it with: {INSTALL_HINT}"
    )


def port_is_free(port: int) -> bool:
    """Nothing listens on ``port`` of 127.0.0.1 (bound as servers bind: SO_REUSEADDR, so a
    closed connection's TIME_WAIT does not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _accepting(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


@dataclass
class Azurite:
    """One ``azurite`` process (Blob, Queue, Table) on 127.0.0.1, its data in a temp folder.

    ``ports``: a port per service (``blob``, ``queue``, ``table``); 0 or missing: a free one.
    """

    executable: str
    ports: dict[str, int] = field(default_factory=dict)
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _workdir: Path | None = field(default=None, init=False, repr=False)

    def start(self, attempts: int = 3) -> Azurite:
        asked = {service: self.ports.get(service, 0) for service in SERVICES}
        for service, port in asked.items():
            if port and not port_is_free(port):
                raise PortTakenError(
                    f"--{service}-port {port} is in use; free it or give another port (0: any)"
                )
        self._workdir = Path(tempfile.mkdtemp(prefix="rustyflower-azurite-"))
        last_log = ""
        for _ in range(attempts):  # a free port may be taken between the probe and the bind
            self.ports = {service: port or _free_port() for service, port in asked.items()}
            if self._launch():
                return self
            last_log = self._log_tail()
            self._kill()
            if all(asked.values()):
                break  # the ports were given: another try would fail the same way
        self.stop()
        raise AzuriteError(f"Azurite did not start ({self.executable}):\n{last_log}")

    def _launch(self) -> bool:
        assert self._workdir is not None
        command = [self.executable, "--location", str(self._workdir / "data"), *FLAGS]
        for service, port in self.ports.items():
            command += [f"--{service}Host", HOST, f"--{service}Port", str(port)]
        with (self._workdir / "azurite.log").open("ab") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self._workdir,  # Azurite writes a debug log and lock files here
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            if all(_accepting(port) for port in self.ports.values()):
                return True
            time.sleep(0.1)
        return False

    def _log_tail(self) -> str:
        if self._workdir is None:
            return ""
        with contextlib.suppress(OSError):
            return (self._workdir / "azurite.log").read_text(errors="replace")[-2000:]
        return ""

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def endpoint(self, service: str) -> str:
        return f"http://{HOST}:{self.ports[service]}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        """A storage connection string with the three endpoints (Blob, Queue, Table)."""
        endpoints = "".join(
            f"{service.capitalize()}Endpoint={self.endpoint(service)};" for service in SERVICES
        )
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            + endpoints
        )

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        """Stop the process and remove its data (safe to call twice)."""
        self._kill()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
