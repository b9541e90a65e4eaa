"""Snapshots as documents: encode/decode round trips and every kind of bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rustyflower.core.engine import (
    ActivityCompleted,
    ActivityFailed,
    HoldRequested,
    RunActivity,
    Snapshot,
    StartTimer,
    advance,
    start,
)
from rustyflower.core.errors import (
    DigestMismatchError,
    MalformedSnapshotError,
    SignatureInvalidError,
    SignatureMissingError,
    SnapshotError,
    UnknownKeyError,
    UnsupportedFormatError,
)
from rustyflower.core.model import FlowDefinition, parse_definition
from rustyflower.core.snapshot import (
    CURRENT_FORMAT,
    EncryptionKey,
    SigningKey,
    SnapshotKeys,
    definition_digest,
    seal,
)
from rustyflower.core.snapshot.document import (
    decode_snapshot,
    encode_snapshot,
    from_document,
    to_document,
)

NOW = datetime(2024, 1, 1, tzinfo=UTC)
SIGN = SigningKey("k1", b"s" * 32)
OTHER_SIGN = SigningKey("k1", b"t" * 32)
SIGNING = SnapshotKeys.signing_only(SIGN)
ENCRYPTING = SnapshotKeys.from_keys([SIGN], [EncryptionKey("e1", bytes(range(32)))])


def definition() -> FlowDefinition:
    return parse_definition(
        {
            "name": "orders",
            "version": "2",
            "timeout_seconds": 3600,
            "start_at": "Par",
            "states": {
                "Par": {
                    "type": "parallel",
                    "next": "Done",
                    "branches": [
                        {
                            "start_at": "Charge",
                            "states": {
                                "Charge": {
                                    "type": "task",
                                    "activity": "charge",
                                    "timeout_seconds": 30,
                                    "retry": [{"errors": ["Net"], "jitter": "full"}],
                                    "end": True,
                                }
                            },
                        },
                        {
                            "start_at": "Items",
                            "states": {
                                "Items": {
                                    "type": "map",
                                    "max_concurrency": 1,
                                    "items_path": "$.items",
                                    "iterator": {
                                        "start_at": "Pick",
                                        "states": {
                                            "Pick": {
                                                "type": "task",
                                                "activity": "pick",
                                                "end": True,
                                            }
                                        },
                                    },
                                    "end": True,
                                }
                            },
                        },
                    ],
                },
                "Done": {"type": "succeed"},
            },
        }
    )


def mid_flight() -> Snapshot:
    """Parallel and map frames, a pending retry timer, a task timeout, a map result, history."""
    transition = start(
        definition(), {"items": [{"sku": "a"}, {"sku": "b"}], "note": "ünï ✓"}, "order-1", NOW
    )
    calls = {c.position: c for c in transition.commands if isinstance(c, RunActivity)}
    transition = advance(
        transition.snapshot, ActivityFailed(calls["Par[0]/Charge"].call_id, "Net", "down"), NOW
    )
    assert any(isinstance(c, StartTimer) and c.purpose == "retry" for c in transition.commands)
    transition = advance(
        transition.snapshot,
        ActivityCompleted(calls["Par[1]/Items[0]/Pick"].call_id, {"picked": 1.5}),
        NOW + timedelta(seconds=1),
    )
    snapshot = transition.snapshot
    assert set(snapshot.state.frames) == {"Par", "Par[1]/Items"}
    assert snapshot.state.frames["Par[1]/Items"].results[0] == {"picked": 1.5}
    return snapshot


@pytest.mark.parametrize(
    "keys", [None, SIGNING, ENCRYPTING], ids=["plain", "signed", "signed+encrypted"]
)
def test_round_trip_equals_the_value(keys: SnapshotKeys | None) -> None:
    snapshot = mid_flight()
    data = encode_snapshot(snapshot, keys)
    decoded = decode_snapshot(data, keys)
    assert decoded == snapshot
    assert decoded.state.pending == snapshot.state.pending
    assert decoded.state.frames == snapshot.state.frames
    assert decoded.state.history == snapshot.state.history
    assert decoded.definition == snapshot.definition
    if keys is not ENCRYPTING:  # encryption uses a random nonce
        assert encode_snapshot(decoded, keys) == data


def test_round_trip_of_a_fresh_and_a_finished_snapshot() -> None:
    fresh = start(definition(), {"items": []}, "i", NOW).snapshot
    assert decode_snapshot(encode_snapshot(fresh)) == fresh
    flow = parse_definition(
        {"name": "f", "start_at": "A", "states": {"A": {"type": "fail", "error": "E"}}}
    )
    finished = start(flow, None, "i", NOW).snapshot
    assert finished.status == "failed"
    assert decode_snapshot(encode_snapshot(finished)) == finished


def test_decoded_snapshot_continues_like_the_original() -> None:
    snapshot = mid_flight()
    decoded = decode_snapshot(encode_snapshot(snapshot, SIGNING), SIGNING)
    here = advance(snapshot, HoldRequested("x"), NOW)
    there = advance(decoded, HoldRequested("x"), NOW)
    assert encode_snapshot(here.snapshot) == encode_snapshot(there.snapshot)


def test_decoded_str_and_bytes_are_the_same() -> None:
    data = encode_snapshot(mid_flight())
    assert decode_snapshot(data.decode("utf-8")) == decode_snapshot(data)


def test_document_layout() -> None:
    snapshot = mid_flight()
    document = json.loads(encode_snapshot(snapshot))
    assert document["format"] == CURRENT_FORMAT
    assert document["kind"] == "rustyflower.snapshot"
    assert document["instance_id"] == "order-1"
    assert document["flow"] == {
        "name": "orders",
        "version": "2",
        "digest": definition_digest(snapshot.definition.document()),
    }
    assert document["status"] == "running"
    assert document["seq"] == snapshot.seq == 3
    assert document["definition"] == snapshot.definition.document()
    assert document == to_document(snapshot)
    assert "signature" not in document


def test_history_is_bounded_with_dropped_entries_counted() -> None:
    flow = parse_definition(
        {
            "name": "f",
            "start_at": "A",
            "states": {
                "A": {"type": "task", "activity": "a", "next": "B"},
                "B": {"type": "task", "activity": "a", "next": "C"},
                "C": {"type": "task", "activity": "a", "end": True},
            },
        }
    )
    transition = start(flow, {}, "i", NOW, history_limit=3)
    for _ in range(2):
        call = next(c for c in transition.commands if isinstance(c, RunActivity))
        transition = advance(transition.snapshot, ActivityCompleted(call.call_id, 1), NOW)
    state = transition.snapshot.state
    assert len(state.history) == 3
    assert state.history_limit == 3
    assert state.history_dropped == 3  # 6 entries written: FlowStarted, 3 x scheduled, 2 x done
    assert [e.kind for e in state.history] == ["TaskScheduled", "TaskSucceeded", "TaskScheduled"]
    decoded = decode_snapshot(encode_snapshot(transition.snapshot))
    assert decoded.state.history == state.history
    assert decoded.state.history_dropped == 3


# --- bad input -------------------------------------------------------------------------------


def document_of(snapshot: Snapshot) -> dict[str, Any]:
    return json.loads(encode_snapshot(snapshot))


def resealed(mutate: Callable[[dict[str, Any]], Any], keys: SnapshotKeys | None = None) -> bytes:
    """A well-formed (and, with keys, validly signed) snapshot whose content was changed."""
    document = document_of(mid_flight())
    mutate(document)
    return seal(document, keys or SnapshotKeys.none())


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b"[]", b'"text"', b"\xff\xfe", b'{"kind": "other", "format": 1}', b"NaN"],
    ids=["empty", "truncated", "array", "string", "not-utf8", "wrong-kind", "nan"],
)
def test_malformed_json(data: bytes) -> None:
    with pytest.raises(MalformedSnapshotError):
        decode_snapshot(data)


@pytest.mark.parametrize("fmt", [0, 2, 99])
def test_unknown_format(fmt: int) -> None:
    document = document_of(mid_flight())
    document["format"] = fmt
    with pytest.raises(UnsupportedFormatError):
        decode_snapshot(json.dumps(document).encode())


def test_tampered_signed_snapshot() -> None:
    data = encode_snapshot(mid_flight(), SIGNING)
    document = json.loads(data)
    document["state"]["input"]["note"] = "changed"
    with pytest.raises(SignatureInvalidError):
        decode_snapshot(json.dumps(document).encode(), SIGNING)
    document = json.loads(data)
    document["seq"] += 1
    with pytest.raises(SignatureInvalidError):
        decode_snapshot(json.dumps(document).encode(), SIGNING)


def test_signed_with_another_secret() -> None:
    data = encode_snapshot(mid_flight(), SnapshotKeys.signing_only(OTHER_SIGN))
    with pytest.raises(SignatureInvalidError):
        decode_snapshot(data, SIGNING)


def test_signed_with_an_unknown_key_id() -> None:
    data = encode_snapshot(mid_flight(), SnapshotKeys.signing_only(SigningKey("k2", b"s" * 32)))
    with pytest.raises(UnknownKeyError):
        decode_snapshot(data, SIGNING)


def test_missing_signature_when_required() -> None:
    data = encode_snapshot(mid_flight())
    with pytest.raises(SignatureMissingError):
        decode_snapshot(data, SIGNING)
    assert decode_snapshot(data) == mid_flight()  # fine where signing is off


def test_reindented_signed_snapshot_still_verifies() -> None:
    data = encode_snapshot(mid_flight(), SIGNING)
    pretty = json.dumps(json.loads(data), indent=2, sort_keys=False).encode()
    assert decode_snapshot(pretty, SIGNING) == mid_flight()


def test_digest_mismatch() -> None:
    document = document_of(mid_flight())
    document["definition"]["description"] = "changed after the digest was taken"
    with pytest.raises(DigestMismatchError):
        decode_snapshot(json.dumps(document).encode())


def with_definition(raw: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def mutate(document: dict[str, Any]) -> None:
        document["definition"] = raw
        document["flow"]["digest"] = definition_digest(raw)

    return mutate


def test_embedded_definition_invalid() -> None:
    invalid = {"name": "orders", "start_at": "Nope", "states": {"A": {"type": "succeed"}}}
    data = resealed(with_definition(invalid), SIGNING)
    with pytest.raises(MalformedSnapshotError, match="embedded definition is invalid"):
        decode_snapshot(data, SIGNING)


def test_embedded_definition_not_a_mapping_of_states() -> None:
    data = resealed(with_definition({"name": "orders", "states": []}))
    with pytest.raises(MalformedSnapshotError):
        decode_snapshot(data)


STATE_MUTATIONS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "tokens-not-object": lambda s: s.update(tokens=[1]),
    "attempt-not-int": lambda s: s["tokens"]["Par"].update(attempt="abc"),
    "counter-null": lambda s: s.update(counter=None),
    "started_at-missing": lambda s: s.pop("started_at"),
    "pending-incomplete": lambda s: s.update(pending={"x": {"id": "x"}}),
    "frame-kind-unknown": lambda s: s["frames"]["Par"].update(kind="loop"),
    "command-kind-unknown": lambda s: next(iter(s["pending"].values()))["command"].update(
        kind="teleport"
    ),
    "history-not-list": lambda s: s.update(history="long"),
    "retries-not-list": lambda s: s["tokens"]["Par"].update(retries={"a": 1}),
}


@pytest.mark.parametrize("name", list(STATE_MUTATIONS))
def test_state_with_wrong_types(name: str) -> None:
    data = resealed(lambda document: STATE_MUTATIONS[name](document["state"]), SIGNING)
    with pytest.raises(MalformedSnapshotError, match="snapshot state is not valid"):
        decode_snapshot(data, SIGNING)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(seq=-1),
        lambda d: d.update(epoch="0"),
        lambda d: d.update(instance_id=""),
        lambda d: d["flow"].pop("digest"),
    ],
    ids=["seq", "epoch", "instance_id", "digest"],
)
def test_header_with_wrong_types(mutate: Callable[[dict[str, Any]], Any]) -> None:
    document = document_of(mid_flight())
    mutate(document)
    with pytest.raises(MalformedSnapshotError):
        decode_snapshot(json.dumps(document).encode())


def test_unknown_status_is_malformed() -> None:
    data = resealed(lambda document: document.update(status="bogus"), SIGNING)
    with pytest.raises(MalformedSnapshotError):
        decode_snapshot(data, SIGNING)


def test_every_decode_error_is_a_snapshot_error() -> None:
    for data in (b"{", encode_snapshot(mid_flight())):
        try:
            decode_snapshot(data, SIGNING)
        except SnapshotError:
            continue
        pytest.fail("expected a SnapshotError")


def test_from_document_rejects_bad_state_directly() -> None:
    document = to_document(mid_flight())
    document["state"] = {"input": None}
    with pytest.raises(MalformedSnapshotError, match="started_at"):
        from_document(document)
