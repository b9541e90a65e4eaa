"""The Redis runner from Python: ``Client`` and ``InstanceHandle`` (public as rustyflower.client).

A thin face over the ``Conductor`` and the ``RedisStore``: it resolves the connection as
the CLI does, turns a lost connection into ``RedisUnavailableError``, and waits for
results on the store's finish channel (``_completion``) instead of polling.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, get_args

import redis

from rustyflower.adapters.redis._completion import (
    DEFAULT_RECHECK_SECONDS,
    ResultTimeoutError,
    wait_finished,
)
from rustyflower.adapters.redis.conductor import Conductor
from rustyflower.adapters.redis.connection import (
    DEFAULT_DATA_DIR,
    RedisUnavailableError,
    connect,
    redact,
    resolve_url,
)
from rustyflower.adapters.redis.keys import Keyspace, Priority
from rustyflower.adapters.redis.schedule_store import ScheduleStore
from rustyflower.adapters.redis.store import InstanceInfo, Placement, RedisStore
from rustyflower.core.activities import ActivityRegistry
from rustyflower.core.engine import HistoryEntry, Snapshot, Status
from rustyflower.core.errors import DefinitionError, Problem, RustyFlowerError
from rustyflower.core.model import FlowDefinition
from rustyflower.core.settings import SettingsError, setting_text, setting_whole_number
from rustyflower.core.snapshot import SnapshotKeys
from rustyflower.core.snapshot.document import decode_snapshot, encode_snapshot

PREFIX_VARIABLE = "RUSTYFLOWER_PREFIX"
DATA_DIR_VARIABLE = "RUSTYFLOWER_DATA_DIR"
SHARDS_VARIABLE = "RUSTYFLOWER_SHARDS"
DEFAULT_PREFIX = "rf"


class InstanceFailedError(RustyFlowerError):
    """``result()`` of an instance that failed or was cancelled: no output to give."""

    def __init__(self, status: InstanceStatus) -> None:
        self.instance_id = status.instance_id
        self.status = status.status
        self.error = status.error
        self.cause = status.cause
        detail = ": ".join(part for part in (status.error, status.cause) if part)
        super().__init__(
            f"instance {status.instance_id!r} {status.status}" + (f" ({detail})" if detail else "")
        )


@dataclass(frozen=True)
class InstanceStatus:
    """Where an instance stands, read at one moment."""

    instance_id: str
    flow: str
    version: str
    status: Status
    held: bool
    positions: tuple[str, ...]
    """The states its live branches are at (empty once it finished)."""
    output: Any
    error: str | None
    cause: str | None
    seq: int
    """How many transitions it has taken."""
    epoch: int
    owner: str
    """``local``, or the cloud it failed over to (``aws``, ``azure``)."""
    priority: Priority
    created_at: str
    updated_at: str

    @property
    def finished(self) -> bool:
        return self.status != "running"

    @classmethod
    def of(cls, info: InstanceInfo, snapshot: Snapshot) -> InstanceStatus:
        state = snapshot.state
        return cls(
            instance_id=snapshot.instance_id,
            flow=snapshot.definition.name,
            version=snapshot.definition.version,
            status=snapshot.status,
            held=state.held,
            positions=tuple(snapshot.positions),
            output=state.output,
            error=state.error,
            cause=state.cause,
            seq=snapshot.seq,
            epoch=max(info.epoch, snapshot.epoch),
            owner=info.owner,
            priority=info.priority,
            created_at=info.created_at,
            updated_at=snapshot.updated_at,
        )


class Client:
    """Register flows, start instances and operate them on a Redis runner.

    Make one with ``Client.connect()`` and keep it: it holds a connection pool and a
    cache of definitions and snapshots. Close it (or use it in a ``with`` block) to
    release its connections.
    """

    def __init__(self, store: RedisStore, url: str) -> None:
        self._store = store
        self._conductor = Conductor(store)
        self._url = url

    @classmethod
    def connect(
        cls,
        url: str | None = None,
        *,
        prefix: str | None = None,
        keys: SnapshotKeys | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        shards: int | None = None,
    ) -> Client:
        """Connect as the ``rustyflower`` command does.

        ``url``: ``redis://``, ``rediss://`` (TLS) or ``unix://``; None: the
        ``RUSTYFLOWER_REDIS_URL`` setting, else the ``rustyflower dev`` server of
        ``data_dir`` (``RUSTYFLOWER_DATA_DIR``, default ``.rustyflower``). ``prefix``
        (``RUSTYFLOWER_PREFIX``, default ``rf``) and ``shards`` (``RUSTYFLOWER_SHARDS``,
        default 1) must match the workers'. ``keys`` sign and verify snapshots; None:
        ``RUSTYFLOWER_SIGNING_KEYS`` and the other snapshot key settings.
        """
        environ = os.environ
        try:
            chosen_prefix = prefix or setting_text(environ, PREFIX_VARIABLE) or DEFAULT_PREFIX
            chosen_shards = (
                shards
                if shards is not None
                else setting_whole_number(environ, SHARDS_VARIABLE, 1, 1)
            )
            keyspace = Keyspace(prefix=chosen_prefix, shards=chosen_shards)
            snapshot_keys = keys if keys is not None else SnapshotKeys.from_env(environ)
        except (SettingsError, ValueError) as error:
            raise RustyFlowerError(f"client settings: {error}") from None
        folder = Path(data_dir or setting_text(environ, DATA_DIR_VARIABLE) or DEFAULT_DATA_DIR)
        resolved = resolve_url(url, folder)
        return cls(RedisStore(connect(resolved), keyspace, snapshot_keys), resolved)

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The server's URL, without its password."""
        return redact(self._url)

    @property
    def prefix(self) -> str:
        return self._store.keys.prefix

    def close(self) -> None:
        self._store.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r}, prefix={self.prefix!r})"

    @contextlib.contextmanager
    def _talking(self) -> Iterator[None]:
        """Redis's own connection errors become one RustyFlower error naming the server."""
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise RedisUnavailableError(f"Redis at {self.url} went away ({error})") from None

    # --- flows ----------------------------------------------------------------------------

    def register(
        self, definition: FlowDefinition, *, activities: ActivityRegistry | None = None
    ) -> bool:
        """Register a flow version (and sync the schedules it declares); False when that
        exact version was registered already.

        With ``activities``, each task's activity must be there, and their default retry
        and timeout are copied into the tasks that set none (as ``flows register
        --activities`` does). A changed flow needs a new version: registering other
        content under a registered version raises ``VersionConflictError``.
        """
        if activities is not None:
            missing = activities.missing(definition)
            if missing:
                raise DefinitionError(
                    [
                        Problem("activities", f"no activity {name!r} is registered")
                        for name in missing
                    ],
                    definition.key,
                )
            definition = activities.apply_defaults(definition)
        with self._talking():
            created = self._store.register(definition)
            ScheduleStore(self._store.client, self._store.keys).sync_flow(definition)
        return created

    # --- starting -------------------------------------------------------------------------

    def start(
        self,
        flow: str,
        input: Any = None,
        *,
        id: str | None = None,
        version: str | None = None,
        priority: Priority = "normal",
        concurrency_key: str | None = None,
    ) -> InstanceHandle:
        """Start an instance of a registered flow (latest version unless ``version``).

        With an ``id`` that exists already, nothing starts: the handle is that instance's.
        """
        placement = _placement(priority, concurrency_key)
        with self._talking():
            snapshot = self._conductor.start(
                flow, input, version=version, instance_id=id, placement=placement
            )
        return InstanceHandle(self, snapshot.instance_id)

    def start_many(
        self,
        flow: str,
        inputs: Sequence[Any],
        *,
        version: str | None = None,
        priority: Priority = "normal",
        concurrency_key: str | None = None,
    ) -> list[InstanceHandle]:
        """One instance per input, committed in batches (far fewer round trips)."""
        placement = _placement(priority, concurrency_key)
        with self._talking():
            started = self._conductor.start_many(
                flow, list(inputs), version=version, placement=placement
            )
        return [InstanceHandle(self, snapshot.instance_id) for snapshot in started]

    # --- instances ------------------------------------------------------------------------

    def instance(self, instance_id: str) -> InstanceHandle:
        """The handle of an existing instance (``UnknownInstanceError`` otherwise)."""
        with self._talking():
            self._store.info(instance_id)
        return InstanceHandle(self, instance_id)

    def instances(
        self, *, flow: str | None = None, status: Status | None = None, limit: int = 100
    ) -> list[InstanceHandle]:
        """Instances of the store, most recently changed first."""
        if status is not None and status not in get_args(Status):
            raise ValueError(f"status {status!r}: use one of {', '.join(get_args(Status))}")
        with self._talking():
            infos = self._store.list_instances(status=status, flow=flow, limit=limit)
        return [InstanceHandle(self, info.instance_id) for info in infos]

    def status(self, instance_id: str) -> InstanceStatus:
        with self._talking():
            info = self._store.info(instance_id)
            return InstanceStatus.of(info, self._store.load(instance_id, fresh=True))

    def history(self, instance_id: str) -> list[HistoryEntry]:
        """Every transition the store recorded (up to its limit), oldest first."""
        with self._talking():
            entries = self._store.history(instance_id)
        return [
            HistoryEntry(
                seq=entry["seq"],
                at=entry["at"],
                kind=entry["kind"],
                position=entry.get("position", ""),
                detail=entry.get("detail"),
            )
            for entry in entries
        ]

    def signal(self, instance_id: str, event: str, data: Any = None) -> None:
        """Deliver an external event to an instance that waits for it, wherever it lives
        (an instance that failed over is reached in its cloud, as ``rustyflower signal``).

        Raises ``NoWaiterError`` when nothing waits for ``event``.
        """
        with self._talking():
            if self._signal_elsewhere(instance_id, event, data):
                return
            self._conductor.signal(instance_id, event, data)

    def _signal_elsewhere(self, instance_id: str, event: str, data: Any) -> bool:
        """Deliver to an instance that lives in a cloud; False when it is here.

        The runner knows no cloud: the public client composes the lifeboat's routing in.
        """
        return False

    def hold(self, instance_id: str, reason: str | None = None) -> None:
        """Pause an instance: nothing new is dispatched until ``release``."""
        with self._talking():
            self._conductor.hold(instance_id, reason)

    def release(self, instance_id: str) -> None:
        with self._talking():
            self._conductor.release(instance_id)

    def cancel(self, instance_id: str, reason: str | None = None) -> None:
        with self._talking():
            self._conductor.cancel(instance_id, reason)

    def retry(self, instance_id: str) -> None:
        """Run a failed instance again from the state that failed, with that state's input."""
        with self._talking():
            self._conductor.retry_failed(instance_id)

    def snapshot(self, instance_id: str) -> bytes:
        """The instance as a portable snapshot, signed (and encrypted) as ``keys`` say.

        The stored bytes are verified with this client's keys first, so a snapshot they
        would refuse is never handed out; with a signing key configured they are sealed
        again with it (a store written under an older key gives a snapshot signed with
        the active one).
        """
        with self._talking():
            stored = self._store.raw_snapshot(instance_id)
        keys = self._store.snapshot_keys
        value = decode_snapshot(stored, keys)
        return encode_snapshot(value, keys) if keys.active_signing_key is not None else stored

    def wait(
        self,
        instance_id: str,
        timeout: float | None = None,
        *,
        recheck: float = DEFAULT_RECHECK_SECONDS,
    ) -> InstanceStatus:
        """Block until the instance finished (however it ended) and return its status.

        Raises ``ResultTimeoutError`` after ``timeout`` seconds (None: no limit). The wait
        is a subscription to the instance's finish, not a loop of reads; ``recheck`` is
        how often the status is read anyway, in case a notice was lost with a connection.
        """
        with self._talking():
            final = wait_finished(self._store, instance_id, timeout, recheck)
            return InstanceStatus.of(self._store.info(instance_id), final)

    def result(self, instance_id: str, timeout: float | None = None) -> Any:
        """The output of the instance once it succeeded.

        Raises ``InstanceFailedError`` when it failed or was cancelled, and
        ``ResultTimeoutError`` when it is still running after ``timeout`` seconds.
        """
        final = self.wait(instance_id, timeout)
        if final.status != "succeeded":
            raise InstanceFailedError(final)
        return final.output


