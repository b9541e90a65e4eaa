"""Writing and reading snapshot documents: canonical JSON, signed, optionally encrypted.

A snapshot (format 1) is one canonical JSON object::

    {"format": 1, "kind": "rustyflower.snapshot",
     "instance_id": str, "flow": {"name": str, "version": str, "digest": "sha256:..."},
     "status": str, "seq": int, "epoch": int, "updated_at": str,
     "definition": {...},          # the flow definition document, in clear
     "state": {...},               # or, when encrypted, instead of "state":
     "sealed_state": {"alg": "A256GCM", "key_id": str, "nonce": b64, "ciphertext": b64},
     "signature": {"alg": "HMAC-SHA256", "key_id": str, "value": b64}}

- ``sealed_state`` is AES-256-GCM over ``canonical_json(state)`` with a random 12-byte
  nonce; its associated data is the canonical JSON of the header fields
  ``epoch, flow, format, instance_id, seq`` as written, so a ciphertext cannot be moved
  into another instance or another point of the same instance's life. (Random nonces:
  rotate the encryption key well before 2**32 snapshots have been sealed with it.)
- ``signature`` is HMAC-SHA256 over the canonical JSON of the document without
  ``signature`` (so after encryption: it covers ``sealed_state``). Verification
  re-canonicalises the parsed document, so a snapshot re-indented by some tool still
  verifies, while any change of value does not.

Base64 is the standard alphabet with padding. Nothing here does I/O or reads the clock.
"""

from __future__ import annotations

import base64
import hmac
import json
import math
import os
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from rustyflower.core.errors import (
    DecryptionError,
    DigestMismatchError,
    MalformedSnapshotError,
    SignatureInvalidError,
    SignatureMissingError,
    UnknownKeyError,
)
from rustyflower.core.snapshot.canonical import (
    CanonicalObject,
    canonical_json,
    canonical_text,
    digest_of,
    encode_utf8,
)
from rustyflower.core.snapshot.keys import SnapshotKeys
from rustyflower.core.snapshot.migrations import CURRENT_FORMAT, check_format, migrate

__all__ = [
    "CURRENT_FORMAT",
    "ENCRYPTION_ALG",
    "HEADER_FIELDS",
    "SIGNATURE_ALG",
    "SNAPSHOT_KIND",
    "open_snapshot",
    "peek_header",
    "seal",
]

SNAPSHOT_KIND = "rustyflower.snapshot"
SIGNATURE_ALG = "HMAC-SHA256"
ENCRYPTION_ALG = "A256GCM"
NONCE_BYTES = 12

HEADER_FIELDS = ("instance_id", "flow", "status", "seq", "epoch", "updated_at", "format")
"""The fields ``peek_header`` returns."""

_AAD_FIELDS = ("epoch", "flow", "format", "instance_id", "seq")


# --- parsing ------------------------------------------------------------------------------


