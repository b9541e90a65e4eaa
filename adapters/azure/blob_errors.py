"""Errors of the Azure Blob snapshot store, and the translation of the Azure SDK's errors
into them: one clear sentence that says where, while doing what, and what to do."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any, NoReturn

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from rustyflower.adapters.azure._secrets import redact
from rustyflower.core.errors import RustyFlowerError


class BlobStoreError(RustyFlowerError):
    """Azure Blob Storage answered with an error the snapshot store cannot work around."""


class BlobStoreConfigError(BlobStoreError):
    """The store is not configured well enough to reach any storage account."""


class BlobStoreUnavailableError(BlobStoreError):
    """The storage account cannot be reached (DNS, connection refused, time-out)."""


class BlobStoreAuthError(BlobStoreError):
    """The storage account refused the credentials, or the identity lacks a data role."""


class ContainerNotFoundError(BlobStoreError):
    """The snapshot container does not exist (and the store was not asked to create it)."""


class SnapshotNotFoundError(BlobStoreError, LookupError):
    """No snapshot is stored for that instance (or that sequence number)."""


class SnapshotHeaderMismatchError(BlobStoreError, ValueError):
    """The bytes given to ``put`` are the snapshot of another instance or sequence number."""


def raise_storage_error(
    error: AzureError, *, doing: str, where: str, container: str, secrets: Iterable[str]
) -> NoReturn:
    """Raise the store's error for an error of the Azure SDK met while ``doing``."""
    reason = redact(_reason(error), secrets)
    code = error_code(error)
    if isinstance(error, ResourceNotFoundError) and code == "ContainerNotFound":
        raise ContainerNotFoundError(
            f"container {container!r} does not exist at {where} ({doing}): "
            "create it (the Bicep templates do), or build the store with "
            "create_container=True"
        ) from None
    status = getattr(error, "status_code", None)
    if isinstance(error, ClientAuthenticationError) or status in (401, 403):
        hint = (
            " (the identity needs the 'Storage Blob Data Owner' or 'Storage Blob Data "
            "Contributor' role on the account)"
            if code == "AuthorizationPermissionMismatch"
            else ""
        )
        raise BlobStoreAuthError(
            f"Azure Storage at {where} refused the credentials while {doing}: {reason}{hint}"
        ) from None
    if isinstance(error, ServiceRequestError | ServiceResponseError):
        raise BlobStoreUnavailableError(
            f"cannot reach Azure Storage at {where} while {doing}: {reason}"
        ) from None
    raise BlobStoreError(f"Azure Storage at {where} failed while {doing}: {reason}") from None


def error_code(error: AzureError) -> str | None:
    code = getattr(error, "error_code", None)
    if code is None and isinstance(error, HttpResponseError) and error.response is not None:
        headers = getattr(error.response, "headers", None) or {}
        code = headers.get("x-ms-error-code")
    return None if code is None else str(code)


def _reason(error: AzureError) -> str:
    code = error_code(error)
    text = (getattr(error, "message", None) or str(error)).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    return f"{code}: {first}" if code and code not in first else first


def identity_class(name: str) -> Any:
    try:
        module = importlib.import_module("azure.identity")
    except ImportError:
        raise BlobStoreConfigError(
            f"{name} needs the azure-identity package (pip install azure-identity), or "
            "pass a credential / use a connection string"
        ) from None
    return getattr(module, name)


def default_azure_credential() -> Any:
    """``azure.identity.DefaultAzureCredential()``, imported only when it is needed."""
    return identity_class("DefaultAzureCredential")()