class InstanceHandle:
    """One instance: the ``Client`` operations without repeating its id."""

    def __init__(self, client: Client, instance_id: str) -> None:
        self._client = client
        self._id = instance_id

    @property
    def id(self) -> str:
        return self._id

    def __repr__(self) -> str:
        return f"InstanceHandle({self._id!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, InstanceHandle)
            and other._id == self._id
            and other._client is self._client
        )

    def __hash__(self) -> int:
        return hash(self._id)

    def status(self) -> InstanceStatus:
        return self._client.status(self._id)

    def history(self) -> list[HistoryEntry]:
        return self._client.history(self._id)

    def signal(self, event: str, data: Any = None) -> None:
        self._client.signal(self._id, event, data)

    def hold(self, reason: str | None = None) -> None:
        self._client.hold(self._id, reason)

    def release(self) -> None:
        self._client.release(self._id)

    def cancel(self, reason: str | None = None) -> None:
        self._client.cancel(self._id, reason)

    def retry(self) -> None:
        self._client.retry(self._id)

    def snapshot(self) -> bytes:
        return self._client.snapshot(self._id)

    def wait(
        self, timeout: float | None = None, *, recheck: float = DEFAULT_RECHECK_SECONDS
    ) -> InstanceStatus:
        return self._client.wait(self._id, timeout, recheck=recheck)

    def result(self, timeout: float | None = None) -> Any:
        return self._client.result(self._id, timeout)


def _placement(priority: str, concurrency_key: str | None) -> Placement:
    allowed: tuple[str, ...] = get_args(Priority)
    if priority not in allowed:
        raise ValueError(f"priority {priority!r}: use one of {', '.join(allowed)}")
    return Placement(priority=priority, concurrency_key=concurrency_key)  # type: ignore[arg-type]


__all__ = [
    "Client",
    "InstanceFailedError",
    "InstanceHandle",
    "InstanceStatus",
    "ResultTimeoutError",
]
