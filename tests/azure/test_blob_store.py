"""BlobSnapshotStore against Azurite: snapshot blobs written, ordered, listed and verified."""

from __future__ import annotations

import json
import random
import sys
import threading
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from azure.storage.blob import ContainerClient

from rustyflower.adapters.azure.blob_store import (
    BlobSnapshotStore,
    BlobStoreAuthError,
    BlobStoreConfigError,
    BlobStoreUnavailableError,
    ContainerNotFoundError,
    SnapshotHeaderMismatchError,
    SnapshotNotFoundError,
    instance_prefix,
    latest_blob_name,
    seq_blob_name,
)
from rustyflower.core.engine import Snapshot, start
from rustyflower.core.errors import SignatureInvalidError, SignatureMissingError
from rustyflower.core.model import parse_definition
from rustyflower.core.snapshot import SigningKey, SnapshotKeys
from rustyflower.core.snapshot.document import decode_snapshot, encode_snapshot
from tests.azure import azurite as azurite_module
from tests.azure.azurite import (  # noqa: F401 - pytest fixtures used by name
    azurite_connection_string_fixture,
    azurite_fixture,
)

NOW = datetime(2024, 1, 1, tzinfo=UTC)
SIGNING = SnapshotKeys.signing_only(SigningKey("k1", b"s" * 32))

WAITING = parse_definition(
    {
        "name": "orders",
        "version": "3",
        "start_at": "Charge",
        "states": {"Charge": {"type": "task", "activity": "charge", "end": True}},
    }
)
DONE = parse_definition(
    {"name": "greeting", "start_at": "Hello", "states": {"Hello": {"type": "succeed"}}}
)


def snapshot(instance_id: str, seq: int = 1, epoch: int = 0, *, done: bool = False) -> Snapshot:
    definition = DONE if done else WAITING
    first = start(definition, {"order": 7}, instance_id, NOW).snapshot
    return replace(first, seq=seq, epoch=epoch)


def signed(instance_id: str, seq: int = 1, epoch: int = 0, **options: bool) -> bytes:
    return encode_snapshot(snapshot(instance_id, seq, epoch, **options), SIGNING)


def container_name() -> str:
    return f"t-{uuid.uuid4().hex[:20]}"


@pytest.fixture
def store(azurite_connection_string: str) -> BlobSnapshotStore:
    store = BlobSnapshotStore.from_connection_string(
        azurite_connection_string, container_name(), create_container=True, retry_total=1
    )
    store.ensure_container()
    return store


def raw_container(connection_string: str, store: BlobSnapshotStore) -> ContainerClient:
    return ContainerClient.from_connection_string(connection_string, store.container_name)


# --- naming (no emulator) ----------------------------------------------------------------


def test_blob_names_are_per_instance_and_zero_padded() -> None:
    assert seq_blob_name("order-42", 7) == "snapshots/order-42/000000000007.json"
    assert latest_blob_name("order-42") == "snapshots/order-42/latest"
    assert instance_prefix("parent/call 1") == "snapshots/parent%2Fcall%201/"
    assert instance_prefix("..") == "snapshots/%2E%2E/"
    with pytest.raises(ValueError):
        seq_blob_name("x", -1)


def test_development_storage_shortcut_means_azurite() -> None:
    store = BlobSnapshotStore.from_connection_string("UseDevelopmentStorage=true", "c")
    assert store.where == "http://127.0.0.1:10000/devstoreaccount1/c"
    assert azurite_module.ACCOUNT_KEY not in repr(store)


def test_identity_settings_without_azure_identity_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "azure.identity", None)
    settings = {
        "AzureWebJobsStorage__accountName": "rfstore",
        "AzureWebJobsStorage__credential": "managedidentity",
    }
    with pytest.raises(BlobStoreConfigError, match="azure-identity"):
        BlobSnapshotStore.from_settings(settings)
    with pytest.raises(BlobStoreConfigError, match="AzureWebJobsStorage__accountName"):
        BlobSnapshotStore.from_settings({})


def test_settings_with_a_connection_string_name_the_container() -> None:
    settings = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "RUSTYFLOWER_SNAPSHOT_CONTAINER": "lifeboat",
    }
    store = BlobSnapshotStore.from_settings(settings)
    assert store.container_name == "lifeboat"


def test_a_connection_string_error_hides_the_key() -> None:
    with pytest.raises(BlobStoreConfigError) as caught:
        BlobSnapshotStore.from_connection_string("AccountKey=c2VjcmV0LXZhbHVl;Nonsense", "c")
    assert "c2VjcmV0LXZhbHVl" not in str(caught.value)


# --- through Azurite -------------------------------------------------------------------


