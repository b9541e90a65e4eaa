"""Refuse to start a worker whose signing key disagrees with the one its fleet uses.

A worker with the right key id but another secret would fail on every snapshot it loads,
and worse, sign what it creates (a child flow) so that no other worker can read it. So
each signing key leaves a proof of its secret in Redis (``Keyspace.key_check``): an
HMAC-SHA256, under the key, of a fixed label and the key id. It tells nothing about the
secret and cannot sign a snapshot (a snapshot's signature covers its canonical JSON,
which never equals the label). The first worker with a key id records its proof; every
later worker with that key id must have the same proof.

A key id the fleet has not seen yet is simply recorded: that is how a new key is rolled
out. A worker that only lacks a key (it cannot verify some snapshots) is caught at run
time instead: it leaves that work to the others and turns unhealthy (``worker``).
"""

from __future__ import annotations

import hashlib
import hmac

import redis

from rustyflower.adapters.redis.keys import Keyspace
from rustyflower.core.errors import RustyFlowerError
from rustyflower.core.snapshot import SnapshotKeys

_LABEL = b"rustyflower signing key check v1:"


class SigningKeyMismatchError(RustyFlowerError):
    """This process has a signing key whose secret differs from the fleet's for that id."""


def key_proof(key_id: str, secret: bytes) -> str:
    return hmac.new(secret, _LABEL + key_id.encode(), hashlib.sha256).hexdigest()


def verify_signing_keys(client: redis.Redis, keys: Keyspace, snapshot_keys: SnapshotKeys) -> None:
    """Record this process's signing keys, or raise if one disagrees with the recorded proof."""
    for key_id, key in sorted(snapshot_keys.signing.items()):
        proof = key_proof(key_id, key.secret)
        client.hsetnx(keys.key_check(), key_id, proof)
        recorded = client.hget(keys.key_check(), key_id)
        text = recorded.decode() if isinstance(recorded, bytes) else recorded
        if text is not None and not hmac.compare_digest(text, proof):
            raise SigningKeyMismatchError(
                f"signing key {key_id!r} of this process is not the one the other workers on "
                f"prefix {keys.prefix!r} use (the secret differs): fix RUSTYFLOWER_SIGNING_KEYS;"
                " this worker would fail to verify their snapshots and sign ones they cannot "
                f"read. If every process changed that key on purpose, delete {keys.key_check()}"
                f" field {key_id}."
            )
