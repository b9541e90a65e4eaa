"""The handover envelope (core.snapshot.handover): one writer, one reader, signed contents."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from rustyflower.core.engine import ParentLink, Snapshot, start
from rustyflower.core.errors import (
    DefinitionError,
    MalformedSnapshotError,
    SignatureInvalidError,
    SignatureMissingError,
    UnknownKeyError,
)
from rustyflower.core.model import FlowDefinition, parse_definition
from rustyflower.core.snapshot import SigningKey, SnapshotKeys
from rustyflower.core.snapshot.document import encode_snapshot
from rustyflower.core.snapshot.handover import (
    HANDOVER_KIND,
    HandoverError,
    decode_handover,
    encode_handover,
)

NOW = datetime(2024, 1, 1, tzinfo=UTC)
SIGNING = SnapshotKeys.signing_only(SigningKey("site", b"s" * 32))
STRANGER = SnapshotKeys.signing_only(SigningKey("stranger", b"x" * 32))
NOT_REQUIRED = SnapshotKeys.from_keys([SigningKey("site", b"s" * 32)], require_signature=False)
PARENT = parse_definition(
    {
        "name": "parent",
        "start_at": "Call",
        "states": {"Call": {"type": "sub_flow", "flow": "leaf", "end": True}},
    }
)


def leaf(version: str = "1", result: str = "ok") -> FlowDefinition:
    return parse_definition(
        {
            "name": "leaf",
            "version": version,
            "start_at": "Done",
            "states": {"Done": {"type": "pass", "result": result, "end": True}},
        }
    )


def parent(instance_id: str = "p-1") -> Snapshot:
    return start(PARENT, {}, instance_id, NOW).snapshot


def child(parent_id: str = "p-1") -> Snapshot:
    link = ParentLink(parent_id, "Call~1")
    return start(leaf(), {}, f"{parent_id}/Call~1", NOW, parent=link).snapshot


def envelope(data: bytes) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(data)
    return document


def test_the_envelope_round_trips_signed() -> None:
    data = encode_snapshot(parent(), SIGNING)
    body = encode_handover(
        data, SIGNING, children=[encode_snapshot(child(), SIGNING)], flows=[leaf("2")]
    )
    assert envelope(body)["kind"] == HANDOVER_KIND
    request = decode_handover(body, SIGNING)
    assert request.snapshot == parent()
    assert request.raw == data
    assert [c.instance_id for c in request.children] == ["p-1/Call~1"]
    assert [f.key for f in request.flows] == ["leaf@2"]
    assert request.signed
    # a direct Lambda invoke hands the parsed object
    assert decode_handover(envelope(body), SIGNING) == request


def test_a_bare_snapshot_is_an_envelope_of_itself() -> None:
    data = encode_snapshot(parent(), SIGNING)
    request = decode_handover(data, SIGNING)
    assert (request.snapshot, request.raw, request.children, request.flows) == (
        parent(),
        data,
        (),
        (),
    )
    assert decode_handover(json.loads(data), SIGNING).snapshot == parent()


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda e: e["flows"].append(leaf("999").document()), id="flow_added"),
        pytest.param(lambda e: e["flows"].__setitem__(0, leaf("2", "x").document()), id="swap"),
        pytest.param(lambda e: e.__setitem__("flows", []), id="flows_dropped"),
        pytest.param(lambda e: e.__setitem__("children", []), id="child_dropped"),
        pytest.param(
            lambda e: e.update(
                snapshot=base64.b64encode(encode_snapshot(parent("p-2"), SIGNING)).decode(),
                children=[],
            ),
            id="other_snapshot",
        ),
        pytest.param(
            lambda e: e.__setitem__(
                "snapshot",
                base64.b64encode(encode_snapshot(replace(parent(), epoch=7), SIGNING)).decode(),
            ),
            id="other_epoch",
        ),
    ],
)
def test_a_signed_envelope_cannot_be_changed(change: Any) -> None:
    body = encode_handover(
        encode_snapshot(parent(), SIGNING),
        SIGNING,
        children=[encode_snapshot(child(), SIGNING)],
        flows=[leaf("2")],
    )
    forged = envelope(body)
    change(forged)
    with pytest.raises(SignatureInvalidError, match="handover"):
        decode_handover(json.dumps(forged).encode(), SIGNING)


def test_unsigned_definitions_are_refused_next_to_a_signed_snapshot() -> None:
    data = encode_snapshot(parent(), SIGNING)
    body = encode_handover(data, SnapshotKeys.none(), flows=[leaf("999")])
    assert "signature" not in envelope(body)
    with pytest.raises(SignatureMissingError, match="sub-flow definitions"):
        decode_handover(body, SIGNING)
    # signatures not required, but the snapshot is signed: its definitions must be too
    with pytest.raises(SignatureMissingError):
        decode_handover(body, NOT_REQUIRED)
    # nothing signed anywhere (a site without keys): nothing to check against
    unsigned = encode_handover(encode_snapshot(parent()), SnapshotKeys.none(), flows=[leaf()])
    assert decode_handover(unsigned, NOT_REQUIRED).flows == (leaf(),)


def test_an_envelope_signed_with_another_key_is_refused() -> None:
    data = encode_snapshot(parent(), SIGNING)
    body = encode_handover(data, STRANGER, flows=[leaf()])
    with pytest.raises(UnknownKeyError, match="'stranger'"):
        decode_handover(body, SIGNING)
    other_secret = SnapshotKeys.signing_only(SigningKey("site", b"o" * 32))
    with pytest.raises(SignatureInvalidError):
        decode_handover(encode_handover(data, other_secret, flows=[leaf()]), SIGNING)


def test_bad_shapes_are_named() -> None:
    data = base64.b64encode(encode_snapshot(parent(), SIGNING)).decode()
    cases: list[tuple[Any, type[Exception], str]] = [
        (b"  ", MalformedSnapshotError, "empty"),
        (b"{not json", MalformedSnapshotError, "not valid JSON"),
        ({"snapshot": "%%%"}, MalformedSnapshotError, "base64"),
        ({"snapshot": 7}, MalformedSnapshotError, "base64 text or a snapshot object"),
        ({"snapshot": data, "children": "x"}, HandoverError, "children must be a list"),
        ({"snapshot": data, "flows": {}}, HandoverError, "flows must be a list"),
        ({"snapshot": data, "flows": [{"name": "broken"}]}, DefinitionError, "flows[0]"),
        (
            {"snapshot": data, "signature": "x", "flows": [leaf().document()]},
            MalformedSnapshotError,
            "signature must be an object",
        ),
    ]
    for body, error, words in cases:
        with pytest.raises(error, match=words.replace("[", r"\[")):
            decode_handover(body, SIGNING)


def test_a_child_must_be_the_instances_own_and_names_its_place() -> None:
    data = encode_snapshot(parent(), SIGNING)
    stranger = encode_snapshot(child("q-9"), SIGNING)
    with pytest.raises(HandoverError, match="not a child flow of 'p-1'"):
        decode_handover(encode_handover(data, SIGNING, children=[stranger]), SIGNING)
    unsigned_child = encode_snapshot(child(), SnapshotKeys.none())
    with pytest.raises(SignatureMissingError, match=r"^children\[0\]: "):
        decode_handover(encode_handover(data, SIGNING, children=[unsigned_child]), SIGNING)


def test_writing_needs_an_active_key_where_signatures_are_required() -> None:
    keys = SnapshotKeys(signing=SIGNING.signing, require_signature=True)
    with pytest.raises(ValueError, match="no key is active"):
        encode_handover(encode_snapshot(parent(), SIGNING), keys)
