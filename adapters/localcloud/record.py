"""Where a running local cloud leaves its settings for the other commands.

``rustyflower dev`` writes its server's address to ``<data-dir>/server.url``; a local
cloud writes ``<data-dir>/cloud-<name>.json`` the same way: the process that serves it
(``pid``), the environment settings that point at it (``environment``: what the user
would otherwise export) and the settings whose presence means the user points at another
cloud on purpose (``targets``). The file is removed when the cloud stops.

The continuity commands read it as defaults (:func:`local_cloud_defaults`): a record
applies when its process is alive and none of its ``targets`` is set in the environment;
then all of its settings apply for that command (credentials and region included: they
belong to the local cloud; mixing a real deployment's machine prefix with the local
endpoint could only go wrong). Nothing here imports a cloud SDK.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CLEARED",
    "LocalCloudRecord",
    "active_records",
    "local_cloud_defaults",
    "record_path",
]

CLEARED = ("AWS_PROFILE",)
"""Settings a local cloud's record removes while it applies: a named profile would lay
another account's credentials over the local cloud's."""


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

    def write(self, data_dir: Path) -> Path:
        """Write the record (atomically: a reader never sees half of it)."""
        data_dir.mkdir(parents=True, exist_ok=True)
        path = record_path(data_dir, self.cloud)
        partial = path.with_suffix(".json.partial")
        document = {
            "cloud": self.cloud,
            "pid": self.pid,
            "endpoint": self.endpoint,
            "environment": dict(self.environment),
            "targets": list(self.targets),
        }
        partial.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        partial.replace(path)
        return path

    @classmethod
    def read(cls, path: Path) -> LocalCloudRecord | None:
        """The record at ``path``; None when there is none or it cannot be read."""
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            environment = {str(k): str(v) for k, v in dict(document["environment"]).items()}
            return cls(
                cloud=str(document["cloud"]),
                pid=int(document["pid"]),
                endpoint=str(document["endpoint"]),
                environment=environment,
                targets=tuple(str(name) for name in document["targets"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @property
    def alive(self) -> bool:
        """Whether the process that wrote the record still runs (a killed one's file is
        stale: it is ignored, and the next start of that cloud replaces it)."""
        return _alive(self.pid)

    def applies(self, environ: Mapping[str, str]) -> bool:
        return self.alive and not any(environ.get(name) for name in self.targets)


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


def active_records(data_dir: Path, environ: Mapping[str, str]) -> list[LocalCloudRecord]:
    """The records in ``data_dir`` that apply under ``environ``, by cloud name."""
    found = []
    for path in sorted(data_dir.glob("cloud-*.json")):
        record = LocalCloudRecord.read(path)
        if record is not None and record.applies(environ):
            found.append(record)
    return found


@contextlib.contextmanager
def local_cloud_defaults(
    data_dir: Path, environ: MutableMapping[str, str] | None = None
) -> Iterator[list[LocalCloudRecord]]:
    """The settings of the local clouds running for ``data_dir`` laid into ``environ``
    (default: the process environment) while the block runs; restored afterwards."""
    target: MutableMapping[str, str] = os.environ if environ is None else environ
    records = active_records(data_dir, target)
    saved: dict[str, str | None] = {}
    try:
        for record in records:
            for name in CLEARED:
                saved.setdefault(name, target.get(name))
                target.pop(name, None)
            for name, value in record.environment.items():
                saved.setdefault(name, target.get(name))
                target[name] = value
        yield records
    finally:
        for name, earlier in saved.items():
            if earlier is None:
                target.pop(name, None)
            else:
                target[name] = earlier
