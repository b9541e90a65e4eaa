"""Snapshots in Azure Blob Storage: the lifeboat's hold and the Azure checkpoint store.

Layout inside one container (``RUSTYFLOWER_SNAPSHOT_CONTAINER``)::

    snapshots/<instance>/000000000042.json   every stored snapshot, by sequence number
    snapshots/<instance>/latest              the newest one, with its header as metadata

``<instance>`` is the instance id percent-encoded (child flows have a ``/`` in their id).
Every blob carries the snapshot header as metadata (``instance_id``, ``seq``, ``epoch``,
``status``, ``flow``, ``flow_version``, ``digest``, ``updated_at``), read with
``peek_header`` and so *not verified*: listing tools may show it, but a runtime that
continues a snapshot must ``decode_snapshot`` the bytes with its keys.

Ordering is by ``(epoch, seq)``: a snapshot of a newer owner (higher epoch, see the
fencing in docs/architecture.md) wins over any snapshot of an older owner, and within one epoch the
higher sequence number wins. ``latest`` is only replaced through a conditional write
(``If-Match`` on the ETag that was compared, or ``If-None-Match: *`` when it is new), so
two writers racing cannot put an older snapshot over a newer one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobProperties, ContainerClient, ContentSettings

from rustyflower.adapters.azure._secrets import parse_connection_string, redact
from rustyflower.adapters.azure.blob_errors import (
    BlobStoreAuthError,
    BlobStoreConfigError,
    BlobStoreError,
    BlobStoreUnavailableError,
    ContainerNotFoundError,
    SnapshotHeaderMismatchError,
    SnapshotNotFoundError,
    default_azure_credential,
    error_code,
    identity_class,
    raise_storage_error,
)
from rustyflower.core.errors import RustyFlowerError
from rustyflower.core.snapshot import peek_header

__all__ = [
    "AZURITE_CONNECTION_STRING",
    "CONNECTION_SETTING",
    "CONTAINER_SETTING",
    "DEFAULT_CONTAINER",
    "BlobSnapshotStore",
    "BlobStoreAuthError",
    "BlobStoreConfigError",
    "BlobStoreError",
    "BlobStoreUnavailableError",
    "ContainerNotFoundError",
    "PutResult",
    "SnapshotHeaderMismatchError",
    "SnapshotInfo",
    "SnapshotNotFoundError",
]

CONTAINER_SETTING = "RUSTYFLOWER_SNAPSHOT_CONTAINER"
CONNECTION_SETTING = "AzureWebJobsStorage"
DEFAULT_CONTAINER = "rustyflower-snapshots"
PREFIX = "snapshots/"
LATEST = "latest"
_CONFLICT_ATTEMPTS = 16

# The Azure Storage emulator's documented, public development account.
_AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
AZURITE_CONNECTION_STRING = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    f"AccountKey={_AZURITE_KEY};BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
)


@dataclass(frozen=True)
class SnapshotInfo:
    """A stored snapshot's header, from blob metadata (unverified: for listing only)."""

    instance_id: str
    seq: int
    epoch: int
    status: str
    flow: str
    flow_version: str
    digest: str
    updated_at: str
    last_modified: datetime | None = None
    size: int | None = None

    @property
    def order(self) -> tuple[int, int]:
        """What ``latest`` compares: a newer owner first, then the later transition."""
        return (self.epoch, self.seq)


@dataclass(frozen=True)
class PutResult:
    """What ``put`` did: ``stored`` the numbered blob, ``latest_updated`` the pointer."""

    instance_id: str
    seq: int
    epoch: int
    blob_name: str
    stored: bool
    latest_updated: bool
    latest_seq: int
    latest_epoch: int


def instance_prefix(instance_id: str) -> str:
    """``snapshots/<encoded id>/``: one folder per instance, whatever its id holds."""
    if not instance_id:
        raise ValueError("instance id must not be empty")
    encoded = quote(instance_id, safe="-_~.")
    if set(encoded) == {"."}:  # "." and ".." are path segments, not names
        encoded = encoded.replace(".", "%2E")
    return f"{PREFIX}{encoded}/"


def seq_blob_name(instance_id: str, seq: int) -> str:
    if seq < 0:
        raise ValueError(f"sequence number must be >= 0, got {seq}")
    return f"{instance_prefix(instance_id)}{seq:012d}.json"


def latest_blob_name(instance_id: str) -> str:
    return instance_prefix(instance_id) + LATEST


def _metadata(header: Mapping[str, Any]) -> dict[str, str]:
    flow = header["flow"]
    values = {
        "instance_id": header["instance_id"],
        "seq": str(header["seq"]),
        "epoch": str(header["epoch"]),
        "status": header["status"],
        "flow": flow["name"],
        "flow_version": flow["version"],
        "digest": flow["digest"],
        "updated_at": header["updated_at"],
    }
    # Metadata travels as HTTP headers: ASCII only, so anything else is percent-encoded.
    return {
        name: quote(str(value), safe=" !#$&'()*+,-./:;=?@[]^_`{|}~")
        for name, value in values.items()
    }


