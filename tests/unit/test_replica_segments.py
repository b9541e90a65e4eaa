"""Replica segments: the format, its errors, and the rule a reader merges them by."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rustyflower.core.lifeboat.replica import ReplicaError, ReplicaHeader
from rustyflower.core.lifeboat.segments import (
    SEGMENT_FORMAT,
    SegmentEntry,
    decode_segment,
    encode_segment,
    merged_headers,
    newest_entries,
    segment_name,
    segments_prefix,
)


def header(instance_id: str, seq: int, epoch: int = 0, status: str = "running") -> ReplicaHeader:
    return ReplicaHeader(instance_id, epoch, seq, status, flow="order", flow_version="2")


def test_a_segment_keeps_every_entry_byte_for_byte() -> None:
    entries = [
        SegmentEntry(header("order/7 é", 4), b'{"signature": 1}'),
        SegmentEntry(header("enc", 9), bytes(range(256))),  # an encrypted snapshot is bytes
        SegmentEntry(header("done", 12, status="succeeded"), None),
    ]
    assert decode_segment(encode_segment("plant-1", entries), "s") == entries


@given(
    st.lists(
        st.tuples(st.text(min_size=1, max_size=20), st.integers(0, 10**9), st.binary()),
        max_size=20,
    )
)
def test_any_ids_and_bytes_come_back_as_they_went(raw: list[tuple[str, int, bytes]]) -> None:
    entries = [SegmentEntry(header(i, seq), data) for i, seq, data in raw]
    assert decode_segment(encode_segment("plant-1", entries), "s") == entries


def test_segment_names_sort_by_when_they_were_written() -> None:
    names = [segment_name("plant-1", ms) for ms in (999, 10_000, 2_000_000_000_000)]
    assert sorted(names) == names
    assert all(name.startswith(segments_prefix("plant-1")) for name in names)
    assert segment_name("plant-1", 5) != segment_name("plant-1", 5)  # unique


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"not json", "not a replica segment (not JSON)"),
        (b'{"format": "other/1", "entries": []}', "format 'other/1'"),
        (b"[]", "format None"),
        (
            json.dumps({"format": SEGMENT_FORMAT, "entries": {}}).encode(),
            "'entries' must be a list",
        ),
        (
            json.dumps({"format": SEGMENT_FORMAT, "entries": [{"data": None}]}).encode(),
            "entry 0: an entry is an object with a 'header' object",
        ),
        (
            json.dumps(
                {"format": SEGMENT_FORMAT, "entries": [{"header": {"instance_id": "x"}}]}
            ).encode(),
            "no RustyFlower replica metadata",
        ),
        (
            json.dumps(
                {
                    "format": SEGMENT_FORMAT,
                    "entries": [{"header": header("x", 1).metadata(), "data": None}],
                }
            ).encode(),
            "only a finished instance's entry may carry no snapshot",
        ),
        (
            json.dumps(
                {
                    "format": SEGMENT_FORMAT,
                    "entries": [{"header": header("x", 1).metadata(), "data": "@@"}],
                }
            ).encode(),
            "'data' is not base64",
        ),
        (
            json.dumps(
                {
                    "format": SEGMENT_FORMAT,
                    "entries": [{"header": header("x", 1).metadata(), "data": 7}],
                }
            ).encode(),
            "'data' must be base64 text",
        ),
    ],
)
def test_anything_else_is_a_clear_error_naming_the_object(body: bytes, says: str) -> None:
    with pytest.raises(ReplicaError, match=r"lifeboat/p/segments/1\.json") as raised:
        decode_segment(body, "lifeboat/p/segments/1.json")
    assert says in str(raised.value)


def test_the_newest_entry_of_an_instance_is_by_epoch_then_seq() -> None:
    older, newer, taken = header("a", 8), header("a", 9), header("a", 2, epoch=1)
    found = newest_entries(
        [SegmentEntry(newer, b"9"), SegmentEntry(older, b"8"), SegmentEntry(header("b", 1), b"")]
    )
    assert found["a"].header == newer and set(found) == {"a", "b"}
    assert newest_entries([SegmentEntry(taken, b"t"), SegmentEntry(newer, b"9")])["a"].data == b"t"


def test_a_reader_sees_the_newer_of_replica_and_segment() -> None:
    base = [header("kept", 5), header("moved-on", 5), header("finished", 5), header("taken", 3, 1)]
    segments = newest_entries(
        [
            SegmentEntry(header("kept", 5), b"same point: the replica wins the tie"),
            SegmentEntry(header("moved-on", 7), b"7"),
            SegmentEntry(header("finished", 9, status="succeeded"), None),
            SegmentEntry(header("taken", 40), b"the site's, below the takeover's epoch"),
            SegmentEntry(header("new", 1), b"1"),
            SegmentEntry(header("short", 3, status="failed"), None),
        ]
    )
    seen = {h.instance_id: (h.epoch, h.seq) for h in merged_headers(base, segments)}
    assert seen == {"kept": (0, 5), "moved-on": (0, 7), "taken": (1, 3), "new": (0, 1)}


def test_a_segment_is_compact_json() -> None:
    body = encode_segment("p", [SegmentEntry(header("a", 1), b"xyz")])
    document = json.loads(body)
    assert document["format"] == SEGMENT_FORMAT and document["site"] == "p"
    assert base64.b64decode(document["entries"][0]["data"]) == b"xyz"
    assert b" " not in body
