"""Where a running local cloud leaves its settings for the other commands: the one record.

``rustyflower dev`` writes its server's address to ``<data-dir>/server.url``; a local
cloud (``cloud aws``, ``cloud azure``) writes ``<data-dir>/cloud-<name>.json`` the same
way (mode 0600: it holds keys; written atomically: a reader sees the old file or the
whole new one): the process that serves it (``pid``), where it listens (``endpoint``),
the settings that point at it (``environment``: what the user would otherwise export),
the settings whose presence means the user points at another cloud on purpose
(``targets``) and the helper processes it started (``helpers``: Azurite runs in a
session of its own, so a ``kill -9`` of the cloud leaves it running, and the next local
cloud of the data directory stops it: :func:`stop_leftovers`). One live local cloud of a
kind per data directory; the file is removed when the cloud stops, and a file whose
process is gone is ignored and replaced.

The continuity commands read it through :func:`cloud_environment`, which returns an
explicit mapping (nothing is laid into ``os.environ``): a record applies when its process
is alive and none of its ``targets`` is set (not empty) in the environment; then all of
its settings apply, over the environment's (credentials and region included: they belong
to the local cloud; mixing a real deployment's names with the local endpoint could only
go wrong), and ``AWS_PROFILE`` is set aside (a named profile would lay another account's
settings over the local cloud's). Options given on the command line win over both.

No CLI and no cloud SDK here: the commands and the local clouds import this module.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CLEARED",
    "LocalCloudRecord",
    "LocalCloudRunningError",
    "active_records",
    "cloud_environment",
    "forget",
    "record_path",
    "running",
    "stop_leftovers",
]

CLEARED = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE")
"""Settings set aside while a local cloud's record applies: a named profile would lay
another account's credentials over the local cloud's."""

PATTERN = "cloud-*.json"
NAMES = {"aws": "AWS", "azure": "Azure"}
"""How the messages name each cloud."""


class LocalCloudRunningError(Exception):
    """Another live process holds the record of this cloud in this data directory."""

    def __init__(self, path: Path, holder: LocalCloudRecord) -> None:
        self.path = path
        self.holder = holder
        name = NAMES.get(holder.cloud, holder.cloud)
        super().__init__(
            f"a local {name} for {path.parent} is already running (pid {holder.pid}) at "
            f"{holder.endpoint}; stop it first, or give another --data-dir (or delete {path} "
            "if that process is not a local cloud)"
        )


def record_path(data_dir: Path, cloud: str) -> Path:
    return data_dir / f"cloud-{cloud}.json"


@dataclass(frozen=True)
class LocalCloudRecord:
    """What one running local cloud wrote."""

    cloud: str
    pid: int
    endpoint: str
    environment: Mapping[str, str]
    targets: tuple[str, ...]
    helpers: Mapping[str, int] = field(default_factory=dict)
    """Processes it started, by the name their command line carries -> pid."""

    def write(self, data_dir: Path) -> Path:
        """Write the record (mode 0600, atomically); refused while another live process
        holds this cloud's record in ``data_dir`` (:class:`LocalCloudRunningError`)."""
        holder = running(data_dir, self.cloud)
        path = record_path(data_dir, self.cloud)
        if holder is not None and holder.pid != self.pid:
            raise LocalCloudRunningError(path, holder)
        data_dir.mkdir(parents=True, exist_ok=True)
        document = {
            "cloud": self.cloud,
            "pid": self.pid,
            "endpoint": self.endpoint,
            "environment": dict(self.environment),
            "targets": list(self.targets),
            "helpers": dict(self.helpers),
        }
        partial = path.with_suffix(".json.partial")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(document, indent=2) + "\n")
        partial.replace(path)
        return path

    @classmethod
    def read(cls, path: Path) -> LocalCloudRecord | None:
        """The record at ``path``; None when there is none or it cannot be read."""
        try:
            document: Any = json.loads(path.read_text(encoding="utf-8"))
            environment = {str(k): str(v) for k, v in dict(document["environment"]).items()}
            helpers = {str(k): int(v) for k, v in dict(document.get("helpers") or {}).items()}
            return cls(
                cloud=str(document["cloud"]),
                pid=int(document["pid"]),
                endpoint=str(document["endpoint"]),
                environment=environment,
                targets=tuple(str(name) for name in document["targets"]),
                helpers=helpers,
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    @property
    def alive(self) -> bool:
        """Whether the process that wrote the record still runs (a killed one's file is
        stale: it is ignored, and the next start of that cloud replaces it)."""
        return _alive(self.pid)

    def applies(self, environ: Mapping[str, str]) -> bool:
        """Alive, and the user points at no other cloud (none of its targets is set)."""
        return self.alive and not any(environ.get(name, "").strip() for name in self.targets)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def running(data_dir: Path, cloud: str) -> LocalCloudRecord | None:
    """The record of a live local ``cloud`` in ``data_dir`` written by another process."""
    found = LocalCloudRecord.read(record_path(data_dir, cloud))
    if found is not None and found.pid != os.getpid() and found.alive:
        return found
    return None


def forget(data_dir: Path, cloud: str) -> None:
    """Remove this cloud's record, if it is still this process's."""
    path = record_path(data_dir, cloud)
    found = LocalCloudRecord.read(path)
    if found is not None and found.pid == os.getpid():
        path.unlink(missing_ok=True)


def _command_line(pid: int) -> str:
    with contextlib.suppress(OSError):
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    return ""


def stop_leftovers(data_dir: Path, cloud: str, timeout: float = 10.0) -> list[int]:
    """Stop the helpers a killed local ``cloud`` left running; the pids stopped. Only a
    process whose command line still names the helper is touched (a pid reused since is
    left alone); without /proc nothing is."""
    found = LocalCloudRecord.read(record_path(data_dir, cloud))
    if found is None or found.pid == os.getpid() or found.alive:
        return []
    stopped: list[int] = []
    for name, pid in found.helpers.items():
        if name not in _command_line(pid):
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _command_line(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            stopped.append(pid)
    return stopped


def active_records(data_dir: Path, environ: Mapping[str, str]) -> list[LocalCloudRecord]:
    """The records in ``data_dir`` that apply under ``environ``, by cloud name."""
    found = []
    for path in sorted(data_dir.glob(PATTERN)):
        record = LocalCloudRecord.read(path)
        if record is not None and record.applies(environ):
            found.append(record)
    return found


def cloud_environment(data_dir: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The settings the continuity commands read: ``environ`` (default: the process
    environment, read, never changed) with the settings of every record that applies laid
    over it, and ``AWS_PROFILE`` set aside when one does."""
    source = dict(os.environ if environ is None else environ)
    records = active_records(data_dir, source)
    if records:
        for name in CLEARED:
            source.pop(name, None)
    for record in records:
        source.update(record.environment)
    return source