def _info(metadata: Mapping[str, str], props: BlobProperties | None = None) -> SnapshotInfo:
    meta = {name.lower(): unquote(value) for name, value in metadata.items()}
    try:
        return SnapshotInfo(
            instance_id=meta["instance_id"],
            seq=int(meta["seq"]),
            epoch=int(meta["epoch"]),
            status=meta.get("status", ""),
            flow=meta.get("flow", ""),
            flow_version=meta.get("flow_version", ""),
            digest=meta.get("digest", ""),
            updated_at=meta.get("updated_at", ""),
            last_modified=None if props is None else props.last_modified,
            size=None if props is None else props.size,
        )
    except (KeyError, ValueError):
        name = "" if props is None else f" {props.name}"
        raise BlobStoreError(
            f"blob{name} has no RustyFlower snapshot metadata (seq, epoch, instance_id); "
            "was it written by something else?"
        ) from None


def _strip_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


class BlobSnapshotStore:
    """Signed snapshot bytes in one Blob container, as the lifeboat (docs/failover.md) needs them.

    Build it with ``from_connection_string``, ``from_account_url`` (Entra ID: a
    credential, or ``DefaultAzureCredential`` when azure-identity is installed) or
    ``from_settings`` (the Function App's settings). Pass ``create_container=True`` to
    create a missing container on first use instead of raising ``ContainerNotFoundError``.
    Extra keyword arguments go to the Azure SDK client (for example ``retry_total=2``,
    ``connection_timeout=5``).
    """

    def __init__(
        self,
        container: ContainerClient,
        *,
        create_container: bool = False,
        secrets: Sequence[str] = (),
    ) -> None:
        self._container = container
        self._create_container = create_container
        self._secrets = tuple(secret for secret in secrets if secret)
        self._container_checked = False

    # --- construction ---------------------------------------------------------------

    @classmethod
    def from_connection_string(
        cls,
        connection_string: str,
        container: str = DEFAULT_CONTAINER,
        *,
        create_container: bool = False,
        **client_options: Any,
    ) -> BlobSnapshotStore:
        """A store from an account connection string (``UseDevelopmentStorage=true``: Azurite)."""
        if connection_string.strip().lower().rstrip(";") == "usedevelopmentstorage=true":
            connection_string = AZURITE_CONNECTION_STRING
        members = parse_connection_string(connection_string)
        secrets = [
            members.get("accountkey", ""),
            members.get("sharedaccesssignature", ""),
        ]
        try:
            client = ContainerClient.from_connection_string(
                connection_string, container, **client_options
            )
        except (ValueError, AzureError) as error:
            raise BlobStoreConfigError(
                f"invalid storage connection string: {redact(str(error), secrets)}"
            ) from None
        return cls(client, create_container=create_container, secrets=secrets)

    @classmethod
    def from_account_url(
        cls,
        account_url: str,
        container: str = DEFAULT_CONTAINER,
        credential: Any = None,
        *,
        create_container: bool = False,
        **client_options: Any,
    ) -> BlobSnapshotStore:
        """A store from ``https://<account>.blob.core.windows.net`` and a credential.

        ``credential`` may be any azure-core TokenCredential, an
        ``AzureNamedKeyCredential``, an ``AzureSasCredential`` or a SAS string. When it
        is ``None`` and the URL carries no SAS, ``DefaultAzureCredential`` is used
        (managed identity in Azure, ``az login`` on a workstation); it needs the
        ``azure-identity`` package.
        """
        query = urlsplit(account_url).query
        secrets = [query] if query else []
        if isinstance(credential, str):
            secrets.append(credential)
        if credential is None and "sig=" not in query:
            credential = default_azure_credential()
        try:
            client = ContainerClient(
                account_url, container, credential=credential, **client_options
            )
        except (ValueError, AzureError) as error:
            raise BlobStoreConfigError(
                f"invalid storage account URL {redact(_strip_query(account_url))}: "
                f"{redact(str(error), secrets)}"
            ) from None
        return cls(client, create_container=create_container, secrets=secrets)

    @classmethod
    def from_settings(
        cls,
        settings: Mapping[str, str],
        *,
        connection: str = CONNECTION_SETTING,
        container: str | None = None,
        create_container: bool = False,
        **client_options: Any,
    ) -> BlobSnapshotStore:
        """A store from Function App style settings (the mapping is passed in).

        The container is ``RUSTYFLOWER_SNAPSHOT_CONTAINER`` (default
        ``rustyflower-snapshots``). The account is the ``connection`` setting: either a
        connection string in ``AzureWebJobsStorage``, or the identity-based form the
        Bicep templates set (``AzureWebJobsStorage__blobServiceUri`` or
        ``__accountName``, with ``__credential=managedidentity`` and optionally
        ``__clientId`` for a user-assigned identity).
        """
        name = container or settings.get(CONTAINER_SETTING, "").strip() or DEFAULT_CONTAINER
        connection_string = settings.get(connection, "").strip()
        if connection_string:
            return cls.from_connection_string(
                connection_string, name, create_container=create_container, **client_options
            )
        blob_uri = settings.get(f"{connection}__blobServiceUri", "").strip()
        account = settings.get(f"{connection}__accountName", "").strip()
        if not blob_uri and account:
            blob_uri = f"https://{account}.blob.core.windows.net"
        if not blob_uri:
            raise BlobStoreConfigError(
                f"no storage account configured: set {connection} to a connection string, "
                f"or {connection}__blobServiceUri / {connection}__accountName for a managed "
                "identity"
            )
        credential: Any = None
        if settings.get(f"{connection}__credential", "").strip().lower() == "managedidentity":
            client_id = settings.get(f"{connection}__clientId", "").strip() or None
            credential = identity_class("ManagedIdentityCredential")(client_id=client_id)
        return cls.from_account_url(
            blob_uri, name, credential, create_container=create_container, **client_options
        )

    # --- description -------------------------------------------------------------------

    @property
    def container_name(self) -> str:
        return self._container.container_name

    @property
    def where(self) -> str:
        """The container's URL without any SAS, for messages."""
        return redact(_strip_query(self._container.url), self._secrets)

    def __repr__(self) -> str:
        return f"BlobSnapshotStore({self.where!r})"

    # --- container ---------------------------------------------------------------------

    def ensure_container(self) -> bool:
        """Create the container if it is missing; True when this call created it."""
        with self._errors("creating the container"):
            try:
                self._container.create_container()
            except ResourceExistsError:
                self._container_checked = True
                return False
        self._container_checked = True
        return True

    def container_exists(self) -> bool:
        with self._errors("checking the container"):
            return self._container.exists()

    # --- writing -----------------------------------------------------------------------

    def put(self, instance_id: str, seq: int, data: bytes) -> PutResult:
        """Store snapshot ``data`` as ``seq`` and make it ``latest`` unless a newer one is.

        The header (read unverified with ``peek_header``) must name ``instance_id`` and
        ``seq``. Writing the same ``(epoch, seq)`` twice keeps the first copy (a retried
        checkpoint is harmless); a snapshot of a higher epoch replaces the blob of the
        same ``seq`` written by an older owner, never the reverse.
        """
        header = peek_header(data)
        if header["instance_id"] != instance_id or header["seq"] != seq:
            raise SnapshotHeaderMismatchError(
                f"snapshot header names instance {header['instance_id']!r} seq "
                f"{header['seq']}, but it was put as instance {instance_id!r} seq {seq}"
            )
        epoch = int(header["epoch"])
        metadata = _metadata(header)
        name = seq_blob_name(instance_id, seq)
        with self._errors(f"writing snapshot {name}"):
            stored = self._write_numbered(name, bytes(data), metadata, epoch)
            updated, current = self._write_latest(
                latest_blob_name(instance_id), bytes(data), metadata, (epoch, seq)
            )
        return PutResult(
            instance_id=instance_id,
            seq=seq,
            epoch=epoch,
            blob_name=name,
            stored=stored,
            latest_updated=updated,
            latest_seq=current[1],
            latest_epoch=current[0],
        )

    def _upload(
        self,
        name: str,
        data: bytes,
        metadata: dict[str, str],
        etag: str | None = None,
    ) -> None:
        """Create ``name`` (``etag`` None: fails if it exists) or replace that version."""
        options: dict[str, Any] = {
            "metadata": metadata,
            "content_settings": ContentSettings(content_type="application/json"),
        }
        if etag is None:
            options["overwrite"] = False
        else:
            options.update(overwrite=True, etag=etag, match_condition=MatchConditions.IfNotModified)
        try:
            self._container.upload_blob(name, data, **options)
        except ResourceNotFoundError as error:
            if error_code(error) != "ContainerNotFound" or not self._create_container:
                raise
            self.ensure_container()
            self._container.upload_blob(name, data, **options)

    def _write_numbered(self, name: str, data: bytes, metadata: dict[str, str], epoch: int) -> bool:
        for _ in range(_CONFLICT_ATTEMPTS):
            try:
                self._upload(name, data, metadata)
                return True
            except ResourceExistsError:
                pass
            try:
                props = self._container.get_blob_client(name).get_blob_properties()
            except ResourceNotFoundError:
                continue  # deleted in between: create it again
            if _info(props.metadata, props).epoch >= epoch:
                return False
            try:
                self._upload(name, data, metadata, etag=props.etag)
                return True
            except ResourceModifiedError:
                continue
        raise BlobStoreError(f"{name}: gave up after {_CONFLICT_ATTEMPTS} conflicting writes")

    def _write_latest(
        self, name: str, data: bytes, metadata: dict[str, str], order: tuple[int, int]
    ) -> tuple[bool, tuple[int, int]]:
        for _ in range(_CONFLICT_ATTEMPTS):
            try:
                props = self._container.get_blob_client(name).get_blob_properties()
            except ResourceNotFoundError as error:
                if error_code(error) == "ContainerNotFound":
                    raise
                try:
                    self._upload(name, data, metadata)
                    return True, order
                except ResourceExistsError:
                    continue  # another writer created it first: compare with theirs
            current = _info(props.metadata, props).order
            if current >= order:
                return False, current
            try:
                self._upload(name, data, metadata, etag=props.etag)
                return True, order
            except (ResourceModifiedError, ResourceNotFoundError):
                continue  # changed or deleted since we looked: look again
        raise BlobStoreError(f"{name}: gave up after {_CONFLICT_ATTEMPTS} conflicting writes")

    # --- reading -----------------------------------------------------------------------

    def latest(self, instance_id: str) -> bytes:
        """The newest stored snapshot of ``instance_id`` (verify it with decode_snapshot)."""
        return self._download(latest_blob_name(instance_id), f"instance {instance_id!r}")

    def get(self, instance_id: str, seq: int) -> bytes:
        """The snapshot stored for ``instance_id`` at sequence number ``seq``."""
        return self._download(
            seq_blob_name(instance_id, seq), f"instance {instance_id!r} seq {seq}"
        )

    def latest_info(self, instance_id: str) -> SnapshotInfo:
        """The header of the newest snapshot, from metadata (no download, no verification)."""
        name = latest_blob_name(instance_id)
        with self._errors(f"reading {name}"):
            try:
                props = self._container.get_blob_client(name).get_blob_properties()
            except ResourceNotFoundError as error:
                if error_code(error) == "ContainerNotFound":
                    raise
                raise SnapshotNotFoundError(
                    f"no snapshot stored for instance {instance_id!r} in {self.where}"
                ) from None
        return _info(props.metadata, props)

    def seqs(self, instance_id: str) -> list[int]:
        """The sequence numbers stored for ``instance_id``, ascending."""
        prefix = instance_prefix(instance_id)
        found: list[int] = []
        with self._errors(f"listing {prefix}"):
            for name in self._container.list_blob_names(name_starts_with=prefix):
                stem = name[len(prefix) :]
                if stem.endswith(".json") and stem[:-5].isdigit():
                    found.append(int(stem[:-5]))
        return sorted(found)

    def list_instances(self, status: str | Sequence[str] | None = None) -> list[SnapshotInfo]:
        """Every instance with a ``latest`` snapshot (optionally only these statuses).

        Read from blob metadata in one listing, sorted by instance id.
        """
        wanted: set[str] | None
        if status is None:
            wanted = None
        elif isinstance(status, str):
            wanted = {status}
        else:
            wanted = set(status)
        found: list[SnapshotInfo] = []
        with self._errors("listing snapshots"):
            for blob in self._container.list_blobs(name_starts_with=PREFIX, include=["metadata"]):
                if not blob.name.endswith("/" + LATEST):
                    continue
                info = _info(blob.metadata or {}, blob)
                if wanted is None or info.status in wanted:
                    found.append(info)
        return sorted(found, key=lambda info: info.instance_id)

    def delete(self, instance_id: str) -> int:
        """Delete every stored snapshot of ``instance_id``; the number of blobs deleted."""
        prefix = instance_prefix(instance_id)
        deleted = 0
        with self._errors(f"deleting {prefix}"):
            names = list(self._container.list_blob_names(name_starts_with=prefix))
            # numbered snapshots first, the latest pointer last
            for name in sorted(names, key=lambda n: n.endswith("/" + LATEST)):
                with contextlib.suppress(ResourceNotFoundError):
                    self._container.delete_blob(name)
                    deleted += 1
        return deleted

    def _download(self, name: str, what: str) -> bytes:
        with self._errors(f"reading {name}"):
            try:
                return self._container.download_blob(name).readall()
            except ResourceNotFoundError as error:
                if error_code(error) == "ContainerNotFound":
                    raise
                raise SnapshotNotFoundError(
                    f"no snapshot stored for {what} in {self.where}"
                ) from None

    # --- errors -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except RustyFlowerError:
            raise
        except AzureError as error:
            self._raise(error, doing)

    def _raise(self, error: AzureError, doing: str) -> NoReturn:
        raise_storage_error(
            error,
            doing=doing,
            where=self.where,
            container=self.container_name,
            secrets=self._secrets,
        )
