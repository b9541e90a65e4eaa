"""Which errors the worker waits out, and which snapshots it leaves to other workers."""

from __future__ import annotations

import redis

from rustyflower.core.errors import (
    DecryptionError,
    SignatureInvalidError,
    SignatureMissingError,
    SnapshotError,
    UnknownKeyError,
    UnsupportedFormatError,
)

TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    redis.ConnectionError,  # includes BusyLoadingError (a server loading its data)
    redis.TimeoutError,
    redis.exceptions.OutOfMemoryError,  # maxmemory reached with noeviction
    redis.exceptions.ReadOnlyError,  # a replica during a failover
    redis.exceptions.TryAgainError,
    redis.exceptions.MasterDownError,
    redis.exceptions.ClusterDownError,
)
"""Redis errors that pass by themselves: retry the same call, never give up its result."""

UNVERIFIABLE: tuple[type[SnapshotError], ...] = (
    SignatureInvalidError,
    SignatureMissingError,
    UnknownKeyError,
    DecryptionError,
    UnsupportedFormatError,
)
"""A snapshot this worker cannot read with its keys (or its release): maybe this worker is
misconfigured, so the work is left to a worker that can (it is reclaimed after the
visibility timeout), never dead-lettered by this one."""
