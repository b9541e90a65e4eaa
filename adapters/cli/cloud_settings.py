"""Settings a local cloud records for the other commands, as ``dev`` records its URL.

``rustyflower cloud azure`` writes ``<data-dir>/cloud-azure.json`` (mode 0600: it holds
the function key) with its process id and the settings it prints to export. ``failover``,
``failback``, ``signal`` and ``start --on`` read every such file of their ``--data-dir``
as defaults: a variable set (not empty) in the environment wins, and an option given wins
over both. A file whose process is gone (a local cloud killed with ``kill -9``) is
ignored, and replaced by the next local cloud; the local cloud removes its file when it
stops.

The file also names the helper processes a local cloud started (Azurite runs in a session
of its own, so a ``kill -9`` of the cloud leaves it running): the next local cloud of the
same data directory stops those it finds still running (``stop_leftovers``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rustyflower.adapters.cli.context import ConnectedCommand
from rustyflower.adapters.cli.errors import CliEnvironmentError

__all__ = [
    "LocalCloudCommand",
    "cloud_environment",
    "forget",
    "record",
    "recorded",
    "running",
    "settings_file",
    "stop_leftovers",
]

PATTERN = "cloud-*.json"


def settings_file(data_dir: Path, cloud: str) -> Path:
    return data_dir / f"cloud-{cloud}.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def _document(path: Path) -> dict[str, Any]:
    try:
        found: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _read(path: Path) -> tuple[int | None, dict[str, str]]:
    found = _document(path)
    try:
        pid = int(found["pid"])
        settings = {str(name): str(value) for name, value in dict(found["settings"]).items()}
    except (ValueError, KeyError, TypeError):
        return None, {}
    return pid, settings


def _command_line(pid: int) -> str:
    with contextlib.suppress(OSError):
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    return ""


def stop_leftovers(data_dir: Path, cloud: str, timeout: float = 10.0) -> list[int]:
    """Stop the helpers (``name -> pid``) a killed local ``cloud`` left running; the pids
    stopped. Only a process whose command line still names the helper is touched (a pid
    reused since is left alone); without /proc nothing is."""
    path = settings_file(data_dir, cloud)
    found = _document(path)
    pid, _ = _read(path)
    if pid is None or pid == os.getpid() or _alive(pid):
        return []
    stopped: list[int] = []
    helpers: Any = found.get("helpers") or {}
    for name, helper in dict(helpers).items():
        with contextlib.suppress(TypeError, ValueError, ProcessLookupError, PermissionError):
            helper_pid = int(helper)
            if str(name) not in _command_line(helper_pid):
                continue
            os.kill(helper_pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _command_line(helper_pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            stopped.append(helper_pid)
    return stopped


def running(data_dir: Path, cloud: str) -> int | None:
    """The process id of a live local ``cloud`` recorded in ``data_dir`` (another process)."""
    pid, _ = _read(settings_file(data_dir, cloud))
    if pid is not None and pid != os.getpid() and _alive(pid):
        return pid
    return None


def record(
    data_dir: Path,
    cloud: str,
    settings: Mapping[str, str],
    helpers: Mapping[str, int] | None = None,
) -> Path:
    """Write this process's settings for ``cloud`` (and the pids of the ``helpers`` it
    started, by name); refused while another live process holds the file (one local
    cloud of a kind per data directory)."""
    path = settings_file(data_dir, cloud)
    pid = running(data_dir, cloud)
    if pid is not None:
        raise CliEnvironmentError(
            f"a local {cloud} for {data_dir} is already running (pid {pid}); stop it first "
            f"(or delete {path} if that process is not ours)"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    document = {"pid": os.getpid(), "helpers": dict(helpers or {}), "settings": dict(settings)}
    text = json.dumps(document, indent=2) + "\n"
    partial = path.with_suffix(".json.partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    partial.replace(path)  # readers see the old file or the whole new one
    return path


def forget(data_dir: Path, cloud: str) -> None:
    """Remove the file ``record`` wrote, if it is still this process's."""
    path = settings_file(data_dir, cloud)
    pid, _ = _read(path)
    if pid == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def recorded(data_dir: Path) -> dict[str, str]:
    """The settings of every local cloud running for ``data_dir``."""
    found: dict[str, str] = {}
    for path in sorted(data_dir.glob(PATTERN)):
        pid, settings = _read(path)
        if pid is not None and _alive(pid):
            found.update(settings)
    return found


def cloud_environment(data_dir: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``environ`` (default: the process environment) over the recorded settings: what the
    continuity commands read their cloud settings from."""
    source = os.environ if environ is None else environ
    given = {name: value for name, value in source.items() if value.strip()}
    return {**recorded(data_dir), **given}


class LocalCloudCommand(ConnectedCommand):
    """A local cloud's command: it connects to no Redis, but takes ``--data-dir`` after its
    name too (where it records its settings for the other commands)."""

    connection_options = ("data_dir",)