@pytest.mark.emulator
def test_put_then_latest_get_and_list(store: BlobSnapshotStore) -> None:
    first = signed("order-1", seq=1)
    second = signed("order-1", seq=2)
    result = store.put("order-1", 1, first)
    assert (result.stored, result.latest_updated, result.latest_seq) == (True, True, 1)
    store.put("order-1", 2, second)

    assert store.latest("order-1") == second
    assert store.get("order-1", 1) == first
    assert store.seqs("order-1") == [1, 2]
    assert decode_snapshot(store.latest("order-1"), SIGNING).seq == 2

    [info] = store.list_instances()
    assert (info.instance_id, info.seq, info.epoch, info.status) == ("order-1", 2, 0, "running")
    assert (info.flow, info.flow_version) == ("orders", "3")
    assert info.digest == snapshot("order-1").digest
    assert info.size == len(second)
    assert store.latest_info("order-1") == replace(info, last_modified=info.last_modified)


@pytest.mark.emulator
def test_older_seq_never_overwrites_a_newer_latest(store: BlobSnapshotStore) -> None:
    store.put("order-2", 5, signed("order-2", seq=5))
    late = store.put("order-2", 3, signed("order-2", seq=3))

    assert late.stored is True  # the numbered copy is kept for history
    assert (late.latest_updated, late.latest_seq) == (False, 5)
    assert decode_snapshot(store.latest("order-2"), SIGNING).seq == 5
    assert store.seqs("order-2") == [3, 5]


@pytest.mark.emulator
def test_newer_seq_wins_and_a_newer_epoch_beats_a_higher_seq(store: BlobSnapshotStore) -> None:
    store.put("order-3", 4, signed("order-3", seq=4))
    assert store.put("order-3", 6, signed("order-3", seq=6)).latest_updated
    # failover: the cloud owns epoch 1 from seq 6 on ...
    assert store.put("order-3", 6, signed("order-3", seq=6, epoch=1)).latest_updated
    # ... and the old on-premises owner (epoch 0) cannot push seq 9 over it
    stale = store.put("order-3", 9, signed("order-3", seq=9, epoch=0))
    assert (stale.latest_updated, stale.latest_epoch, stale.latest_seq) == (False, 1, 6)
    latest = decode_snapshot(store.latest("order-3"), SIGNING)
    assert (latest.epoch, latest.seq) == (1, 6)
    # the numbered blob of seq 6 is the new owner's copy
    assert decode_snapshot(store.get("order-3", 6), SIGNING).epoch == 1


@pytest.mark.emulator
def test_the_same_snapshot_twice_keeps_the_first_copy(store: BlobSnapshotStore) -> None:
    data = signed("order-4", seq=2)
    store.put("order-4", 2, data)
    again = store.put("order-4", 2, data)
    assert (again.stored, again.latest_updated, again.latest_seq) == (False, False, 2)
    assert store.latest("order-4") == data


@pytest.mark.emulator
def test_an_older_owner_cannot_replace_a_numbered_snapshot(store: BlobSnapshotStore) -> None:
    newer = signed("order-4b", seq=2, epoch=1)
    store.put("order-4b", 2, newer)
    older = store.put("order-4b", 2, signed("order-4b", seq=2, epoch=0))
    assert (older.stored, older.latest_updated, older.latest_epoch) == (False, False, 1)
    assert store.get("order-4b", 2) == newer


@pytest.mark.emulator
def test_blob_metadata_carries_the_header(
    store: BlobSnapshotStore, azurite_connection_string: str
) -> None:
    data = signed("parent/call-1", seq=12, epoch=2)
    store.put("parent/call-1", 12, data)
    container = raw_container(azurite_connection_string, store)
    for name in (seq_blob_name("parent/call-1", 12), latest_blob_name("parent/call-1")):
        props = container.get_blob_client(name).get_blob_properties()
        assert props.content_settings.content_type == "application/json"
        meta = props.metadata
        assert meta["seq"] == "12"
        assert meta["epoch"] == "2"
        assert meta["status"] == "running"
        assert meta["flow"] == "orders"
        assert meta["flow_version"] == "3"
        assert meta["digest"].startswith("sha256:")
        assert meta["instance_id"] == "parent/call-1"
    assert [info.instance_id for info in store.list_instances()] == ["parent/call-1"]


@pytest.mark.emulator
def test_list_instances_filters_by_status(store: BlobSnapshotStore) -> None:
    store.put("a-running", 1, signed("a-running", seq=1))
    done = snapshot("b-done", done=True)
    store.put("b-done", done.seq, encode_snapshot(done, SIGNING))
    store.put("c-running", 3, signed("c-running", seq=3))

    assert [i.instance_id for i in store.list_instances()] == ["a-running", "b-done", "c-running"]
    assert [i.instance_id for i in store.list_instances("running")] == ["a-running", "c-running"]
    assert [i.instance_id for i in store.list_instances(["succeeded"])] == ["b-done"]
    assert store.list_instances("failed") == []


