"""The snapshot codec: canonical JSON, keys, seal/open, errors and migrations."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rustyflower.core.errors import (
    DecryptionError,
    DigestMismatchError,
    MalformedSnapshotError,
    SignatureInvalidError,
    SignatureMissingError,
    SnapshotError,
    UnknownKeyError,
    UnsupportedFormatError,
)
from rustyflower.core.snapshot import (
    CURRENT_FORMAT,
    MIGRATIONS,
    SNAPSHOT_KIND,
    EncryptionKey,
    SigningKey,
    SnapshotKeys,
    canonical_json,
    definition_digest,
    generate_encryption_key,
    generate_signing_key,
    migrate,
    open_snapshot,
    peek_header,
    register_migration,
    seal,
    supported_formats,
)

SIGN_A = SigningKey("sign-a", b"A" * 32)
SIGN_B = SigningKey("sign-b", b"B" * 40)
ENC_A = EncryptionKey("enc-a", bytes(range(32)))
ENC_B = EncryptionKey("enc-b", bytes(range(32, 64)))

NO_KEYS = SnapshotKeys.none()
SIGNING = SnapshotKeys.signing_only(SIGN_A)
SIGN_AND_ENCRYPT = SnapshotKeys.from_keys([SIGN_A], [ENC_A])
ENCRYPT_ONLY = SnapshotKeys.from_keys(encryption=[ENC_A])


def make_definition(states: int = 3) -> dict[str, Any]:
    return {
        "name": "orders",
        "version": "2",
        "start_at": "s0",
        "states": {
            f"s{i}": {"type": "Task", "activity": f"act_{i}", "next": f"s{i + 1}"}
            for i in range(states)
        },
    }


def make_doc(instance_id: str = "inst-1", seq: int = 7, **state: Any) -> dict[str, Any]:
    definition = make_definition()
    return {
        "format": CURRENT_FORMAT,
        "kind": SNAPSHOT_KIND,
        "instance_id": instance_id,
        "flow": {"name": "orders", "version": "2", "digest": definition_digest(definition)},
        "status": "running",
        "seq": seq,
        "epoch": 1,
        "updated_at": "2024-05-01T12:00:00Z",
        "definition": definition,
        "state": state or {"data": {"order": "o-1", "total": 12.5}, "history": [{"seq": 1}]},
    }


def edit(data: bytes, change: Any) -> bytes:
    """Parse, let ``change`` alter the document, and write it back (not re-signed)."""
    document = json.loads(data)
    change(document)
    return json.dumps(document).encode()


def sign_by_hand(document: dict[str, Any], key: SigningKey) -> bytes:
    """The wire format, written independently of the codec."""
    unsigned = {k: v for k, v in document.items() if k != "signature"}
    mac = hmac.new(key.secret, canonical_json(unsigned), hashlib.sha256).digest()
    signature = {
        "alg": "HMAC-SHA256",
        "key_id": key.key_id,
        "value": base64.b64encode(mac).decode(),
    }
    return canonical_json({**unsigned, "signature": signature})


# --- canonical JSON -------------------------------------------------------------------------


def test_canonical_json_sorts_keys_without_whitespace_and_keeps_unicode() -> None:
    value = {"b": [1, 2.5, None, True], "a": {"z": "é😀", "y": '\n"q"'}}
    assert (
        canonical_json(value) == '{"a":{"y":"\\n\\"q\\"","z":"é😀"},"b":[1,2.5,null,true]}'.encode()
    )
    reordered = {"a": {"y": '\n"q"', "z": "é😀"}, "b": [1, 2.5, None, True]}
    assert canonical_json(reordered) == canonical_json(value)


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_canonical_json_refuses_non_finite_numbers(number: float) -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": [number]})


def test_canonical_json_refuses_lone_surrogates() -> None:
    with pytest.raises(ValueError, match="surrogate"):
        canonical_json({"x": "\ud800"})


def test_definition_digest_is_stable_and_order_independent() -> None:
    definition = make_definition()
    reordered = dict(reversed(list(definition.items())))
    digest = definition_digest(definition)
    assert digest == definition_digest(reordered)
    assert digest == "sha256:" + hashlib.sha256(canonical_json(definition)).hexdigest()
    assert digest != definition_digest({**definition, "version": "3"})


# --- keys -------------------------------------------------------------------------------------


def test_signing_key_needs_32_bytes_and_hides_its_secret() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        SigningKey("k", b"x" * 31)
    key = SigningKey("k", b"s3cret-s3cret-s3cret-s3cret-s3cr")
    assert "s3cret" not in repr(key)
    assert "s3cret" not in repr(SnapshotKeys.signing_only(key))
    assert "k" in repr(key)


def test_encryption_key_needs_exactly_32_bytes_and_hides_it() -> None:
    for size in (16, 31, 33, 64):
        with pytest.raises(ValueError, match="exactly 32"):
            EncryptionKey("e", b"x" * size)
    assert "xxxx" not in repr(EncryptionKey("e", b"x" * 32))


def test_keys_from_base64_and_generated() -> None:
    key = generate_signing_key("gen")
    assert SigningKey.from_base64("gen", key.to_base64()) == key
    enc = generate_encryption_key("gen-e")
    assert EncryptionKey.from_base64("gen-e", enc.to_base64()) == enc
    assert generate_signing_key("x").secret != generate_signing_key("x").secret
    with pytest.raises(ValueError, match="base64"):
        SigningKey.from_base64("k", "not base64 !!")
    with pytest.raises(ValueError, match="key id"):
        SigningKey("bad:id", b"x" * 32)


def test_snapshot_keys_validate_active_ids() -> None:
    with pytest.raises(ValueError, match="not configured"):
        SnapshotKeys(signing={"sign-a": SIGN_A}, active_signing_key_id="other")
    with pytest.raises(ValueError, match="key_id"):
        SnapshotKeys(signing={"other": SIGN_A})
    with pytest.raises(ValueError, match="no signing key"):
        SnapshotKeys(require_signature=True)


def _env(**values: str) -> dict[str, str]:
    return {f"RUSTYFLOWER_{name}": value for name, value in values.items()}


def test_from_env_reads_keys_first_active_and_requires_signature_by_default() -> None:
    keys = SnapshotKeys.from_env(
        _env(
            SIGNING_KEYS=f" new:{SIGN_B.to_base64()} , old:{SIGN_A.to_base64()}",
            ENCRYPTION_KEYS=f"e1:{ENC_A.to_base64()}",
        )
    )
    assert keys.active_signing_key_id == "new"
    assert set(keys.signing) == {"new", "old"}
    assert keys.signing["old"].secret == SIGN_A.secret
    assert keys.active_encryption_key_id == "e1"
    assert keys.encryption["e1"].key == ENC_A.key
    assert keys.require_signature is True


def test_from_env_defaults_and_explicit_require_flag() -> None:
    assert SnapshotKeys.from_env({}) == SnapshotKeys.none()
    assert SnapshotKeys.from_env({"OTHER": "x"}).require_signature is False
    signing = f"k:{SIGN_A.to_base64()}"
    assert not SnapshotKeys.from_env(
        _env(SIGNING_KEYS=signing, REQUIRE_SIGNATURE="0")
    ).require_signature
    assert SnapshotKeys.from_env(
        _env(SIGNING_KEYS=signing, REQUIRE_SIGNATURE="TRUE")
    ).require_signature
    assert SnapshotKeys.from_env(
        _env(SIGNING_KEYS=signing, REQUIRE_SIGNATURE="1")
    ).require_signature


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"SIGNING_KEYS": "no-colon-here"}, "entry 1 is not of the form"),
        ({"SIGNING_KEYS": f"a:{SIGN_A.to_base64()},,"}, "entry 2 is not of the form"),
        ({"SIGNING_KEYS": ":abcd"}, "entry 1 is not of the form"),
        ({"SIGNING_KEYS": "k:%%%not-base64%%%"}, "not valid standard base64"),
        ({"SIGNING_KEYS": f"k:{base64.b64encode(b'short').decode()}"}, "at least 32"),
        ({"SIGNING_KEYS": f"k:{SIGN_A.to_base64()},k:{SIGN_B.to_base64()}"}, "appears twice"),
        ({"ENCRYPTION_KEYS": f"e:{SIGN_B.to_base64()}"}, "exactly 32"),
        ({"REQUIRE_SIGNATURE": "maybe"}, "RUSTYFLOWER_REQUIRE_SIGNATURE must be"),
        ({"REQUIRE_SIGNATURE": "1"}, "no signing key"),
    ],
)
def test_from_env_errors_name_the_problem_but_not_the_secret(
    values: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as info:
        SnapshotKeys.from_env(_env(**values))
    for secret in (SIGN_A.to_base64(), SIGN_B.to_base64(), "not-base64"):
        assert secret not in str(info.value)


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("keys", [NO_KEYS, SIGNING, SIGN_AND_ENCRYPT, ENCRYPT_ONLY])
def test_round_trip(keys: SnapshotKeys) -> None:
    document = make_doc()
    before = copy.deepcopy(document)
    data = seal(document, keys)
    assert document == before  # the argument is not modified
    opened = open_snapshot(data, keys)
    assert "sealed_state" not in opened
    signature = opened.pop("signature", None)
    assert (signature is not None) == (keys.active_signing_key is not None)
    assert opened == document
    assert open_snapshot(data.decode(), keys)["state"] == document["state"]


def test_sealed_bytes_are_canonical_and_hide_encrypted_state() -> None:
    data = seal(make_doc(), SIGN_AND_ENCRYPT)
    parsed = json.loads(data)
    assert canonical_json(parsed) == data
    assert "state" not in parsed
    assert parsed["sealed_state"]["alg"] == "A256GCM"
    assert parsed["sealed_state"]["key_id"] == "enc-a"
    assert parsed["signature"]["alg"] == "HMAC-SHA256"
    assert b"o-1" not in data
    # A random nonce: sealing twice gives different bytes.
    assert seal(make_doc(), SIGN_AND_ENCRYPT) != data


def test_signature_is_the_documented_hmac() -> None:
    document = make_doc()
    assert seal(document, SIGNING) == sign_by_hand(document, SIGN_A)


def test_reopened_document_can_be_sealed_again() -> None:
    opened = open_snapshot(seal(make_doc(), SIGN_AND_ENCRYPT), SIGN_AND_ENCRYPT)
    opened["seq"] += 1
    again = open_snapshot(seal(opened, SIGN_AND_ENCRYPT), SIGN_AND_ENCRYPT)
    assert again["seq"] == 8


def test_signed_snapshot_survives_reformatting() -> None:
    data = seal(make_doc(), SIGNING)
    pretty = json.dumps(json.loads(data), indent=2, ensure_ascii=True)
    assert open_snapshot(pretty, SIGNING)["seq"] == 7


def test_key_rotation_verifies_old_key_ids_and_signs_with_the_active_one() -> None:
    old_data = seal(make_doc(), SnapshotKeys.from_keys([SIGN_A], [ENC_A]))
    rotated = SnapshotKeys.from_keys([SIGN_B, SIGN_A], [ENC_B, ENC_A])
    assert open_snapshot(old_data, rotated)["state"] == make_doc()["state"]
    new_data = json.loads(seal(make_doc(), rotated))
    assert new_data["signature"]["key_id"] == "sign-b"
    assert new_data["sealed_state"]["key_id"] == "enc-b"


def test_peek_header_reads_without_keys() -> None:
    data = seal(make_doc(), SIGN_AND_ENCRYPT)
    header = peek_header(data)
    assert header == {
        "instance_id": "inst-1",
        "flow": make_doc()["flow"],
        "status": "running",
        "seq": 7,
        "epoch": 1,
        "updated_at": "2024-05-01T12:00:00Z",
        "format": 1,
    }
    with pytest.raises(MalformedSnapshotError, match="seq"):
        peek_header(edit(data, lambda d: d.pop("seq")))


json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_value = st.recursive(
    json_leaf,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(state=st.dictionaries(st.text(max_size=10), json_value, max_size=6))
def test_property_open_of_seal_returns_the_same_state(state: dict[str, Any]) -> None:
    document = make_doc()
    document["state"] = state
    for keys in (NO_KEYS, SIGN_AND_ENCRYPT):
        assert open_snapshot(seal(document, keys), keys)["state"] == state


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"format": 1,', "not valid JSON: .* line 1 column 14"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[1, 2]", "must be a JSON object, got array"),
        (b'"text"', "must be a JSON object, got string"),
        (b'{"format": 1}', "no 'kind' field"),
        (b'{"format": 1, "kind": "something.else"}', "kind 'something.else'"),
        (b'{"kind": "rustyflower.snapshot"}', "no 'format'"),
        (b'{"kind": "rustyflower.snapshot", "format": "1"}', "must be an integer"),
        (b'{"kind": "rustyflower.snapshot", "format": 1, "x": NaN}', "NaN"),
        (b'{"kind": "rustyflower.snapshot", "format": 1, "x": 1e999}', "1e999"),
    ],
)
def test_malformed_input(data: bytes, message: str) -> None:
    with pytest.raises(MalformedSnapshotError, match=message):
        open_snapshot(data, NO_KEYS)


def test_all_snapshot_errors_share_the_base_class() -> None:
    with pytest.raises(SnapshotError):
        open_snapshot(b"nope", NO_KEYS)


def test_older_format_without_migration_is_unsupported() -> None:
    data = edit(seal(make_doc(), NO_KEYS), lambda d: d.update(format=0))
    with pytest.raises(UnsupportedFormatError, match=r"too old.*format 1"):
        open_snapshot(data, NO_KEYS)


def test_newer_format_says_so() -> None:
    data = edit(seal(make_doc(), SIGNING), lambda d: d.update(format=CURRENT_FORMAT + 1))
    with pytest.raises(UnsupportedFormatError, match=r"written by a newer RustyFlower.*format 1"):
        open_snapshot(data, SIGNING)
    with pytest.raises(UnsupportedFormatError, match="newer"):
        peek_header(data)


def test_missing_signature_is_refused_when_required() -> None:
    data = seal(make_doc(), NO_KEYS)
    with pytest.raises(SignatureMissingError):
        open_snapshot(data, SIGNING)
    # ... and accepted where signatures are optional, even with keys configured.
    optional = SnapshotKeys.signing_only(SIGN_A, require=False)
    assert open_snapshot(data, optional)["seq"] == 7


def test_stripping_the_signature_is_refused_when_required() -> None:
    data = edit(seal(make_doc(), SIGNING), lambda d: d.pop("signature"))
    with pytest.raises(SignatureMissingError):
        open_snapshot(data, SIGNING)


def _bump_seq(d: dict[str, Any]) -> None:
    d["seq"] += 1


def _change_state(d: dict[str, Any]) -> None:
    d["state"]["data"]["total"] = 0


def _change_definition_and_digest(d: dict[str, Any]) -> None:
    d["definition"]["states"]["s0"]["activity"] = "steal_money"
    d["flow"]["digest"] = definition_digest(d["definition"])


def _add_field(d: dict[str, Any]) -> None:
    d["extra"] = True


@pytest.mark.parametrize(
    "tamper", [_bump_seq, _change_state, _change_definition_and_digest, _add_field]
)
def test_tampered_signed_snapshot_is_refused(tamper: Any) -> None:
    data = edit(seal(make_doc(), SIGNING), tamper)
    with pytest.raises(SignatureInvalidError, match="sign-a"):
        open_snapshot(data, SIGNING)


def test_tampered_encrypted_and_signed_header_is_refused_by_the_signature() -> None:
    data = edit(seal(make_doc(), SIGN_AND_ENCRYPT), _bump_seq)
    with pytest.raises(SignatureInvalidError):
        open_snapshot(data, SIGN_AND_ENCRYPT)


def test_signature_with_a_different_secret_under_the_same_id_is_invalid() -> None:
    data = seal(make_doc(), SIGNING)
    impostor = SnapshotKeys.signing_only(SigningKey("sign-a", b"Z" * 32))
    with pytest.raises(SignatureInvalidError):
        open_snapshot(data, impostor)


def test_unknown_signing_key_id() -> None:
    data = seal(make_doc(), SIGNING)
    with pytest.raises(UnknownKeyError, match=r"'sign-a'.*'sign-b'"):
        open_snapshot(data, SnapshotKeys.signing_only(SIGN_B))
    with pytest.raises(UnknownKeyError):
        open_snapshot(data, NO_KEYS)


def test_unknown_encryption_key_id() -> None:
    data = seal(make_doc(), SIGN_AND_ENCRYPT)
    with pytest.raises(UnknownKeyError, match="enc-a"):
        open_snapshot(data, SnapshotKeys.from_keys([SIGN_A], [ENC_B]))


def test_wrong_encryption_key_fails_to_decrypt() -> None:
    data = seal(make_doc(), ENCRYPT_ONLY)
    same_id_other_key = SnapshotKeys.from_keys(encryption=[EncryptionKey("enc-a", ENC_B.key)])
    with pytest.raises(DecryptionError):
        open_snapshot(data, same_id_other_key)


def test_tampered_ciphertext_fails_to_decrypt() -> None:
    def flip(d: dict[str, Any]) -> None:
        raw = bytearray(base64.b64decode(d["sealed_state"]["ciphertext"]))
        raw[3] ^= 0x01
        d["sealed_state"]["ciphertext"] = base64.b64encode(bytes(raw)).decode()

    data = edit(seal(make_doc(), ENCRYPT_ONLY), flip)
    with pytest.raises(DecryptionError):
        open_snapshot(data, ENCRYPT_ONLY)


def test_unsigned_encrypted_header_change_fails_to_decrypt() -> None:
    data = edit(seal(make_doc(), ENCRYPT_ONLY), _bump_seq)
    with pytest.raises(DecryptionError):
        open_snapshot(data, ENCRYPT_ONLY)


def test_ciphertext_spliced_from_another_instance_fails_to_decrypt() -> None:
    other = json.loads(seal(make_doc(instance_id="inst-2", state_of="other"), ENCRYPT_ONLY))

    def splice(d: dict[str, Any]) -> None:
        d["sealed_state"] = other["sealed_state"]

    data = edit(seal(make_doc(instance_id="inst-1"), ENCRYPT_ONLY), splice)
    with pytest.raises(DecryptionError):
        open_snapshot(data, ENCRYPT_ONLY)


def test_definition_digest_mismatch_in_an_unsigned_snapshot() -> None:
    def change(d: dict[str, Any]) -> None:
        d["definition"]["states"]["s0"]["activity"] = "other"

    data = edit(seal(make_doc(), NO_KEYS), change)
    claimed = make_doc()["flow"]["digest"]
    actual = definition_digest(json.loads(data)["definition"])
    with pytest.raises(DigestMismatchError) as info:
        open_snapshot(data, NO_KEYS)
    assert claimed in str(info.value)
    assert actual in str(info.value)


def test_missing_and_ill_typed_header_fields_are_all_named() -> None:
    def damage(d: dict[str, Any]) -> None:
        del d["seq"]
        del d["flow"]["digest"]
        d["epoch"] = "1"
        d["status"] = None

    data = edit(seal(make_doc(), NO_KEYS), damage)
    with pytest.raises(MalformedSnapshotError) as info:
        open_snapshot(data, NO_KEYS)
    message = str(info.value)
    for name in ("seq", "flow.digest", "epoch (expected a non-negative integer, got string)"):
        assert name in message
    assert "status (expected a non-empty string, got null)" in message


def test_missing_state_is_malformed() -> None:
    data = edit(seal(make_doc(), NO_KEYS), lambda d: d.pop("state"))
    with pytest.raises(MalformedSnapshotError, match=r"missing field.*state"):
        open_snapshot(data, NO_KEYS)


def test_seal_refuses_bad_documents() -> None:
    with pytest.raises(ValueError, match=r"missing field.*seq"):
        seal({k: v for k, v in make_doc().items() if k != "seq"}, NO_KEYS)
    with pytest.raises(ValueError, match=r"flow.digest"):
        seal({**make_doc(), "definition": make_definition(4)}, NO_KEYS)
    with pytest.raises(ValueError, match="not canonical JSON"):
        seal(make_doc(total=float("nan")), NO_KEYS)
    with pytest.raises(ValueError, match="format must be 1"):
        seal({**make_doc(), "format": 0}, NO_KEYS)
    verify_only = SnapshotKeys(signing={"sign-a": SIGN_A}, require_signature=True)
    with pytest.raises(ValueError, match="no active signing key"):
        seal(make_doc(), verify_only)


# --- migrations ---------------------------------------------------------------------------


def test_registry_starts_empty_and_current_format_is_supported() -> None:
    assert CURRENT_FORMAT == 1
    assert MIGRATIONS == {}  # format 1 is the first format
    assert supported_formats() == [CURRENT_FORMAT]


def test_migration_from_a_synthetic_format_0_runs_after_signature_verification(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("rustyflower.core.snapshot.migrations.MIGRATIONS", {})
    calls: list[dict[str, Any]] = []

    @register_migration(0)
    def _format_0_to_1(document: dict[str, Any]) -> dict[str, Any]:
        calls.append(copy.deepcopy(document))
        document["epoch"] = document.pop("owner_epoch")  # format 0 named it differently
        return document

    assert supported_formats() == [0, 1]
    old = make_doc()
    old["format"] = 0
    old["owner_epoch"] = old.pop("epoch")
    data = sign_by_hand(old, SIGN_A)

    opened = open_snapshot(data, SIGNING)
    assert opened["format"] == CURRENT_FORMAT
    assert opened["epoch"] == 1
    assert "owner_epoch" not in opened
    assert len(calls) == 1
    assert calls[0]["format"] == 0
    assert calls[0]["state"] == make_doc()["state"]  # the step sees the state in clear

    # Tampered: refused by the signature before the migration runs.
    calls.clear()
    with pytest.raises(SignatureInvalidError):
        open_snapshot(edit(data, _bump_seq), SIGNING)
    assert calls == []


def test_migrate_without_a_step_is_unsupported() -> None:
    with pytest.raises(UnsupportedFormatError):
        migrate({"format": -1})
    document = {"format": CURRENT_FORMAT, "x": 1}
    assert migrate(document) is document
