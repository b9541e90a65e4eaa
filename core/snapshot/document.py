"""Snapshot <-> signed bytes: the engine's value in the codec's document layout."""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any, get_args

from pydantic import ValidationError

from rustyflower.core.engine.state import STATE_ADAPTER, Snapshot, Status
from rustyflower.core.errors import DefinitionError, MalformedSnapshotError
from rustyflower.core.ids import instance_id_problem
from rustyflower.core.model import FlowDefinition, parse_definition
from rustyflower.core.snapshot.codec import CURRENT_FORMAT, SNAPSHOT_KIND, open_snapshot, seal
from rustyflower.core.snapshot.keys import SnapshotKeys
from rustyflower.core.snapshot.state_bytes import CanonicalObject, state_bytes

_DEFINITIONS: OrderedDict[str, FlowDefinition] = OrderedDict()
_DEFINITION_CACHE_SIZE = 128
_STATUSES = frozenset(get_args(Status))


def to_document(snapshot: Snapshot) -> dict[str, Any]:
    """The snapshot as a JSON document; the caller may change it freely."""
    document = _document(snapshot)
    document["definition"] = copy.deepcopy(document["definition"])
    return document


def _document(snapshot: Snapshot, with_state: bool = True) -> dict[str, Any]:
    """Like to_document, but shares the cached definition dict: read it, never change it.

    ``with_state`` False leaves the state out (``encode_snapshot`` adds its bytes)."""
    definition = snapshot.definition
    document = {
        "format": CURRENT_FORMAT,
        "kind": SNAPSHOT_KIND,
        "instance_id": snapshot.instance_id,
        "flow": {"name": definition.name, "version": definition.version, "digest": snapshot.digest},
        "status": snapshot.status,
        "seq": snapshot.seq,
        "epoch": snapshot.epoch,
        "updated_at": snapshot.updated_at,
        "definition": _definition_document(definition),
    }
    if with_state:
        document["state"] = STATE_ADAPTER.dump_python(snapshot.state, mode="json")
    return document


_DOCUMENTS: OrderedDict[int, tuple[FlowDefinition, dict[str, Any]]] = OrderedDict()


def _definition_document(definition: FlowDefinition) -> dict[str, Any]:
    """The definition's document, built once per definition object (it is immutable).

    The codec also remembers the canonical bytes of this very dict, so a transition
    re-serialises only what changed, not the whole embedded definition.
    """
    key = id(definition)
    cached = _DOCUMENTS.get(key)
    if cached is not None and cached[0] is definition:
        return cached[1]
    document = definition.document()
    _DOCUMENTS[key] = (definition, document)
    if len(_DOCUMENTS) > _DEFINITION_CACHE_SIZE:
        _DOCUMENTS.popitem(last=False)
    return document


def from_document(document: dict[str, Any]) -> Snapshot:
    """Build the engine value from an opened (verified, decrypted) document."""
    digest = document["flow"]["digest"]
    definition = _definition(digest, document["definition"])
    _check_header(document, definition)
    try:
        state = STATE_ADAPTER.validate_python(document["state"])
    except ValidationError as error:
        first = error.errors(include_url=False)[:3]
        details = "; ".join(
            f"state.{'.'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in first
        )
        raise MalformedSnapshotError(
            f"snapshot state is not valid ({error.error_count()} problem(s)): {details}"
        ) from None
    return Snapshot(
        instance_id=document["instance_id"],
        definition=definition,
        digest=digest,
        status=document["status"],
        seq=document["seq"],
        epoch=document["epoch"],
        updated_at=document["updated_at"],
        state=state,
    )


def _check_header(document: dict[str, Any], definition: FlowDefinition) -> None:
    instance_id = document["instance_id"]
    problem = instance_id_problem(instance_id) if isinstance(instance_id, str) else "not text"
    if problem is not None:  # the runtimes rely on the id rule: a crafted file must not pass
        raise MalformedSnapshotError(f"instance_id: {problem}")
    if document["status"] not in _STATUSES:
        raise MalformedSnapshotError(
            f"status {document['status']!r} is not one of {', '.join(sorted(_STATUSES))}"
        )
    flow = document["flow"]
    if (flow.get("name"), flow.get("version")) != (definition.name, definition.version):
        raise MalformedSnapshotError(
            f"header names flow {flow.get('name')!r} version {flow.get('version')!r} but the "
            f"embedded definition is {definition.name!r} version {definition.version!r}"
        )


def _definition(digest: str, raw: Any) -> FlowDefinition:
    cached = _DEFINITIONS.get(digest)
    if cached is not None:
        _DEFINITIONS.move_to_end(digest)
        return cached
    try:
        definition = parse_definition(raw, source="snapshot definition")
    except DefinitionError as error:
        raise MalformedSnapshotError(f"the embedded definition is invalid: {error}") from None
    _DEFINITIONS[digest] = definition
    if len(_DEFINITIONS) > _DEFINITION_CACHE_SIZE:
        _DEFINITIONS.popitem(last=False)
    return definition


def encode_snapshot(snapshot: Snapshot, keys: SnapshotKeys | None = None) -> bytes:
    """Canonical JSON bytes, signed and/or encrypted as ``keys`` say."""
    keys = keys or SnapshotKeys.none()
    try:
        encoded = state_bytes(snapshot.state)
    except ValueError:  # not canonical JSON (NaN, a lone surrogate): seal says what is wrong
        return seal(_document(snapshot), keys)
    document = _document(snapshot, with_state=False)
    document["state"] = CanonicalObject(encoded)
    return seal(document, keys)


def decode_snapshot(data: bytes | str, keys: SnapshotKeys | None = None) -> Snapshot:
    """Verify and load snapshot bytes; each kind of bad input raises its own SnapshotError."""
    return from_document(open_snapshot(data, keys or SnapshotKeys.none()))
