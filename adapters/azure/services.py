"""The service tasks in Azure: activities carrying them out with the Azure SDKs.

=================  ============================================================
``queue.send``      Azure Storage Queue ``QueueClient.send_message`` (the JSON text,
                    base64-encoded as a Functions queue trigger reads it)
``event.publish``   Event Grid ``EventGridPublisherClient.send`` of a CloudEvent (type,
                    source, the detail as data) to the bus's topic
``object.put/get``  Blob Storage ``upload_blob(overwrite=True)`` / ``download_blob`` in
                    the store's container
``http.call``       the site's HTTP client (adapters/services/http.py)
=================  ============================================================

Queues and containers are named ``RUSTYFLOWER_SERVICES_PREFIX`` + name in the account of
``RUSTYFLOWER_SERVICES_CONNECTION`` (a connection string: Azurite, or an account key) or
at ``RUSTYFLOWER_SERVICES_QUEUE_URL`` and ``RUSTYFLOWER_SERVICES_BLOB_URL`` (the account's
endpoints, reached with the app's managed identity); a bus's topic endpoint is in
``RUSTYFLOWER_EVENT_TOPICS`` (JSON, bus -> URL) and its access key, when not the managed
identity, in ``RUSTYFLOWER_EVENT_TOPIC_KEYS`` (JSON, bus -> key). The SDKs' errors
become the portable ones (:func:`portable_failure`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from rustyflower.adapters.azure.blob_errors import default_azure_credential
from rustyflower.core.services import (
    EventPublish,
    HttpCall,
    ObjectGet,
    ObjectPut,
    QueueSend,
    ServiceAccessDenied,
    ServiceFailed,
    ServiceFailure,
    ServiceNotFound,
    ServiceThrottled,
    ServiceUnavailable,
    failure_for_status,
)
from rustyflower.core.services.calls import HttpResponse

ENV_CONNECTION: Final = "RUSTYFLOWER_SERVICES_CONNECTION"
ENV_QUEUE_URL: Final = "RUSTYFLOWER_SERVICES_QUEUE_URL"
ENV_BLOB_URL: Final = "RUSTYFLOWER_SERVICES_BLOB_URL"
ENV_NAME_PREFIX: Final = "RUSTYFLOWER_SERVICES_PREFIX"
ENV_TOPICS: Final = "RUSTYFLOWER_EVENT_TOPICS"
ENV_TOPIC_KEYS: Final = "RUSTYFLOWER_EVENT_TOPIC_KEYS"
SETTINGS: Final = (
    ENV_CONNECTION,
    ENV_QUEUE_URL,
    ENV_BLOB_URL,
    ENV_NAME_PREFIX,
    ENV_TOPICS,
    ENV_TOPIC_KEYS,
)


class ServicesConfigError(ServiceFailed):
    """The app settings do not say where a service task's resource is."""


@dataclass(frozen=True)
class AzureServiceSettings:
    connection: str | None = None
    queue_url: str | None = None
    blob_url: str | None = None
    name_prefix: str = ""
    topics: Mapping[str, str] = field(default_factory=dict)
    topic_keys: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> AzureServiceSettings:
        return cls(
            connection=environ.get(ENV_CONNECTION, "").strip() or None,
            queue_url=environ.get(ENV_QUEUE_URL, "").strip() or None,
            blob_url=environ.get(ENV_BLOB_URL, "").strip() or None,
            name_prefix=environ.get(ENV_NAME_PREFIX, "").strip(),
            topics=_json_map(environ, ENV_TOPICS),
            topic_keys=_json_map(environ, ENV_TOPIC_KEYS),
        )


def _json_map(environ: Mapping[str, str], name: str) -> dict[str, str]:
    text = environ.get(name, "").strip()
    if not text:
        return {}
    try:
        found = json.loads(text)
    except ValueError:
        raise ServicesConfigError(f"{name} is not JSON (an object of names to text)") from None
    if not isinstance(found, dict) or not all(isinstance(v, str) for v in found.values()):
        raise ServicesConfigError(f"{name} is an object of names to text")
    return {str(key): value for key, value in found.items()}


def portable_failure(error: Exception, doing: str) -> ServiceFailure:
    """The portable failure an Azure SDK error stands for."""
    from azure.core.exceptions import (  # noqa: PLC0415 - the SDK only where it runs
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )

    text = f"{doing}: {error}"
    if isinstance(error, ResourceNotFoundError):
        return ServiceNotFound(text)
    if isinstance(error, ClientAuthenticationError):
        return ServiceAccessDenied(text)
    if isinstance(error, ServiceRequestError | ServiceResponseError):
        return ServiceUnavailable(text)
    if isinstance(error, HttpResponseError) and error.status_code:
        status = int(error.status_code)
        if status == 503 and "ServerBusy" in str(getattr(error, "error_code", "")):
            return ServiceThrottled(text)
        return failure_for_status(status)(text)
    return ServiceFailed(text)


