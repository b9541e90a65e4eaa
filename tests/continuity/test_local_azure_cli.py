"""`rustyflower cloud azure` as a user runs it: a subprocess, stopped by Ctrl-C (SIGINT).

The rehearsal of docs/failover.md ("Rehearse on your laptop") end to end, every part a
process of its own: a real Redis (tests/redis fixtures), `rustyflower worker` on it,
`rustyflower cloud azure` (Azurite and the real Function App on the replay host), and
every step typed as a command: an instance of the lifeboat flow waits for its approval,
fails over to the local Azure, is approved there, fails back and finishes on premises
with the output of an uninterrupted run. The cloud settings come from the file the local
Azure records in --data-dir: nothing is exported.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest

from rustyflower.adapters.localcloud.azurite import AzuriteNotInstalledError, find_azurite
from rustyflower.core.snapshot import generate_signing_key
from tests.continuity.kit import APPROVAL, EXPECTED, FLOW, INPUT
from tests.redis.conftest import Runtime
from tests.tooling import missing_tool

pytestmark = pytest.mark.emulator

REPO = Path(__file__).resolve().parents[2]
RUSTYFLOWER = str(Path(sys.executable).parent / "rustyflower")
ACTIVITIES = "tests.conformance.activities"
SIGNING_KEY = generate_signing_key("rehearsal")
EXPORT = re.compile(r"^export (RUSTYFLOWER_[A-Z_]+)=(.*)$")


@pytest.fixture
def azurite() -> str:
    """The azurite command the local Azure will find (skipped where none is, but in CI)."""
    try:
        return find_azurite(None, (REPO,))
    except AzuriteNotInstalledError as missing:
        missing_tool(str(missing))


def environment(**extra: str) -> dict[str, str]:
    """The caller's environment without its RUSTYFLOWER_* settings, with the site's keys."""
    found = {k: v for k, v in os.environ.items() if not k.startswith("RUSTYFLOWER_")}
    found["RUSTYFLOWER_SIGNING_KEYS"] = f"{SIGNING_KEY.key_id}:{SIGNING_KEY.to_base64()}"
    found.update(extra)
    return found


def port_is_free(port: int) -> bool:
    """Nothing listens on it (a closed connection's TIME_WAIT does not count, as servers
    bind with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purpose only once reaped; Azurite is reaped by its parent
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        return state != "Z"
    return True


def azurite_children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` and whose command line names azurite."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            stat = (entry / "stat").read_text()
            parent = int(stat.split(")")[-1].split()[1])
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            if parent == pid and b"azurite" in command:
                found.append(int(entry.name))
    return found


@dataclass
class LocalAzure:
    process: subprocess.Popen[str]
    data_dir: Path
    settings: dict[str, str]
    azurite_pids: list[int]

    @property
    def url(self) -> str:
        return self.settings["RUSTYFLOWER_AZURE_FUNCTION_URL"]

    def ports(self) -> list[int]:
        storage = self.settings["RUSTYFLOWER_AZURE_STORAGE"]
        found = [int(port) for port in re.findall(r"127\.0\.0\.1:(\d+)", storage)]
        return [int(self.url.rsplit(":", 1)[1]), *found]

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=30)


def settings_from(lines: list[str]) -> dict[str, str]:
    found = {}
    for line in lines:
        matched = EXPORT.match(line.strip())
        if matched:
            value = matched.group(2)
            found[matched.group(1)] = value[1:-1] if value.startswith("'") else value
    return found


@contextlib.contextmanager
def local_azure(data_dir: Path, *args: str) -> Iterator[LocalAzure]:
    command = [RUSTYFLOWER, "cloud", "azure", "-a", ACTIVITIES, "--data-dir", str(data_dir)]
    errors = data_dir.parent / f"{data_dir.name}-cloud-azure.err"
    with errors.open("w") as stderr:
        process = subprocess.Popen(
            [*command, *args],
            cwd=REPO,
            env=environment(),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 90
        while len(settings_from(lines)) < 4:
            assert time.monotonic() < deadline, errors.read_text()
            line = process.stdout.readline()
            assert line, f"exit {process.wait()}: {errors.read_text()}"
            lines.append(line)
        azure = LocalAzure(process, data_dir, settings_from(lines), azurite_children(process.pid))
        yield azure
    finally:
        if process.poll() is None:  # a failed test: stop it as a user would, kill if stuck
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)


def rustyflower(
    *args: str | Path, runtime: Runtime | None = None, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    where = [] if runtime is None else ["--redis-url", runtime.server.url]
    where += [] if runtime is None else ["--prefix", runtime.keys.prefix]
    done = subprocess.run(
        [RUSTYFLOWER, *where, *(str(arg) for arg in args)],
        cwd=REPO,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if ok:
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def call(url: str, key: str | None) -> int:
    request = Request(url, headers={"x-functions-key": key} if key else {})
    try:
        with urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except HTTPError as error:
        return error.code


# --- the command itself ------------------------------------------------------------------------


@pytest.mark.usefixtures("azurite")
def test_the_local_azure_serves_records_its_settings_and_stops_clean_on_ctrl_c(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "site"
    with local_azure(data_dir) as azure:
        recorded = json.loads((data_dir / "cloud-azure.json").read_text())
        # the one record format (adapters/localcloud/record.py), as cloud aws writes it
        assert recorded["environment"] == azure.settings
        assert (recorded["cloud"], recorded["pid"]) == ("azure", azure.process.pid)
        assert recorded["endpoint"] == azure.url
        assert recorded["targets"] == [
            "RUSTYFLOWER_AZURE_FUNCTION_URL",
            "RUSTYFLOWER_AZURE_STORAGE",
        ]
        assert (data_dir / "cloud-azure.json").stat().st_mode & 0o077 == 0  # a key inside
        key = azure.settings["RUSTYFLOWER_AZURE_FUNCTION_KEY"]
        assert call(f"{azure.url}/api/instances/nobody", key) == 404
        assert call(f"{azure.url}/api/instances/nobody", None) == 401
        assert azure.azurite_pids, "no azurite process started"
        ports = azure.ports()
        assert len(ports) == 4 and not any(port_is_free(port) for port in ports)

        second = subprocess.run(
            [RUSTYFLOWER, "cloud", "azure", "--data-dir", str(data_dir)],
            cwd=REPO,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 3
        assert f"already running (pid {azure.process.pid})" in second.stderr

        assert azure.stop() == 0
    assert not (data_dir / "cloud-azure.json").exists()
    assert all(port_is_free(port) for port in ports)
    assert not any(alive(pid) for pid in azure.azurite_pids)


@pytest.mark.usefixtures("azurite")
def test_an_azurite_left_by_a_killed_local_azure_is_stopped_by_the_next(tmp_path: Path) -> None:
    data_dir = tmp_path / "site"
    with local_azure(data_dir) as first:
        (left,) = first.azurite_pids
        first.process.kill()  # kill -9: no cleanup; Azurite runs in a session of its own
        first.process.wait(timeout=30)
        assert alive(left)
        with local_azure(data_dir) as second:
            assert not alive(left)
            assert second.azurite_pids and left not in second.azurite_pids
            assert second.stop() == 0
    assert not (data_dir / "cloud-azure.json").exists()


@pytest.mark.usefixtures("azurite")
def test_a_taken_port_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for option in ("--port", "--blob-port"):
            done = rustyflower(
                "cloud", "azure", option, str(port), "--data-dir", tmp_path, ok=False
            )
            assert done.returncode == 3, done.stderr
            assert f"{option} {port} is in use" in done.stderr
            assert "Traceback" not in done.stderr


def test_without_azurite_it_says_how_to_install_it(tmp_path: Path) -> None:
    """PATH without azurite, and an app folder built by the build script (no .ci/node)."""
    app_folder = tmp_path / "app"
    subprocess.run(
        [sys.executable, "-m", "functions_azure.build", str(app_folder)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    bare_path = os.pathsep.join(
        folder
        for folder in os.environ.get("PATH", "").split(os.pathsep)
        if not (Path(folder) / "azurite").exists()
    )
    done = subprocess.run(
        [RUSTYFLOWER, "cloud", "azure", "--app", str(app_folder), "--data-dir", str(tmp_path)],
        cwd=tmp_path,
        env={**environment(), "PATH": bare_path},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert "Azurite (the Azure Storage emulator) is not installed" in done.stderr
    assert "npm install -g azurite" in done.stderr
    assert "Traceback" not in done.stderr


def test_without_the_function_app_it_says_where_to_find_it(tmp_path: Path) -> None:
    done = rustyflower("cloud", "azure", "--app", tmp_path, "--data-dir", tmp_path, ok=False)
    assert done.returncode == 3
    assert f"--app {tmp_path}: no functions_azure/function_app.py there" in done.stderr
    assert "python -m functions_azure.build OUT" in done.stderr


# --- the rehearsal ------------------------------------------------------------------------------


@contextlib.contextmanager
def worker(runtime: Runtime, log: Path) -> Iterator[subprocess.Popen[str]]:
    where = ["--redis-url", runtime.server.url, "--prefix", runtime.keys.prefix]
    with log.open("w") as output:
        process = subprocess.Popen(
            [RUSTYFLOWER, "worker", "-a", ACTIVITIES, *where],
            cwd=REPO,
            env=environment(),
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def status_of(runtime: Runtime, instance_id: str) -> dict[str, Any]:
    done = rustyflower("status", instance_id, "--json", runtime=runtime)
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def wait_for(what: str, check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


@pytest.mark.usefixtures("azurite")
@pytest.mark.parametrize("server", ["valkey"], indirect=True)
def test_fail_over_to_the_local_azure_signal_there_fail_back_and_finish_here(
    runtime: Runtime, tmp_path: Path
) -> None:
    data_dir = tmp_path / "site"
    flow_file = tmp_path / "lifeboat.json"
    flow_file.write_text(json.dumps(FLOW.document()))
    with local_azure(data_dir) as azure, worker(runtime, tmp_path / "worker.log"):
        rustyflower("flows", "register", flow_file, runtime=runtime)
        started = ("start", "lifeboat", "--id", "order-7", "-i", json.dumps(INPUT))
        rustyflower(*started, runtime=runtime)
        wait_for(
            "order-7 at Approve",
            lambda: status_of(runtime, "order-7")["positions"] == ["Approve"],
        )

        cloud = ["--data-dir", str(data_dir)]  # the recorded settings: nothing exported
        failover = ("failover", "--to", "azure", "order-7", "--json", *cloud)
        failed_over = rustyflower(*failover, runtime=runtime)
        (row,) = json.loads(failed_over.stdout)
        assert (row["result"], row["where"]) == ("started", "order-7")

        signal_ = ("signal", "order-7", "approval", "--data", json.dumps(APPROVAL), *cloud)
        signalled = rustyflower(*signal_, runtime=runtime)
        assert "lives in azure" in signalled.stdout + signalled.stderr

        failback = ("failback", "--from", "azure", "order-7", "--json", *cloud)
        failed_back = rustyflower(*failback, runtime=runtime)
        (back,) = json.loads(failed_back.stdout)
        assert back["result"] == "resumed", back

        finished = wait_for(
            "order-7 to finish here",
            lambda: (found := status_of(runtime, "order-7"))["status"] == "succeeded" and found,
        )
        assert finished["output"] == EXPECTED
        assert azure.stop() == 0