class _NonFiniteNumberError(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def _reject_constant(text: str) -> Any:
    raise _NonFiniteNumberError(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _NonFiniteNumberError(text)
    return value


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return f"number {value!r}"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _parse_json(text: str, what: str) -> Any:
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise MalformedSnapshotError(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} "
            f"(char {exc.pos})"
        ) from None
    except _NonFiniteNumberError as exc:
        raise MalformedSnapshotError(
            f"{what} contains the number {exc.text!r}, which JSON snapshots do not allow"
        ) from None
    except RecursionError:
        raise MalformedSnapshotError(f"{what} is nested too deeply") from None


def _parse(data: bytes | str) -> dict[str, Any]:
    """Parse and check it is a snapshot object (``kind``) with a readable ``format``."""
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedSnapshotError(
                f"snapshot is not UTF-8 text (invalid byte at offset {exc.start})"
            ) from None
    elif isinstance(data, str):
        text = data
    else:
        raise TypeError(f"snapshot data must be bytes or str, not {type(data).__name__}")
    document = _parse_json(text, "snapshot")
    if not isinstance(document, dict):
        raise MalformedSnapshotError(f"snapshot must be a JSON object, got {_json_type(document)}")
    kind = document.get("kind")
    if kind != SNAPSHOT_KIND:
        found = "no 'kind' field" if "kind" not in document else f"kind {kind!r}"
        raise MalformedSnapshotError(
            f"not a RustyFlower snapshot: {found}, expected kind {SNAPSHOT_KIND!r}"
        )
    if "format" not in document:
        raise MalformedSnapshotError("snapshot has no 'format' field")
    fmt = document["format"]
    if isinstance(fmt, bool) or not isinstance(fmt, int):
        raise MalformedSnapshotError(f"snapshot 'format' must be an integer, got {_json_type(fmt)}")
    check_format(fmt)
    return document


# --- canonical pieces ---------------------------------------------------------------------
#
# The document is serialised member by member: the signed bytes, the written bytes and
# the definition digest then share one serialisation instead of three.


_DEFINITION_BYTES: dict[int, tuple[Any, bytes]] = {}


def _member_bytes(document: Mapping[str, Any], skip: str) -> dict[str, bytes]:
    members = {}
    for key, value in document.items():
        if key == skip:
            continue
        if key == "definition":
            members[key] = _definition_bytes(value)
        elif isinstance(value, CanonicalObject):
            members[key] = value.canonical
        elif type(value) is int:  # the header's counters: no encoder call needed
            members[key] = str(value).encode("ascii")
        else:
            members[key] = encode_utf8(canonical_text(value))
    return members


def _definition_bytes(value: Any) -> bytes:
    """Canonical bytes of an embedded definition, remembered per (unchanging) dict object.

    Callers that pass the same definition dict for every transition of an instance (the
    snapshot document layer does) save its serialisation; a dict seen once costs nothing
    extra. The cache holds the dict itself, so its id cannot be reused while cached.
    """
    cached = _DEFINITION_BYTES.get(id(value))
    if cached is not None and cached[0] is value:
        return cached[1]
    encoded = encode_utf8(canonical_text(value))
    if len(_DEFINITION_BYTES) >= 256:
        _DEFINITION_BYTES.clear()
    _DEFINITION_BYTES[id(value)] = (value, encoded)
    return encoded


_KEY_BYTES: dict[str, bytes] = {}


def _key_bytes(key: str) -> bytes:
    """The canonical bytes of a member name (a handful of names, encoded once)."""
    found = _KEY_BYTES.get(key)
    if found is None:
        found = encode_utf8(canonical_text(key)) + b":"
        if len(_KEY_BYTES) < 1024:
            _KEY_BYTES[key] = found
    return found


def _assemble(members: Mapping[str, bytes]) -> bytes:
    # One join: the state member is megabytes for a wide Map, and concatenating each
    # member with its name and then the braces copied it three more times (~1 ms each).
    pieces = [b"{"]
    for key in sorted(members):
        pieces += (b",", _key_bytes(key), members[key])
    if members:
        pieces[1] = b""  # the first member's comma
    pieces.append(b"}")
    return b"".join(pieces)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str) -> bytes:
    """Raises ``binascii.Error`` (a ``ValueError``) on anything but padded base64."""
    return base64.b64decode(text, validate=True)


def _aad(document: Mapping[str, Any]) -> bytes:
    missing = [name for name in _AAD_FIELDS if name not in document]
    if missing:
        raise MalformedSnapshotError(
            "snapshot is malformed: missing field(s) " + ", ".join(missing)
        )
    return canonical_json({name: document[name] for name in _AAD_FIELDS})


# --- header -------------------------------------------------------------------------------


def _is_text(value: object) -> bool:
    return isinstance(value, str) and bool(value)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_object(value: object) -> bool:
    return isinstance(value, dict)


