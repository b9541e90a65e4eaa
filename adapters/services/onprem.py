"""The service tasks on-premises: Redis streams, a folder or Redis for objects, urllib.

=================  ==================================================================
``queue.send``      ``XADD <prefix>:{queue:<name>} * body <JSON text>``
``event.publish``   ``XADD <prefix>:{events:<bus>} * type .. source .. detail <JSON text>``
                    (a pub-stream: readers follow it with ``XREAD``/``XREADGROUP``)
``object.put/get``  ``<folder>/<store>/<key>`` when a folder is given, else the Redis
                    string ``<prefix>:{objects:<store>}:<key>``
``http.call``       :class:`~.http.UrllibHttp`
=================  ==================================================================

Sends and publishes are idempotent per call: the idempotency key of the call (the same
when a call runs again after a crash or a failover) is remembered next to the stream for
a day, and a call that comes again gets the id of the message it sent the first time.
The braces are Redis Cluster hash tags: a stream and its keys share a slot.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import redis

from rustyflower.adapters.services.http import UrllibHttp
from rustyflower.core.services import (
    EventPublish,
    HttpCall,
    ObjectGet,
    ObjectPut,
    QueueSend,
    ServiceAccessDenied,
    ServiceNotFound,
    ServiceUnavailable,
)
from rustyflower.core.services.calls import HttpResponse

SENT_TTL_SECONDS: Final = 86_400
"""How long a call's idempotency key is remembered next to its stream."""

_SEND_ONCE: Final = """
if ARGV[1] ~= '' then
  local sent = redis.call('GET', KEYS[2])
  if sent then return sent end
end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
if ARGV[1] ~= '' then redis.call('SET', KEYS[2], id, 'EX', tonumber(ARGV[2])) end
return id
"""


def queue_stream(prefix: str, queue: str) -> str:
    """The stream a queue's messages go to."""
    return f"{prefix}:{{queue:{queue}}}"


def event_stream(prefix: str, bus: str) -> str:
    """The pub-stream a bus's events go to."""
    return f"{prefix}:{{events:{bus}}}"


def object_key(prefix: str, store: str, key: str) -> str:
    """The Redis key of an object (when objects are kept in Redis)."""
    return f"{prefix}:{{objects:{store}}}:{key}"


def entity_tag(data: bytes) -> str:
    """The quoted MD5 of the bytes: what S3 answers for a plain put of the same bytes."""
    return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'


@contextmanager
def _redis_errors(doing: str) -> Iterator[None]:
    try:
        yield
    except redis.AuthenticationError as error:
        raise ServiceAccessDenied(f"{doing}: {error}") from None
    except redis.ResponseError as error:
        if "NOPERM" in str(error) or "NOAUTH" in str(error):
            raise ServiceAccessDenied(f"{doing}: {error}") from None
        raise
    except (redis.ConnectionError, redis.TimeoutError) as error:
        raise ServiceUnavailable(f"{doing}: {error}") from None


class DirectoryObjects:
    """Objects as files: ``<root>/<store>/<key>`` (a key's ``/`` makes folders)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()

    def path(self, store: str, key: str) -> Path:
        path = (self.root / store / key).resolve()
        if not path.is_relative_to(self.root / store):  # keys are checked; this is the proof
            raise ServiceAccessDenied(f"object key {key!r} leaves store {store!r}")
        return path

    def put(self, store: str, key: str, data: bytes) -> str:
        path = self.path(store, key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # a reader never sees half an object: write beside it, then rename over it
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".put-")
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            os.replace(temporary, path)
        except PermissionError as error:
            raise ServiceAccessDenied(f"cannot write {path}: {error}") from None
        except IsADirectoryError:
            raise ServiceNotFound(f"{key!r} of store {store!r} is a folder") from None
        return entity_tag(data)

    def get(self, store: str, key: str) -> bytes:
        path = self.path(store, key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ServiceNotFound(f"store {store!r} has no object {key!r}") from None
        except PermissionError as error:
            raise ServiceAccessDenied(f"cannot read {path}: {error}") from None


class RedisObjects:
    """Objects as Redis strings, next to the runner's data."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def put(self, store: str, key: str, data: bytes) -> str:
        with _redis_errors(f"putting object {key!r} in store {store!r}"):
            self.client.set(object_key(self.prefix, store, key), data)
        return entity_tag(data)

    def get(self, store: str, key: str) -> bytes:
        with _redis_errors(f"getting object {key!r} of store {store!r}"):
            found = self.client.get(object_key(self.prefix, store, key))
        if found is None:
            raise ServiceNotFound(f"store {store!r} has no object {key!r}")
        return found if isinstance(found, bytes) else str(found).encode("utf-8")


class OnPremBackends:
    """:class:`~rustyflower.core.services.calls.ServiceBackends` of the site."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "rf",
        *,
        objects_dir: Path | str | None = None,
        http: Callable[[HttpCall], HttpResponse] | None = None,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.objects: DirectoryObjects | RedisObjects = (
            DirectoryObjects(objects_dir)
            if objects_dir is not None
            else RedisObjects(client, prefix)
        )
        self.http_client = http or UrllibHttp()
        self._send_once: Any = client.register_script(_SEND_ONCE)

    def _add_once(self, stream: str, key: str, fields: list[str], doing: str) -> str:
        sent = f"{stream}:sent:{key}"
        with _redis_errors(doing):
            found = self._send_once(keys=[stream, sent], args=[key, SENT_TTL_SECONDS, *fields])
        return found.decode() if isinstance(found, bytes) else str(found)

    def send_message(self, request: QueueSend, key: str) -> str:
        stream = queue_stream(self.prefix, request.queue)
        return self._add_once(
            stream, key, ["body", request.body], f"sending to queue {request.queue!r}"
        )

    def publish_event(self, request: EventPublish, key: str) -> str:
        stream = event_stream(self.prefix, request.bus)
        fields = ["type", request.type, "source", request.source, "detail", request.detail_text]
        return self._add_once(stream, key, fields, f"publishing on bus {request.bus!r}")

    def put_object(self, request: ObjectPut, key: str) -> str:
        return self.objects.put(request.store, request.key, request.data)

    def get_object(self, request: ObjectGet) -> bytes:
        return self.objects.get(request.store, request.key)

    def http(self, request: HttpCall) -> HttpResponse:
        return self.http_client(request)