@pytest.mark.emulator
def test_tampered_blob_content_is_still_refused_by_decode(
    store: BlobSnapshotStore, azurite_connection_string: str
) -> None:
    data = signed("order-5", seq=1)
    store.put("order-5", 1, data)
    document = json.loads(data)
    document["state"]["input"] = {"order": 7000}  # somebody with storage access edits the data
    tampered = json.dumps(document).encode()
    container = raw_container(azurite_connection_string, store)
    container.upload_blob(latest_blob_name("order-5"), tampered, overwrite=True)

    assert store.latest("order-5") == tampered  # the store hands back what is stored ...
    with pytest.raises(SignatureInvalidError):  # ... and the runtime refuses it
        decode_snapshot(store.latest("order-5"), SIGNING)

    unsigned = encode_snapshot(snapshot("order-6", seq=1))
    store.put("order-6", 1, unsigned)
    with pytest.raises(SignatureMissingError):
        decode_snapshot(store.latest("order-6"), SIGNING)


@pytest.mark.emulator
def test_put_checks_the_header_against_its_arguments(store: BlobSnapshotStore) -> None:
    with pytest.raises(SnapshotHeaderMismatchError, match="seq 1"):
        store.put("order-7", 2, signed("order-7", seq=1))
    with pytest.raises(SnapshotHeaderMismatchError, match="order-7"):
        store.put("order-8", 1, signed("order-7", seq=1))


@pytest.mark.emulator
def test_missing_snapshots_and_delete(store: BlobSnapshotStore) -> None:
    with pytest.raises(SnapshotNotFoundError, match="nobody"):
        store.latest("nobody")
    with pytest.raises(SnapshotNotFoundError):
        store.latest_info("nobody")
    store.put("order-9", 1, signed("order-9", seq=1))
    store.put("order-9", 2, signed("order-9", seq=2))
    with pytest.raises(SnapshotNotFoundError, match="seq 7"):
        store.get("order-9", 7)
    assert store.delete("order-9") == 3
    assert store.list_instances() == []
    assert store.delete("order-9") == 0


@pytest.mark.emulator
def test_missing_container_is_an_error_unless_asked_to_create_it(
    azurite_connection_string: str,
) -> None:
    name = container_name()
    strict = BlobSnapshotStore.from_connection_string(azurite_connection_string, name)
    with pytest.raises(ContainerNotFoundError, match=name) as caught:
        strict.put("order-10", 1, signed("order-10", seq=1))
    assert "create_container=True" in str(caught.value)
    with pytest.raises(ContainerNotFoundError):
        strict.latest("order-10")
    with pytest.raises(ContainerNotFoundError):
        strict.list_instances()
    assert strict.container_exists() is False

    creating = BlobSnapshotStore.from_connection_string(
        azurite_connection_string, name, create_container=True
    )
    assert creating.put("order-10", 1, signed("order-10", seq=1)).latest_updated
    assert strict.container_exists() is True
    assert strict.latest_info("order-10").seq == 1
    assert creating.ensure_container() is False


@pytest.mark.emulator
def test_concurrent_writers_leave_the_highest_seq_latest(store: BlobSnapshotStore) -> None:
    payloads = {seq: signed("race", seq=seq) for seq in range(1, 25)}
    order = list(payloads)
    random.Random(5).shuffle(order)
    errors: list[BaseException] = []

    def write(seqs: list[int]) -> None:
        try:
            for seq in seqs:
                store.put("race", seq, payloads[seq])
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=write, args=(order[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert store.latest("race") == payloads[24]
    assert store.seqs("race") == list(range(1, 25))


@pytest.mark.emulator
def test_wrong_account_key_is_an_auth_error_without_the_key(
    azurite: azurite_module.Azurite,
) -> None:
    wrong_key = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk="
    conn = azurite.connection_string.replace(azurite_module.ACCOUNT_KEY, wrong_key)
    store = BlobSnapshotStore.from_connection_string(conn, container_name(), retry_total=0)
    with pytest.raises(BlobStoreAuthError) as caught:
        store.put("order-11", 1, signed("order-11", seq=1))
    message = str(caught.value)
    assert wrong_key not in message
    assert "refused the credentials" in message
    assert "127.0.0.1" in message


def test_unreachable_storage_is_a_clear_error_without_secrets() -> None:
    port = azurite_module.free_port()  # nothing listens there
    conn = azurite_module.connection_string(port)
    store = BlobSnapshotStore.from_connection_string(conn, "c", retry_total=0, connection_timeout=2)
    with pytest.raises(BlobStoreUnavailableError) as caught:
        store.latest("order-12")
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message
    assert azurite_module.ACCOUNT_KEY not in message


def test_sas_urls_are_redacted_in_messages() -> None:
    port = azurite_module.free_port()
    url = f"http://127.0.0.1:{port}/devstoreaccount1?sv=2024-08-04&sig=VerySecretSig%3D"
    store = BlobSnapshotStore.from_account_url(url, "c", retry_total=0, connection_timeout=2)
    assert "VerySecretSig" not in repr(store)
    with pytest.raises(BlobStoreUnavailableError) as caught:
        store.list_instances()
    assert "VerySecretSig" not in str(caught.value)