_TEXT = (_is_text, "a non-empty string")
_COUNT = (_is_count, "a non-negative integer")
_OBJECT = (_is_object, "an object")

_HEADER_RULES = (
    ("instance_id", _TEXT),
    ("flow", _OBJECT),
    ("status", _TEXT),
    ("seq", _COUNT),
    ("epoch", _COUNT),
    ("updated_at", _TEXT),
)
_FLOW_RULES = (("name", _TEXT), ("version", _TEXT), ("digest", _TEXT))
_BODY_RULES = (("definition", _OBJECT), ("state", _OBJECT))


def _header_problems(document: Mapping[str, Any], with_body: bool) -> str | None:
    """One sentence naming every missing or ill-typed field, or None when all is well."""
    missing: list[str] = []
    ill_typed: list[str] = []

    def check(container: Mapping[str, Any], rules: Any, prefix: str) -> None:
        for name, (is_valid, expected) in rules:
            if name not in container:
                missing.append(prefix + name)
            elif not is_valid(container[name]):
                ill_typed.append(
                    f"{prefix}{name} (expected {expected}, got {_json_type(container[name])})"
                )

    check(document, _HEADER_RULES, "")
    flow = document.get("flow")
    if isinstance(flow, dict):
        check(flow, _FLOW_RULES, "flow.")
    if with_body:
        check(document, _BODY_RULES, "")
    if not missing and not ill_typed:
        return None
    parts = []
    if missing:
        parts.append("missing field(s) " + ", ".join(missing))
    if ill_typed:
        parts.append("ill-typed field(s) " + ", ".join(ill_typed))
    return "; ".join(parts)


# --- seal ---------------------------------------------------------------------------------


def seal(document: Mapping[str, Any], keys: SnapshotKeys) -> bytes:
    """The snapshot bytes of ``document``: encrypted and signed as ``keys`` say.

    ``document`` holds ``"state"`` in clear; ``"format"`` and ``"kind"`` are filled in
    when absent, and a ``"signature"`` left over from ``open_snapshot`` is dropped and
    recomputed. The argument is not modified.

    Raises ``ValueError`` when the document is not a valid format-1 snapshot document
    (missing or ill-typed fields, a ``flow.digest`` that does not match the definition,
    NaN or infinite numbers, a ``"sealed_state"``), when ``keys`` require signatures
    but have no active signing key, and ``TypeError`` for values that are not JSON.
    """
    doc = dict(document)
    doc.pop("signature", None)
    doc.setdefault("format", CURRENT_FORMAT)
    doc.setdefault("kind", SNAPSHOT_KIND)
    if doc["format"] != CURRENT_FORMAT or isinstance(doc["format"], bool):
        raise ValueError(f"cannot seal: format must be {CURRENT_FORMAT}, got {doc['format']!r}")
    if doc["kind"] != SNAPSHOT_KIND:
        raise ValueError(f"cannot seal: kind must be {SNAPSHOT_KIND!r}, got {doc['kind']!r}")
    if "sealed_state" in doc:
        raise ValueError("cannot seal: the document has a 'sealed_state'; pass 'state' in clear")
    if not all(isinstance(key, str) for key in doc):
        raise ValueError("cannot seal: document keys must be strings")
    problems = _header_problems(doc, with_body=True)
    if problems:
        raise ValueError(f"cannot seal: {problems}")
    signing_key = keys.active_signing_key
    if signing_key is None and keys.require_signature:
        raise ValueError(
            "cannot seal: signatures are required but no active signing key is configured"
        )

    try:
        members = _member_bytes(doc, skip="signature")
    except ValueError as exc:
        raise ValueError(f"cannot seal: the document is not canonical JSON: {exc}") from None

    claimed = doc["flow"]["digest"]
    actual = digest_of(members["definition"])
    if claimed != actual:
        raise ValueError(
            f"cannot seal: flow.digest is {claimed} but the embedded definition's digest "
            f"is {actual}"
        )

    encryption_key = keys.active_encryption_key
    if encryption_key is not None:
        plaintext = members.pop("state")
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = AESGCM(encryption_key.key).encrypt(nonce, plaintext, _aad(doc))
        members["sealed_state"] = canonical_json(
            {
                "alg": ENCRYPTION_ALG,
                "key_id": encryption_key.key_id,
                "nonce": _b64(nonce),
                "ciphertext": _b64(ciphertext),
            }
        )

    if signing_key is not None:
        mac = hmac.digest(signing_key.secret, _assemble(members), "sha256")
        members["signature"] = canonical_json(
            {"alg": SIGNATURE_ALG, "key_id": signing_key.key_id, "value": _b64(mac)}
        )
    return _assemble(members)


