"""The snapshot keys of a function: the environment, laid over with the keys secret.

Read from Secrets Manager at most every ``MAX_AGE`` seconds per process, so a rotated key
list reaches warm functions within minutes without a redeploy.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from lambda_aws.aws import key_environment
from rustyflower.core.snapshot.keys import SnapshotKeys

MAX_AGE = 300.0

_cache: dict[tuple[str | None, tuple[tuple[str, str], ...]], tuple[float, SnapshotKeys]] = {}


def snapshot_keys(
    environ: Mapping[str, str],
    secret_id: str | None,
    secrets: Any = None,
    *,
    max_age: float = MAX_AGE,
) -> SnapshotKeys:
    """``SnapshotKeys.from_env`` over ``environ`` merged with the secret ``secret_id``."""
    relevant = tuple(sorted((k, v) for k, v in environ.items() if k.startswith("RUSTYFLOWER_")))
    cache_key = (secret_id, relevant)
    cached = _cache.get(cache_key)
    now = time.monotonic()
    if cached is not None and now - cached[0] < max_age:
        return cached[1]
    keys = SnapshotKeys.from_env(key_environment(environ, secret_id, secrets))
    _cache[cache_key] = (now, keys)
    return keys


def forget() -> None:
    """Drop the cached keys (tests; a forced re-read)."""
    _cache.clear()
