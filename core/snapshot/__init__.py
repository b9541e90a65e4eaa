"""Snapshots: a flow instance as a portable, signed, optionally encrypted value."""

from rustyflower.core.snapshot.canonical import canonical_json, definition_digest
from rustyflower.core.snapshot.codec import (
    CURRENT_FORMAT,
    HEADER_FIELDS,
    SNAPSHOT_KIND,
    open_snapshot,
    peek_header,
    seal,
)
from rustyflower.core.snapshot.keys import (
    EncryptionKey,
    SigningKey,
    SnapshotKeys,
    generate_encryption_key,
    generate_signing_key,
)
from rustyflower.core.snapshot.migrations import (
    MIGRATIONS,
    migrate,
    register_migration,
    supported_formats,
)

__all__ = [
    "CURRENT_FORMAT",
    "HEADER_FIELDS",
    "MIGRATIONS",
    "SNAPSHOT_KIND",
    "EncryptionKey",
    "SigningKey",
    "SnapshotKeys",
    "canonical_json",
    "definition_digest",
    "generate_encryption_key",
    "generate_signing_key",
    "migrate",
    "open_snapshot",
    "peek_header",
    "register_migration",
    "seal",
    "supported_formats",
]