# --- open ---------------------------------------------------------------------------------


def _verify_signature(document: dict[str, Any], keys: SnapshotKeys) -> dict[str, bytes] | None:
    """Check the signature; return the serialised members when it was computed."""
    if "signature" not in document:
        if keys.require_signature:
            raise SignatureMissingError(
                "snapshot is not signed, and this runtime requires signed snapshots"
            )
        return None
    signature = document["signature"]
    if not isinstance(signature, dict):
        raise MalformedSnapshotError(
            f"snapshot 'signature' must be an object, got {_json_type(signature)}"
        )
    bad = [name for name in ("alg", "key_id", "value") if not isinstance(signature.get(name), str)]
    if bad:
        raise MalformedSnapshotError(
            "snapshot signature is malformed: missing or non-string " + ", ".join(bad)
        )
    if signature["alg"] != SIGNATURE_ALG:
        raise SignatureInvalidError(
            f"snapshot signature algorithm {signature['alg']!r} is not supported "
            f"(expected {SIGNATURE_ALG!r})"
        )
    key_id = signature["key_id"]
    key = keys.signing.get(key_id)
    if key is None:
        known = ", ".join(repr(k) for k in keys.signing) or "none"
        raise UnknownKeyError(
            f"snapshot is signed with key {key_id!r}, which is not configured "
            f"(configured signing keys: {known})"
        )
    try:
        claimed = _unb64(signature["value"])
    except ValueError:
        raise SignatureInvalidError("snapshot signature value is not valid base64") from None
    try:
        members = _member_bytes(document, skip="signature")
    except ValueError as exc:  # a lone surrogate: cannot be canonical UTF-8
        raise MalformedSnapshotError(f"snapshot is not canonical JSON: {exc}") from None
    expected = hmac.digest(key.secret, _assemble(members), "sha256")
    if not hmac.compare_digest(claimed, expected):
        raise SignatureInvalidError(
            f"snapshot signature does not verify with key {key_id!r}: the snapshot was "
            "altered after signing, or signed with a different secret under that key id"
        )
    return members


