"""The checkpoint step: the orchestrator hands its snapshot to ``rustyflower_checkpoint``.

The activity seals the snapshot with the app's keys (signed, encrypted when configured)
and gives the bytes to a :class:`SnapshotSink`. The sink is chosen by app settings:

* ``blob`` (the default when a container or account is configured):
  ``adapters.azure.blob_store.BlobSnapshotStore`` in ``RUSTYFLOWER_SNAPSHOT_CONTAINER`` of
  the account ``RUSTYFLOWER_SNAPSHOT_CONNECTION`` (a connection string; Azurite) or
  ``RUSTYFLOWER_SNAPSHOT_ACCOUNT_URL`` (the app's managed identity) names, else of the
  task hub's own account (``AzureWebJobsStorage`` or its identity-based settings);
* ``none``: snapshots are sealed but not stored;
* ``package.module:factory``: ``factory(settings)`` returns any object with ``put``.

A sink that fails does not fail the flow: the activity reports ``ok: false`` and the
orchestrator counts it in its custom status (the next checkpoint writes a newer snapshot).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Protocol

from functions_azure.payloads import PayloadError, snapshot_from_text
from functions_azure.settings import AppSettings
from rustyflower.core.errors import SnapshotError
from rustyflower.core.settings import SettingsError
from rustyflower.core.snapshot.document import encode_snapshot
from rustyflower.core.snapshot.keys import SnapshotKeys


class SnapshotSink(Protocol):
    """Where checkpoints go: one sealed snapshot per (instance, seq)."""

    def put(self, instance_id: str, seq: int, data: bytes) -> object: ...


class DiscardingSink:
    """``RUSTYFLOWER_SNAPSHOT_SINK=none``: checkpoints are sealed, then dropped."""

    def put(self, instance_id: str, seq: int, data: bytes) -> None:
        return None


def _blob_sink(settings: AppSettings, environ: Mapping[str, str]) -> SnapshotSink:
    # imported when used: adapters/azure is its own package (and needs azure-storage-blob)
    blob_store: Any = importlib.import_module("rustyflower.adapters.azure.blob_store")
    store_class = blob_store.BlobSnapshotStore
    container = settings.snapshot_container
    if settings.snapshot_connection:
        store: SnapshotSink = store_class.from_connection_string(
            settings.snapshot_connection, container
        )
    elif settings.snapshot_account_url:
        # managed identity (DefaultAzureCredential) unless the URL carries a SAS
        store = store_class.from_account_url(settings.snapshot_account_url, container)
    else:  # the task hub's own account (AzureWebJobsStorage, or its identity-based form)
        store = store_class.from_settings(environ, container=container)
    return store


def sink_from_settings(
    settings: AppSettings, environ: Mapping[str, str] | None = None
) -> SnapshotSink:
    """The sink the app settings name (``environ``: for the storage account settings)."""
    kind = settings.snapshot_sink
    if kind == "none":
        return DiscardingSink()
    if kind == "blob":
        return _blob_sink(settings, environ or {})
    module_name, sep, attribute = kind.partition(":")
    if not sep or not module_name or not attribute:
        raise SettingsError(
            f"RUSTYFLOWER_SNAPSHOT_SINK must be blob, none or module:factory, got {kind!r}"
        )
    factory = getattr(importlib.import_module(module_name), attribute)
    sink: SnapshotSink = factory(settings)
    return sink


def checkpoint_request(snapshot_text: str, *, final: bool) -> dict[str, Any]:
    """The checkpoint activity's input (``final``: return the sealed snapshot too)."""
    return {"snapshot": snapshot_text, "final": final}


def write_checkpoint(
    payload: Mapping[str, Any], sink: SnapshotSink, keys: SnapshotKeys
) -> dict[str, Any]:
    """Seal the snapshot of ``payload`` with ``keys`` and put it in ``sink``.

    Never raises for a sink or key problem: the answer says ``ok: false`` and why.
    """
    text = payload.get("snapshot")
    if not isinstance(text, str):
        return {"ok": False, "seq": None, "error": "the checkpoint request has no snapshot"}
    try:
        snapshot = snapshot_from_text(text)
        data = encode_snapshot(snapshot, keys)
    except (SnapshotError, PayloadError, ValueError) as error:
        return {"ok": False, "seq": None, "error": f"{type(error).__name__}: {error}"}
    answer: dict[str, Any] = {"ok": True, "seq": snapshot.seq, "error": None}
    if payload.get("final"):
        answer["snapshot"] = data.decode("utf-8")
    try:
        sink.put(snapshot.instance_id, snapshot.seq, data)
    except Exception as error:  # a storage failure is reported, not raised to Durable
        answer["ok"] = False
        answer["error"] = f"{type(error).__name__}: {error}"
    return answer