@contextmanager
def _sdk(doing: str) -> Iterator[None]:
    try:
        yield
    except ServiceFailure:
        raise
    except Exception as error:
        raise portable_failure(error, doing) from None


class AzureBackends:
    """:class:`~rustyflower.core.services.calls.ServiceBackends` of the Function App."""

    def __init__(
        self,
        settings: AzureServiceSettings,
        http: Callable[[HttpCall], HttpResponse],
        credential: Any = None,
    ) -> None:
        self.settings = settings
        self._http = http
        self._credential = credential
        self._blob_service: Any = None

    # --- clients ------------------------------------------------------------------------

    def _managed_identity(self) -> Any:
        if self._credential is None:
            self._credential = default_azure_credential()
        return self._credential

    def _queue(self, name: str) -> Any:
        from azure.storage.queue import (  # noqa: PLC0415
            BinaryBase64DecodePolicy,
            BinaryBase64EncodePolicy,
            QueueClient,
        )

        queue = self.settings.name_prefix + name
        encode, decode = BinaryBase64EncodePolicy(), BinaryBase64DecodePolicy()
        if self.settings.connection:
            return QueueClient.from_connection_string(
                self.settings.connection,
                queue,
                message_encode_policy=encode,
                message_decode_policy=decode,
            )
        if self.settings.queue_url:
            return QueueClient(
                self.settings.queue_url,
                queue,
                credential=self._managed_identity(),
                message_encode_policy=encode,
                message_decode_policy=decode,
            )
        raise ServicesConfigError(f"queue {name!r}: set {ENV_CONNECTION} or {ENV_QUEUE_URL}")

    def _container(self, name: str) -> Any:
        from azure.storage.blob import BlobServiceClient  # noqa: PLC0415

        if self._blob_service is None:
            if self.settings.connection:
                self._blob_service = BlobServiceClient.from_connection_string(
                    self.settings.connection
                )
            elif self.settings.blob_url:
                self._blob_service = BlobServiceClient(
                    self.settings.blob_url, credential=self._managed_identity()
                )
            else:
                raise ServicesConfigError(f"store {name!r}: set {ENV_CONNECTION} or {ENV_BLOB_URL}")
        return self._blob_service.get_container_client(self.settings.name_prefix + name)

    def _topic(self, bus: str) -> Any:
        from azure.core.credentials import AzureKeyCredential  # noqa: PLC0415
        from azure.eventgrid import EventGridPublisherClient  # noqa: PLC0415

        endpoint = self.settings.topics.get(bus)
        if not endpoint:
            raise ServicesConfigError(f"bus {bus!r} has no Event Grid topic in {ENV_TOPICS}")
        key = self.settings.topic_keys.get(bus)
        credential = AzureKeyCredential(key) if key else self._managed_identity()
        return EventGridPublisherClient(endpoint, credential)

    # --- the calls ------------------------------------------------------------------------

    def send_message(self, request: QueueSend, key: str) -> str:
        with _sdk(f"sending to queue {request.queue!r}"):
            sent = self._queue(request.queue).send_message(request.body.encode("utf-8"))
        return str(sent.id)

    def publish_event(self, request: EventPublish, key: str) -> str:
        from azure.core.messaging import CloudEvent  # noqa: PLC0415

        # the idempotency key makes the id: Event Grid subscribers deduplicate by id
        event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, key)) if key else str(uuid.uuid4())
        event = CloudEvent(source=request.source, type=request.type, data=request.detail)
        event.id = event_id
        with _sdk(f"publishing on bus {request.bus!r}"):
            self._topic(request.bus).send([event])
        return event_id

    def put_object(self, request: ObjectPut, key: str) -> str:
        from azure.storage.blob import ContentSettings  # noqa: PLC0415

        with _sdk(f"putting object {request.key!r} in store {request.store!r}"):
            blob = self._container(request.store).get_blob_client(request.key)
            answer = blob.upload_blob(
                request.data,
                overwrite=True,
                content_settings=ContentSettings(content_type=request.content_type),
            )
        return str(answer.get("etag"))

    def get_object(self, request: ObjectGet) -> bytes:
        with _sdk(f"getting object {request.key!r} of store {request.store!r}"):
            data = self._container(request.store).download_blob(request.key).readall()
        return bytes(data)

    def http(self, request: HttpCall) -> HttpResponse:
        return self._http(request)


__all__ = [
    "ENV_BLOB_URL",
    "ENV_CONNECTION",
    "ENV_NAME_PREFIX",
    "ENV_QUEUE_URL",
    "ENV_TOPICS",
    "ENV_TOPIC_KEYS",
    "SETTINGS",
    "AzureBackends",
    "AzureServiceSettings",
    "ServicesConfigError",
    "portable_failure",
]
