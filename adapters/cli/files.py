"""Files the CLI writes (outputs, snapshots) and the snapshot files it reads.

A snapshot file leaves this process signed whenever signing keys are configured
(``RUSTYFLOWER_SIGNING_KEYS``), whoever wrote the copy it comes from; an unsigned one is
written only without keys, and then with a warning, since a reader that requires
signatures (``inspect``, ``resume`` with keys set) refuses it.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from rustyflower.adapters.cli.context import snapshot_keys
from rustyflower.adapters.cli.errors import CliInputError
from rustyflower.adapters.cli.render import err, escape
from rustyflower.core.engine import Snapshot
from rustyflower.core.snapshot.document import decode_snapshot, encode_snapshot

STDIO = "-"
UNSIGNED_WARNING = (
    "{what} is not signed: no RUSTYFLOWER_SIGNING_KEYS here, and a reader that requires "
    "signatures will refuse it (`rustyflower keygen` makes a key)"
)


def write_output(path: Path, data: bytes | str, what: str = "") -> None:
    """Write ``data`` to ``path`` ('-': stdout); an unwritable path is a one-line error."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if str(path) == STDIO:
        sys.stdout.buffer.write(raw)
        sys.stdout.flush()
        return
    try:
        path.write_bytes(raw)
    except OSError as error:
        raise CliInputError(f"{what}{path}: cannot write: {error.strerror}") from None


def check_writable(path: Path, what: str = "") -> None:
    """Refuse, before any work is done, an output path that cannot be a file."""
    if str(path) == STDIO:
        return
    if path.is_dir():
        raise CliInputError(f"{what}{path}: is a directory; give a file name")
    if not path.parent.is_dir():
        raise CliInputError(f"{what}{path}: no directory {path.parent}")


def read_input_file(path: Path, what: str = "") -> bytes:
    """The bytes of ``path`` ('-': stdin); an unreadable path is a one-line error."""
    if str(path) == STDIO:
        return sys.stdin.buffer.read()
    try:
        return path.read_bytes()
    except OSError as error:
        raise CliInputError(f"{what}{path}: cannot read: {error.strerror}") from None


def write_snapshot_file(path: Path, snapshot: Snapshot, what: str = "") -> None:
    """Write the snapshot signed (and encrypted) with the configured keys; without a
    signing key, write it unsigned and warn."""
    keys = snapshot_keys()
    write_output(path, encode_snapshot(snapshot, keys), what)
    if keys.active_signing_key is None:
        warn(UNSIGNED_WARNING.format(what=f"the snapshot in {path}"))


def signed_export(stored: bytes, what: str) -> bytes:
    """A store's snapshot bytes as a file: as stored when signed; signed here when the
    store kept it unsigned and this process has a signing key; else unsigned, with a warning.
    """
    if _is_signed(stored):
        return stored
    keys = snapshot_keys()
    if keys.active_signing_key is None:
        warn(UNSIGNED_WARNING.format(what=what))  # the caller writes it: say so only once
        return stored
    readable = dataclasses.replace(keys, require_signature=False)  # it is known unsigned
    return encode_snapshot(decode_snapshot(stored, readable), keys)


def _is_signed(data: bytes) -> bool:
    try:
        document = json.loads(data)
    except ValueError:
        return False  # not a snapshot at all: the reader will say so
    return isinstance(document, dict) and "signature" in document


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)


__all__ = [
    "STDIO",
    "check_writable",
    "read_input_file",
    "signed_export",
    "warn",
    "write_output",
    "write_snapshot_file",
]