def _unseal(document: dict[str, Any], keys: SnapshotKeys) -> None:
    """Replace ``sealed_state`` by the decrypted ``state``, in place."""
    sealed = document.pop("sealed_state")
    if "state" in document:
        raise MalformedSnapshotError("snapshot has both 'state' and 'sealed_state'")
    if not isinstance(sealed, dict):
        raise MalformedSnapshotError(
            f"snapshot 'sealed_state' must be an object, got {_json_type(sealed)}"
        )
    bad = [
        name
        for name in ("alg", "key_id", "nonce", "ciphertext")
        if not isinstance(sealed.get(name), str)
    ]
    if bad:
        raise MalformedSnapshotError(
            "snapshot sealed_state is malformed: missing or non-string " + ", ".join(bad)
        )
    if sealed["alg"] != ENCRYPTION_ALG:
        raise MalformedSnapshotError(
            f"snapshot encryption algorithm {sealed['alg']!r} is not supported "
            f"(expected {ENCRYPTION_ALG!r})"
        )
    key_id = sealed["key_id"]
    key = keys.encryption.get(key_id)
    if key is None:
        known = ", ".join(repr(k) for k in keys.encryption) or "none"
        raise UnknownKeyError(
            f"snapshot state is encrypted with key {key_id!r}, which is not configured "
            f"(configured encryption keys: {known})"
        )
    try:
        nonce = _unb64(sealed["nonce"])
        ciphertext = _unb64(sealed["ciphertext"])
    except ValueError:
        raise MalformedSnapshotError(
            "snapshot sealed_state nonce or ciphertext is not valid base64"
        ) from None
    if len(nonce) != NONCE_BYTES:
        raise MalformedSnapshotError(
            f"snapshot sealed_state nonce is {len(nonce)} bytes, expected {NONCE_BYTES}"
        )
    try:
        plaintext = AESGCM(key.key).decrypt(nonce, ciphertext, _aad(document))
    except InvalidTag:
        raise DecryptionError(
            f"snapshot state could not be decrypted with key {key_id!r}: the ciphertext or "
            "the header was altered, the ciphertext comes from another snapshot, or the "
            "key is wrong"
        ) from None
    try:
        text = plaintext.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedSnapshotError("decrypted snapshot state is not UTF-8 text") from None
    document["state"] = _parse_json(text, "decrypted snapshot state")


def open_snapshot(data: bytes | str, keys: SnapshotKeys) -> dict[str, Any]:
    """Parse, verify and decrypt a snapshot; return its document with ``"state"`` in clear.

    Checks, in this order: JSON object of the right ``kind`` (``MalformedSnapshotError``);
    readable ``format`` (``UnsupportedFormatError``); signature (``UnknownKeyError``,
    ``SignatureInvalidError``, or ``SignatureMissingError`` when ``keys`` require one);
    decryption of ``sealed_state`` (``UnknownKeyError``, ``DecryptionError``); migration
    of an older format to the current one; header fields and types
    (``MalformedSnapshotError``); definition digest (``DigestMismatchError``).

    Decryption comes before migration so that a migration step always sees the state in
    clear and can reshape it; the encryption's associated data is the header as written.
    The returned dict is new and keeps the ``"signature"`` entry when there was one.
    """
    document = _parse(data)
    written_format: int = document["format"]
    members = _verify_signature(document, keys)
    if "sealed_state" in document:
        _unseal(document, keys)
    if written_format != CURRENT_FORMAT:
        document = migrate(document)
        members = None  # the definition may have changed
    problems = _header_problems(document, with_body=True)
    if problems:
        raise MalformedSnapshotError(f"snapshot is malformed: {problems}")

    if members is not None:
        definition_bytes = members["definition"]
    else:
        try:
            definition_bytes = encode_utf8(canonical_text(document["definition"]))
        except ValueError as exc:
            raise MalformedSnapshotError(
                f"snapshot definition is not canonical JSON: {exc}"
            ) from None
    actual = digest_of(definition_bytes)
    flow = document["flow"]
    if flow["digest"] != actual:
        raise DigestMismatchError(
            f"the definition embedded in the snapshot of flow {flow['name']!r} version "
            f"{flow['version']!r} has digest {actual}, but the snapshot claims {flow['digest']}"
        )
    return document


def peek_header(data: bytes | str) -> dict[str, Any]:
    """The header fields (``HEADER_FIELDS``) of a snapshot, read without any verification.

    For listing tools: the signature is not checked and the state is not decrypted, so
    nothing returned here may be trusted. The header is read as written (older formats
    are not migrated). Raises ``MalformedSnapshotError`` / ``UnsupportedFormatError``.
    """
    document = _parse(data)
    problems = _header_problems(document, with_body=False)
    if problems:
        raise MalformedSnapshotError(f"snapshot is malformed: {problems}")
    header = {name: document[name] for name in HEADER_FIELDS}
    header["flow"] = dict(header["flow"])
    return header
