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
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, get_args

import redis

from rustyflower.adapters.redis._completion import (
    DEFAULT_RECHECK_SECONDS,
    Progress,
    ResultTimeoutError,
    wait_finished,
)
from rustyflower.adapters.redis._status import InstanceStatus
from rustyflower.adapters.redis.conductor import Conductor
from rustyflower.adapters.redis.connection import (
    DEFAULT_DATA_DIR,
    RedisUnavailableError,
    connect,
    redact,
    resolve_url,
)
from rustyflower.adapters.redis.event_log import read_report
from rustyflower.adapters.redis.fleet import fleet_report
from rustyflower.adapters.redis.keys import Keyspace, Priority
from rustyflower.adapters.redis.listing import MAX_PAGE, InstancePage, page_instances
from rustyflower.adapters.redis.runner_stats import RunnerStats, read_stats
from rustyflower.adapters.redis.schedule_store import ScheduleStore, ScheduleView
from rustyflower.adapters.redis.step_log import StepVisit, read_steps
from rustyflower.adapters.redis.store import Placement, RedisStore
from rustyflower.adapters.redis.webhook_store import WebhookStore
from rustyflower.core.activities import ActivityRegistry
from rustyflower.core.engine import HistoryEntry, Status, Transition
from rustyflower.core.errors import DefinitionError, Problem, RustyFlowerError
from rustyflower.core.model import FlowDefinition
from rustyflower.core.reports import Report
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
class SignalReceipt:
    """What ``signal`` did: delivered here (``status`` tells where the instance now
    stands) or to the cloud the instance failed over to (``cloud``, ``detail``)."""

    instance_id: str
    event: str
    status: InstanceStatus | None
    cloud: str | None = None
    detail: str | None = None


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

        With an ``id`` that exists already, nothing starts: the handle is that instance's
        (its ``created`` is False).
        """
        placement = _placement(priority, concurrency_key)
        with self._talking():
            snapshot, created = self._conductor.start_or_find(
                flow, input, version=version, instance_id=id, placement=placement
            )
        return InstanceHandle(self, snapshot.instance_id, created=created)

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
        return [InstanceHandle(self, snapshot.instance_id, created=True) for snapshot in started]

    # --- instances ------------------------------------------------------------------------

    def instance(self, instance_id: str) -> InstanceHandle:
        """The handle of an existing instance (``UnknownInstanceError`` otherwise)."""
        with self._talking():
            self._store.info(instance_id)
        return InstanceHandle(self, instance_id)

    def instances(
        self, *, flow: str | None = None, status: Status | None = None, limit: int = 100
    ) -> list[InstanceHandle]:
        """Instances of the store, most recently started first (``list_instances`` pages)."""
        if status is not None and status not in get_args(Status):
            raise ValueError(f"status {status!r}: use one of {', '.join(get_args(Status))}")
        if limit < 1:
            raise ValueError("limit must be 1 or more")
        found: list[InstanceHandle] = []
        cursor: str | None = None
        while len(found) < limit:
            page = self.list_instances(
                flow=flow, status=status, limit=min(MAX_PAGE, limit - len(found)), cursor=cursor
            )
            found += [InstanceHandle(self, info.instance_id) for info in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
        return found

    def list_instances(
        self,
        *,
        flow: str | None = None,
        status: Status | None = None,
        held: bool | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> InstancePage:
        """One page of instances, most recently started first: ``items`` and the
        ``next_cursor`` to pass for the next page (None after the last one).

        ``limit`` is 1 to 1000; a ``cursor`` this client did not hand out raises
        ``CursorError``.
        """
        with self._talking():
            return page_instances(
                self._store.indexes,
                self._store.infos,
                status=status,
                flow=flow,
                held=held,
                limit=limit,
                cursor=cursor,
            )

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

    def signal(self, instance_id: str, event: str, data: Any = None) -> SignalReceipt:
        """Deliver an external event to an instance that waits for it, wherever it lives
        (an instance that failed over is reached in its cloud, as ``rustyflower signal``).

        Raises ``NoWaiterError`` when nothing waits for ``event``.
        """
        with self._talking():
            elsewhere = self._signal_elsewhere(instance_id, event, data)
            if elsewhere is not None:
                cloud, detail = elsewhere
                return SignalReceipt(instance_id, event, None, cloud, detail or None)
            transition = self._conductor.signal(instance_id, event, data)
            return SignalReceipt(instance_id, event, self._status_after(transition))

    def _signal_elsewhere(self, instance_id: str, event: str, data: Any) -> tuple[str, str] | None:
        """Deliver to an instance that lives in a cloud: (cloud, detail); None when it is here.

        The runner knows no cloud: the public client composes the lifeboat's routing in.
        """
        return None

    def hold(self, instance_id: str, reason: str | None = None) -> InstanceStatus:
        """Pause an instance: nothing new is dispatched until ``release``."""
        with self._talking():
            return self._status_after(self._conductor.hold(instance_id, reason))

    def release(self, instance_id: str) -> InstanceStatus:
        with self._talking():
            return self._status_after(self._conductor.release(instance_id))

    def cancel(self, instance_id: str, reason: str | None = None) -> InstanceStatus:
        with self._talking():
            return self._status_after(self._conductor.cancel(instance_id, reason))

    def retry(self, instance_id: str) -> InstanceStatus:
        """Run a failed instance again from the state that failed, with that state's input."""
        with self._talking():
            return self._status_after(self._conductor.retry_failed(instance_id))

    def _status_after(self, transition: Transition) -> InstanceStatus:
        snapshot = transition.snapshot
        return InstanceStatus.of(self._store.info(snapshot.instance_id), snapshot)

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
        on_progress: Progress | None = None,
    ) -> InstanceStatus:
        """Block until the instance finished (however it ended) and return its status.

        Raises ``ResultTimeoutError`` after ``timeout`` seconds (None: no limit). The wait
        is a subscription to the instance's finish, not a loop of reads; ``recheck`` is
        how often the status is read anyway, in case a notice was lost with a connection,
        and ``on_progress`` is given what that read found while the instance runs.
        """
        with self._talking():
            final = wait_finished(self._store, instance_id, timeout, recheck, on_progress)
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

    # --- operations -----------------------------------------------------------------------

    def flows(self) -> list[dict[str, Any]]:
        """The registered flows: ``name``, ``versions`` and the ``latest`` one."""
        with self._talking():
            return self._store.flows()

    def definition(self, flow: str, version: str | None = None) -> FlowDefinition:
        """A registered flow's definition: ``version``, or the latest."""
        with self._talking():
            return self._store.definition(flow, version)

    def steps(self, instance_id: str) -> list[StepVisit]:
        """The states the instance visited on this runner, oldest first: when each was
        entered and left, its input and its output (``step_log``: about the last 500
        visits; a value over 16 KiB of JSON is left out, with its size)."""
        with self._talking():
            self._store.info(instance_id)  # an unknown instance is an error, not []
            return read_steps(self._store.client, self._store.keys, instance_id)

    def schedules(self) -> list[ScheduleView]:
        """Every cron schedule with its last and next fire (``rustyflower schedule list``)."""
        with self._talking():
            return ScheduleStore(self._store.client, self._store.keys).list()

    def workers(self) -> dict[str, Any]:
        """The running workers' heartbeats and the work routed to an activity that waits
        (``rustyflower workers --json``): ``{"workers": [...], "waiting": [...]}``."""
        with self._talking():
            return fleet_report(self._store.client, self._store.keys)

    def webhooks(self) -> WebhookStore:
        """The webhook subscriptions and deliveries (the HTTP API's webhooks)."""
        return WebhookStore(self._store.client, self._store.keys)

    def stats(self) -> RunnerStats:
        """The runner's figures now, for every process alike (what ``/metrics`` exposes)."""
        with self._talking():
            return read_stats(self._store.client, self._store.keys)

    def report(self, since: datetime, until: datetime | None = None) -> Report:
        """Per flow: how many finished, the success rate, p50/p95 durations; the slowest
        and most failing steps, over the window from ``since`` to ``until`` (now)."""
        end = until or datetime.now(UTC)
        if since.tzinfo is None or end.tzinfo is None:
            raise ValueError("since and until must be timezone-aware datetimes")
        if since > end:
            raise ValueError("since must not be after until")
        with self._talking():
            return read_report(self._store.client, self._store.keys, since, end)


class InstanceHandle:
    """One instance: the ``Client`` operations without repeating its id."""

    def __init__(self, client: Client, instance_id: str, *, created: bool | None = None) -> None:
        self._client = client
        self._id = instance_id
        self.created = created
        """From ``start``: True when that call created the instance, False when the id
        existed already; None for a handle of an existing instance."""

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

    def signal(self, event: str, data: Any = None) -> SignalReceipt:
        return self._client.signal(self._id, event, data)

    def hold(self, reason: str | None = None) -> InstanceStatus:
        return self._client.hold(self._id, reason)

    def release(self) -> InstanceStatus:
        return self._client.release(self._id)

    def cancel(self, reason: str | None = None) -> InstanceStatus:
        return self._client.cancel(self._id, reason)

    def retry(self) -> InstanceStatus:
        return self._client.retry(self._id)

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
    "SignalReceipt",
]
