"""The handover envelope: what the site sends a cloud to continue an instance there.

One format, written by the site (``adapters/continuity``: the Azure starter's request, the
AWS continue function's payload) and read by both receivers (``functions_azure`` and
``lambda_aws``)::

    {"kind": "rustyflower.handover",
     "snapshot": <base64 of the sealed snapshot bytes, or the snapshot's JSON object>,
     "children": [<base64 or object>, ...],   # child flows in flight, each one sealed
     "flows": [<definition document>, ...],   # sub-flows the instance (or a child) may start
     "signature": {"alg": "HMAC-SHA256", "key_id": str, "value": base64}}

A body that is a sealed snapshot itself (``kind: rustyflower.snapshot``) is read as an
envelope holding that snapshot alone.

Why the envelope has a signature of its own: each snapshot is signed, but the sub-flow
definitions next to it are code the receiver will run (an unversioned ``sub_flow`` call
takes the highest version it is given). Without a signature anyone who holds a genuine
snapshot could add ``refund@999`` next to it. The envelope's signature is an HMAC, with
the snapshot keys, over the canonical JSON of a manifest: the snapshot's identity
(instance, epoch, seq, definition digest), the children's identities and the digests of
the definitions. So a signed envelope's flows and children cannot be added to, swapped or
moved next to another snapshot. When the receiver requires signatures, or the snapshot is
signed, an envelope carrying flows or children without a valid signature is refused.

Pure: no I/O, no clock (the dependency rule of docs/architecture.md).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rustyflower.core.engine.state import Snapshot
from rustyflower.core.errors import (
    MalformedSnapshotError,
    RustyFlowerError,
    SignatureInvalidError,
    SignatureMissingError,
    SnapshotError,
    UnknownKeyError,
)
from rustyflower.core.model import FlowDefinition, parse_definition
from rustyflower.core.snapshot.canonical import canonical_json, definition_digest
from rustyflower.core.snapshot.codec import (
    SIGNATURE_ALG,
    SNAPSHOT_KIND,
    open_snapshot,
    peek_header,
)
from rustyflower.core.snapshot.document import from_document
from rustyflower.core.snapshot.keys import SnapshotKeys

__all__ = [
    "HANDOVER_KIND",
    "HandoverError",
    "HandoverRequest",
    "decode_handover",
    "encode_handover",
]

HANDOVER_KIND = "rustyflower.handover"
_MANIFEST_KIND = "rustyflower.handover.manifest"


class HandoverError(RustyFlowerError):
    """The envelope itself is not well formed (a list that is not a list, a child flow
    that is not the instance's); the receivers answer ``BadRequest``."""


@dataclass(frozen=True)
class HandoverRequest:
    """A verified envelope: every snapshot opened with the receiver's keys, every
    definition parsed and covered by the envelope's signature (where one is needed)."""

    snapshot: Snapshot
    raw: bytes
    """The snapshot as received (sealed): what a receiver keeps for failback."""
    children: tuple[Snapshot, ...] = ()
    flows: tuple[FlowDefinition, ...] = ()
    signed: bool = False
    """True when the envelope carried a signature that verified."""


# --- writing ---------------------------------------------------------------------------------


def encode_handover(
    snapshot: bytes,
    keys: SnapshotKeys,
    *,
    children: Sequence[bytes] = (),
    flows: Sequence[FlowDefinition] = (),
) -> bytes:
    """The envelope of a sealed ``snapshot``, its sealed ``children`` and ``flows``,
    signed with the active signing key of ``keys`` (unsigned when there is none).

    Raises ``ValueError`` when ``keys`` require signatures but have no active key (as
    ``seal`` does) and ``MalformedSnapshotError`` when a snapshot is not one.
    """
    key = keys.active_signing_key
    if key is None and keys.require_signature:
        raise ValueError("cannot sign the handover: signatures are required but no key is active")
    documents = [definition.document() for definition in flows]
    envelope: dict[str, Any] = {
        "kind": HANDOVER_KIND,
        "snapshot": _b64(snapshot),
        "children": [_b64(child) for child in children],
        "flows": documents,
    }
    if key is not None:
        manifest = _manifest(
            _header_identity(snapshot),
            [_header_identity(child) for child in children],
            [definition_digest(document) for document in documents],
        )
        envelope["signature"] = {
            "alg": SIGNATURE_ALG,
            "key_id": key.key_id,
            "value": _b64(hmac.digest(key.secret, manifest, "sha256")),
        }
    return json.dumps(envelope, separators=(",", ":")).encode("utf-8")


# --- reading ---------------------------------------------------------------------------------


def decode_handover(body: bytes | Mapping[str, Any], keys: SnapshotKeys) -> HandoverRequest:
    """Verify an envelope (or a bare sealed snapshot) with the receiver's ``keys``.

    ``body`` is the request's bytes or an already parsed JSON object (a direct Lambda
    invoke). Raises the codec's ``SnapshotError`` subclasses (prefixed ``children[i]:``
    for a child), ``SignatureMissingError`` / ``SignatureInvalidError`` /
    ``UnknownKeyError`` for the envelope's signature, ``DefinitionError`` for a bad
    definition and ``HandoverError`` for an envelope of the wrong shape.
    """
    if isinstance(body, bytes | bytearray):
        data = bytes(body)
        if not data.strip():
            raise MalformedSnapshotError("the request body is empty")
        try:
            parsed = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            parsed = None  # not JSON: the codec names the problem
        if not (isinstance(parsed, dict) and _is_envelope(parsed)):
            snapshot, _signed = _open(data, keys, "snapshot")
            return HandoverRequest(snapshot, data)
        document: Mapping[str, Any] = parsed
    elif isinstance(body, Mapping):
        document = body
    else:
        raise MalformedSnapshotError("the request is not a snapshot or a JSON object")
    if not _is_envelope(document):
        raw = json.dumps(document).encode("utf-8")
        snapshot, _signed = _open(raw, keys, "snapshot")
        return HandoverRequest(snapshot, raw)
    return _read_envelope(document, keys)


def _read_envelope(document: Mapping[str, Any], keys: SnapshotKeys) -> HandoverRequest:
    children_value = _list(document, "children", "snapshots")
    flows_value = _list(document, "flows", "flow definitions")
    raw = _snapshot_bytes(document["snapshot"], "snapshot")
    snapshot, snapshot_signed = _open(raw, keys, "snapshot")
    children_raw = [
        _snapshot_bytes(value, f"children[{index}]") for index, value in enumerate(children_value)
    ]
    children: list[Snapshot] = []
    for index, data in enumerate(children_raw):
        child, _signed = _open(data, keys, f"children[{index}]")
        if not child.instance_id.startswith(snapshot.instance_id + "/"):
            raise HandoverError(
                f"child snapshot {child.instance_id!r} is not a child flow of "
                f"{snapshot.instance_id!r}"
            )
        children.append(child)
    flows = [
        parse_definition(value, source=f"flows[{index}]") for index, value in enumerate(flows_value)
    ]
    signed = _check_signature(
        document,
        keys,
        _manifest(
            _identity(snapshot),
            [_identity(child) for child in children],
            [definition_digest(definition.document()) for definition in flows],
        ),
        needed=bool(children or flows) and (keys.require_signature or snapshot_signed),
    )
    return HandoverRequest(snapshot, raw, tuple(children), tuple(flows), signed)


def _check_signature(
    document: Mapping[str, Any], keys: SnapshotKeys, manifest: bytes, *, needed: bool
) -> bool:
    """Verify the envelope's signature when it has one; refuse its absence when ``needed``."""
    signature = document.get("signature")
    if signature is None:
        if needed:
            raise SignatureMissingError(
                "the sub-flow definitions and child snapshots travelling with the snapshot "
                "are not signed: send them in an envelope signed by the site "
                "(adapters/continuity writes one)"
            )
        return False
    if not isinstance(signature, dict) or not all(
        isinstance(signature.get(name), str) for name in ("alg", "key_id", "value")
    ):
        raise MalformedSnapshotError(
            "the handover's signature must be an object with text alg, key_id and value"
        )
    if signature["alg"] != SIGNATURE_ALG:
        raise SignatureInvalidError(
            f"the handover's signature algorithm {signature['alg']!r} is not supported "
            f"(expected {SIGNATURE_ALG!r})"
        )
    key = keys.signing.get(signature["key_id"])
    if key is None:
        known = ", ".join(repr(k) for k in keys.signing) or "none"
        raise UnknownKeyError(
            f"the handover is signed with key {signature['key_id']!r}, which is not "
            f"configured (configured signing keys: {known})"
        )
    try:
        claimed = base64.b64decode(signature["value"], validate=True)
    except (binascii.Error, ValueError):
        raise SignatureInvalidError("the handover's signature is not valid base64") from None
    if not hmac.compare_digest(claimed, hmac.digest(key.secret, manifest, "sha256")):
        raise SignatureInvalidError(
            "the handover's signature does not verify: its sub-flow definitions or child "
            "snapshots are not the ones the site signed next to this snapshot"
        )
    return True


# --- pieces ----------------------------------------------------------------------------------


def _is_envelope(document: Mapping[str, Any]) -> bool:
    return "snapshot" in document and document.get("kind") != SNAPSHOT_KIND


def _list(document: Mapping[str, Any], name: str, what: str) -> list[Any]:
    value = document.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise HandoverError(f"{name} must be a list of {what}")
    return value


def _snapshot_bytes(value: Any, where: str) -> bytes:
    """A snapshot given as base64 text or as the snapshot's JSON object."""
    if isinstance(value, dict):
        return json.dumps(value).encode("utf-8")
    if not isinstance(value, str):
        raise MalformedSnapshotError(f"{where} must be base64 text or a snapshot object")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedSnapshotError(f"{where} is not valid standard base64") from None


def _open(data: bytes, keys: SnapshotKeys, where: str) -> tuple[Snapshot, bool]:
    """The snapshot, and whether it was signed; a child's errors name the child."""
    try:
        document = open_snapshot(data, keys)
        return from_document(document), "signature" in document
    except SnapshotError as error:
        if where == "snapshot":
            raise
        raise type(error)(f"{where}: {error}") from None


Identity = tuple[str, int, int, str]
"""(instance id, epoch, seq, definition digest): which point of which instance."""


def _identity(snapshot: Snapshot) -> Identity:
    return (snapshot.instance_id, snapshot.epoch, snapshot.seq, snapshot.digest)


def _header_identity(data: bytes) -> Identity:
    header = peek_header(data)
    return (header["instance_id"], header["epoch"], header["seq"], header["flow"]["digest"])


def _manifest(snapshot: Identity, children: Sequence[Identity], flows: Sequence[str]) -> bytes:
    """The bytes the envelope's signature covers (order-free: the lists are sorted)."""
    return canonical_json(
        {
            "kind": _MANIFEST_KIND,
            "snapshot": list(snapshot),
            "children": sorted(list(child) for child in children),
            "flows": sorted(flows),
        }
    )


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
