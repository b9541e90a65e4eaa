"""Canonical JSON: the one byte form that is hashed, signed and written.

Keys are sorted (by Python string order, that is by code point), there is no
whitespace, non-ASCII text is written as UTF-8 rather than ``\\u`` escapes, and NaN
or infinite numbers are refused. Two equal JSON values always give the same bytes,
whatever the key order of the dicts they were built from.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

DIGEST_PREFIX = "sha256:"

# One encoder, built once: ``json.dumps`` with non-default options builds a new encoder
# on every call. ``encode`` uses the C accelerator when it is available.
_ENCODER = json.JSONEncoder(
    ensure_ascii=False,
    allow_nan=False,
    sort_keys=True,
    separators=(",", ":"),
)


def canonical_text(value: Any) -> str:
    """The canonical JSON text of ``value`` (``canonical_json`` before UTF-8 encoding).

    Raises ``ValueError`` for NaN or infinite floats and ``TypeError`` for values that
    are not JSON (sets, bytes, objects...).
    """
    return _ENCODER.encode(value)


def canonical_json(value: Any) -> bytes:
    """The canonical JSON bytes (UTF-8) of ``value``.

    Raises ``ValueError`` for NaN or infinite floats and for text that cannot be encoded
    as UTF-8 (a lone surrogate), ``TypeError`` for values that are not JSON.
    """
    return encode_utf8(_ENCODER.encode(value))


def encode_utf8(text: str) -> bytes:
    """UTF-8 bytes of canonical text; a lone surrogate gives a clear ``ValueError``."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"value is not valid Unicode text (lone surrogate at character {exc.start}); "
            "it cannot be written as UTF-8 JSON"
        ) from None


def digest_of(canonical: bytes) -> str:
    """``"sha256:" + hex`` of already canonical bytes."""
    return DIGEST_PREFIX + hashlib.sha256(canonical).hexdigest()


def definition_digest(definition_doc: Mapping[str, Any]) -> str:
    """The digest a snapshot records for its embedded flow definition document."""
    doc = definition_doc if isinstance(definition_doc, dict) else dict(definition_doc)
    return digest_of(canonical_json(doc))


class CanonicalObject(dict[str, Any]):
    """A JSON object given by its canonical bytes (``canonical``): the snapshot codec
    writes them instead of serialising the dict, which is empty. Only
    ``encode_snapshot`` hands one to ``seal``, for a state built from remembered pieces."""

    def __init__(self, canonical: bytes) -> None:
        super().__init__()
        self.canonical = canonical
