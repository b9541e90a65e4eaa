"""The lifeboat in Azure: replicas and the site lease as blobs of one container.

* ``BlobReplicaStore``: one blob per instance under ``lifeboat/<site>/instances/``
  (``core.lifeboat.replica``), the header as blob metadata; every write is conditional
  (``If-None-Match: *`` for a new blob, ``If-Match: <ETag>`` otherwise, the same for the
  delete), under the ordering rule of ``put_decision``. A listing returns the headers
  with the names, so a watchdog chooses without reading every replica.
* ``BlobLeaseStore``: the lease document as ``lifeboat/<site>/lease.json``, replaced only
  ``If-Match`` the ETag read (created ``If-None-Match: *``), so exactly one of two
  racing writers wins. (An Azure *blob lease*, the lock, is not used: its at most 60 s
  could not express a threshold of minutes, and the document must be readable by all.)

What the SDK raises while the account cannot be reached (or refuses the credentials)
becomes ``CloudUnreachableError``.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import ContainerClient, ContentSettings

from rustyflower.adapters.azure._secrets import redact
from rustyflower.adapters.azure.blob_errors import default_azure_credential
from rustyflower.core.lifeboat.lease import (
    LeaseConflictError,
    LeaseError,
    SiteLease,
    VersionedLease,
    check_site_id,
)
from rustyflower.core.lifeboat.replica import (
    CloudUnreachableError,
    PutOutcome,
    RemoveOutcome,
    Replica,
    ReplicaHeader,
    instance_name,
    instances_prefix,
    lease_name,
    put_decision,
    remove_decision,
    report_name,
)
from rustyflower.core.lifeboat.segments import SegmentedReplicas

__all__ = [
    "DEFAULT_REPLICA_CONTAINER",
    "ENV_REPLICA_ACCOUNT_URL",
    "ENV_REPLICA_CONTAINER",
    "BlobLeaseStore",
    "BlobReplicaStore",
    "replica_container",
]

ENV_REPLICA_CONTAINER = "RUSTYFLOWER_REPLICA_CONTAINER"
ENV_REPLICA_ACCOUNT_URL = "RUSTYFLOWER_REPLICA_ACCOUNT_URL"
"""Blob service URL reached with an Entra ID identity (instead of a connection string)."""
DEFAULT_REPLICA_CONTAINER = "rustyflower-lifeboat"
_ATTEMPTS = 8
_JSON = ContentSettings(content_type="application/json")


def replica_container(
    container: str = DEFAULT_REPLICA_CONTAINER,
    *,
    connection_string: str | None = None,
    account_url: str | None = None,
    credential: Any = None,
    **client_options: Any,
) -> ContainerClient:
    """The container client, from a connection string or an account URL and identity
    (``credential`` None: ``DefaultAzureCredential``, which needs azure-identity)."""
    try:
        if connection_string:
            return ContainerClient.from_connection_string(
                connection_string, container, **client_options
            )
        if account_url:
            if credential is None:
                credential = default_azure_credential()
            return ContainerClient(account_url, container, credential=credential, **client_options)
    except (ValueError, AzureError) as error:
        raise CloudUnreachableError(f"Azure Storage settings: {redact(str(error))}") from None
    raise CloudUnreachableError("Azure Storage: give a connection string or an account URL")


@contextlib.contextmanager
def _reaching(where: str, doing: str) -> Iterator[None]:
    try:
        yield
    except (ResourceModifiedError, ResourceExistsError, ResourceNotFoundError):
        raise
    except ClientAuthenticationError as error:
        _unreachable(where, doing, error)
    except AzureError as error:
        _unreachable(where, doing, error)


def _unreachable(where: str, doing: str, error: BaseException) -> NoReturn:
    text = str(error).strip().splitlines()
    raise CloudUnreachableError(
        f"Azure {where} while {doing}: {redact(text[0]) if text else type(error).__name__}"
    ) from None


class BlobReplicaStore(SegmentedReplicas):
    """``ReplicaStore`` in one Blob container (thread-safe)."""

    cloud = "azure"

    def __init__(self, container: ContainerClient, site: str) -> None:
        super().__init__()
        self.container = container
        self.site = check_site_id(site)
        self._written: dict[str, tuple[str, ReplicaHeader]] = {}
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return f"{redact(self.container.url.split('?')[0])}/lifeboat/{self.site}/"

    def put(self, header: ReplicaHeader, data: bytes) -> PutOutcome:
        name = instance_name(self.site, header.instance_id)
        with self._lock:
            known = self._written.get(name)
        with _reaching(self.where, f"writing the replica of {header.instance_id!r}"):
            for _ in range(_ATTEMPTS):
                if known is not None:
                    decision = put_decision(known[1], header)
                    if decision != "write":
                        return decision
                    options: dict[str, Any] = {
                        "overwrite": True,
                        "etag": known[0],
                        "match_condition": MatchConditions.IfNotModified,
                    }
                else:
                    options = {"overwrite": False}
                try:
                    answer = self.container.get_blob_client(name).upload_blob(
                        data, metadata=header.metadata(), content_settings=_JSON, **options
                    )
                except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError) as error:
                    if (
                        isinstance(error, ResourceNotFoundError)
                        and _code(error) == "ContainerNotFound"
                    ):
                        _unreachable(self.where, "writing a replica", error)
                    known = self._properties(name)
                    if known is None:
                        continue
                    decision = put_decision(known[1], header)
                    if decision != "write":
                        self._remember(name, known)
                        return decision
                    continue
                self._remember(name, (str(answer["etag"]), header))
                return "written"
        raise CloudUnreachableError(
            f"Azure {self.where}: gave up writing {header.instance_id!r} after "
            f"{_ATTEMPTS} conflicting writes"
        )

    def remove(self, header: ReplicaHeader) -> RemoveOutcome:
        name = instance_name(self.site, header.instance_id)
        with self._lock:
            known = self._written.get(name)
        with _reaching(self.where, f"removing the replica of {header.instance_id!r}"):
            for _ in range(_ATTEMPTS):
                # what this store wrote last saves a look (a 412 says someone wrote since)
                found = known if known is not None else self._properties(name)
                known = None
                decision = remove_decision(None if found is None else found[1], header)
                if decision != "remove" or found is None:
                    if decision == "absent":
                        self._forget(name)
                    return "absent" if decision == "remove" else decision
                try:
                    self.container.delete_blob(
                        name, etag=found[0], match_condition=MatchConditions.IfNotModified
                    )
                except ResourceNotFoundError:
                    self._forget(name)
                    return "absent"
                except ResourceModifiedError:
                    continue
                self._forget(name)
                return "removed"
        raise CloudUnreachableError(f"Azure {self.where}: gave up removing {header.instance_id!r}")

    def _properties(self, name: str) -> tuple[str, ReplicaHeader] | None:
        try:
            props = self.container.get_blob_client(name).get_blob_properties()
        except ResourceNotFoundError as error:
            if _code(error) == "ContainerNotFound":
                raise
            return None
        return str(props.etag), ReplicaHeader.from_metadata(props.metadata or {}, name)

    def _remember(self, name: str, found: tuple[str, ReplicaHeader]) -> None:
        with self._lock:
            self._written[name] = found

    def _forget(self, name: str) -> None:
        with self._lock:
            self._written.pop(name, None)

    def base_headers(self) -> list[ReplicaHeader]:
        with _reaching(self.where, "listing the replicas"):
            return [
                ReplicaHeader.from_metadata(blob.metadata or {}, blob.name)
                for blob in self.container.list_blobs(
                    name_starts_with=instances_prefix(self.site), include=["metadata"]
                )
            ]

    def read_base(self, instance_id: str) -> Replica | None:
        name = instance_name(self.site, instance_id)
        with _reaching(self.where, f"reading the replica of {instance_id!r}"):
            try:
                download = self.container.download_blob(name)
            except ResourceNotFoundError as error:
                if _code(error) == "ContainerNotFound":
                    _unreachable(self.where, "reading a replica", error)
                return None
            data = download.readall()
        props = download.properties
        header = ReplicaHeader.from_metadata(props.metadata or {}, name)
        self._remember(name, (str(props.etag), header))
        return Replica(header, data)

    # --- segments (``core.lifeboat.segments``) ------------------------------------------------

    def _write_object(self, name: str, body: bytes) -> None:
        with _reaching(self.where, f"writing segment {name}"):
            try:
                # a segment's name is new: a retried request writes the same bytes again
                self.container.upload_blob(name, body, overwrite=True, content_settings=_JSON)
            except ResourceNotFoundError as error:
                _unreachable(self.where, "writing a segment", error)

    def _list_objects(self, prefix: str) -> list[str]:
        with _reaching(self.where, f"listing {prefix}"):
            try:
                names = self.container.list_blob_names(name_starts_with=prefix)
                return [str(name) for name in names]
            except ResourceNotFoundError as error:
                _unreachable(self.where, "listing segments", error)

    def _read_object(self, name: str) -> bytes | None:
        with _reaching(self.where, f"reading segment {name}"):
            try:
                return bytes(self.container.download_blob(name).readall())
            except ResourceNotFoundError as error:
                if _code(error) == "ContainerNotFound":
                    _unreachable(self.where, "reading a segment", error)
                return None

    def _delete_objects(self, names: Sequence[str]) -> None:
        with _reaching(self.where, "deleting compacted segments"):
            for name in names:
                try:
                    self.container.delete_blob(name)
                except ResourceNotFoundError as error:
                    if _code(error) == "ContainerNotFound":
                        _unreachable(self.where, "deleting segments", error)

    def write_report(self, takeover_id: str, body: bytes) -> str:
        name = report_name(self.site, takeover_id)
        with _reaching(self.where, f"writing takeover report {takeover_id}"):
            self.container.upload_blob(name, body, overwrite=True, content_settings=_JSON)
        return name

    def read_report(self, name: str) -> bytes:
        with _reaching(self.where, f"reading takeover report {name}"):
            return bytes(self.container.download_blob(name).readall())


class BlobLeaseStore:
    """``LeaseStore`` as one blob per site in a container."""

    cloud = "azure"

    def __init__(self, container: ContainerClient) -> None:
        self.container = container

    @property
    def where(self) -> str:
        return f"{redact(self.container.url.split('?')[0])}/lifeboat/"

    def read(self, site: str) -> VersionedLease | None:
        name = lease_name(check_site_id(site))
        with _reaching(self.where, f"reading the lease of site {site!r}"):
            try:
                download = self.container.download_blob(name)
            except ResourceNotFoundError as error:
                if _code(error) == "ContainerNotFound":
                    _unreachable(self.where, "reading the lease", error)
                return None
            raw = download.readall()
        try:
            document = json.loads(raw)
        except ValueError:
            raise LeaseError(f"{name} is not JSON: not a site lease") from None
        return VersionedLease(SiteLease.from_document(document), str(download.properties.etag))

    def create(self, lease: SiteLease) -> VersionedLease:
        return self._write(lease, {"overwrite": False})

    def replace(self, lease: SiteLease, version: str) -> VersionedLease:
        return self._write(
            lease,
            {"overwrite": True, "etag": version, "match_condition": MatchConditions.IfNotModified},
        )

    def _write(self, lease: SiteLease, options: dict[str, Any]) -> VersionedLease:
        name = lease_name(lease.site)
        body = json.dumps(lease.document(), sort_keys=True).encode("utf-8")
        with _reaching(self.where, f"writing the lease of site {lease.site!r}"):
            try:
                answer = self.container.get_blob_client(name).upload_blob(
                    body, content_settings=_JSON, **options
                )
            except (ResourceExistsError, ResourceModifiedError):
                raise LeaseConflictError(
                    f"the lease of site {lease.site!r} changed since it was read"
                ) from None
            except ResourceNotFoundError as error:
                if _code(error) == "ContainerNotFound":
                    _unreachable(self.where, "writing the lease", error)
                raise LeaseConflictError(f"the lease of site {lease.site!r} is gone") from None
        return VersionedLease(lease, str(answer["etag"]))


def _code(error: AzureError) -> str | None:
    code = getattr(error, "error_code", None)
    return None if code is None else str(code)
