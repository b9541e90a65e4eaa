"""Webhooks: ``/v1/webhooks`` to subscribe, and the dispatcher that delivers.

A delivery is a POST of JSON to the subscription's URL:

    {"event": "instance.failed", "delivery_id": "...", "attempt": 1,
     "instance": {<the instance's status, as GET /v1/instances/{id}>}}

with the headers ``X-RustyFlower-Event``, ``X-RustyFlower-Delivery`` (the same on every
attempt: drop repeats by it) and ``X-RustyFlower-Signature: t=<unix time>,v1=<hex>``,
where ``v1`` is HMAC-SHA256 under the subscription's secret of ``<t>.<body>``. A 2xx
answer delivers it; anything else, or no answer within the timeout, is retried with
backoff (``WebhookPolicy``) until the attempts run out. Every attempt is recorded:
``GET /v1/webhooks/{id}/deliveries``.

The dispatcher runs as a task of the API's event loop. A round that fails (Redis gone,
a bug) is logged, counted (``rustyflower_webhook_dispatcher_failures_total``) and
retried after a pause; it never ends the task.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import socket
import time
from typing import Any

import httpx
from fastapi import APIRouter, Depends, Response

from rustyflower.adapters.redis.webhook_store import (
    STALE_SECONDS,
    DeliveryTask,
    FinishedEvent,
    UnknownWebhookError,
    Webhook,
    WebhookStore,
)
from rustyflower.adapters.web.auth import require_token
from rustyflower.adapters.web.instances import Client
from rustyflower.adapters.web.metrics import ProcessMetrics
from rustyflower.adapters.web.models import ERRORS, WebhookCreatedOut, WebhookOut, WebhookRequest
from rustyflower.adapters.web.settings import WebhookPolicy
from rustyflower.client import AsyncClient, UnknownInstanceError

log = logging.getLogger("rustyflower.webhooks")
router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], dependencies=[Depends(require_token)])

MAX_OUTPUT_BYTES = 64 * 1024
"""A larger output is left out of the payload (``output_omitted``): fetch the instance."""
SIGNATURE_HEADER = "X-RustyFlower-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def _store(client: AsyncClient) -> WebhookStore:
    return client.sync.webhooks()


@router.post("", status_code=201, response_model=WebhookCreatedOut, responses=ERRORS)
async def add(body: WebhookRequest, client: Client) -> dict[str, Any]:
    """Subscribe a URL to instances finishing; the answer shows the signing secret once."""
    store = _store(client)
    hook = await asyncio.to_thread(
        store.add, body.url, events=body.events, flows=body.flows, secret=body.secret
    )
    return hook.public() | {"secret": hook.secret}


@router.get("", response_model=list[WebhookOut], responses=ERRORS)
async def listing(client: Client) -> list[dict[str, Any]]:
    hooks = await asyncio.to_thread(_store(client).all)
    return [hook.public() for hook in hooks]


@router.delete("/{hook_id}", status_code=204, response_class=Response, responses=ERRORS)
async def remove(hook_id: str, client: Client) -> Response:
    await asyncio.to_thread(_store(client).remove, hook_id)
    return Response(status_code=204)


@router.get("/{hook_id}/deliveries", responses=ERRORS)
async def deliveries(hook_id: str, client: Client) -> list[dict[str, Any]]:
    """The latest delivery attempts, newest first: outcome, HTTP status, error, next try."""
    return await asyncio.to_thread(_store(client).deliveries, hook_id)


class Dispatcher:
    """Turns finished instances into deliveries and delivers them, until stopped."""

    def __init__(
        self,
        client: AsyncClient,
        policy: WebhookPolicy,
        metrics: ProcessMetrics,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.client = client
        self.policy = policy
        self.metrics = metrics
        self.store = _store(client)
        self.consumer = f"{socket.gethostname()}-{os.getpid()}"
        self._http = httpx.AsyncClient(timeout=policy.timeout, transport=transport)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="rustyflower-webhooks")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._http.aclose()

    async def _run(self) -> None:
        failures = 0
        first = True
        while not self._stop.is_set():
            try:
                if first:
                    await asyncio.to_thread(self.store.ensure_groups)
                    first = False
                await self._enqueue(stale_after=STALE_SECONDS)  # a dead dispatcher's
                await self._enqueue(stale_after=None)
                await self._deliver_due()
                failures = 0
                self.rounds += 1
            except Exception:
                failures += 1
                self.metrics.dispatcher_failures.inc()
                log.exception("webhook round failed; retrying")
            pause = self.policy.poll_seconds * (1 if failures == 0 else min(2**failures, 20))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), pause)

    async def _enqueue(self, *, stale_after: float | None) -> None:
        events = await asyncio.to_thread(
            self.store.read_finished, self.consumer, stale_after=stale_after
        )
        if not events:
            return
        hooks = await asyncio.to_thread(self.store.all)
        for event in events:
            tasks = await self._tasks_for(event, hooks)
            await asyncio.to_thread(self.store.enqueue, event, tasks)

    async def _tasks_for(self, event: FinishedEvent, hooks: list[Webhook]) -> list[DeliveryTask]:
        fields = event.fields
        if fields.get("k") != "finished":
            return []
        flow, status = str(fields.get("flow")), str(fields.get("status"))
        wanted = [hook for hook in hooks if hook.wants(flow, status)]
        if not wanted:
            return []
        instance_id = str(fields.get("instance"))
        try:
            instance = (await self.client.status(instance_id)).as_dict()
        except UnknownInstanceError:  # purged since: what the event itself says
            instance = {"instance_id": instance_id, "flow": flow, "status": status}
        if len(json.dumps(instance.get("output"), default=str)) > MAX_OUTPUT_BYTES:
            instance = instance | {"output": None, "output_omitted": True}
        payload = {"event": f"instance.{status}", "instance": instance}
        return [
            DeliveryTask(
                id=f"{event.shard}-{event.entry_id}-{hook.id}", hook=hook.id, payload=payload
            )
            for hook in wanted
        ]

    async def _deliver_due(self) -> None:
        lease = self.policy.timeout * 3
        tasks = await asyncio.to_thread(self.store.take_due, 50, lease)
        if tasks:
            await asyncio.gather(*(self._deliver(task) for task in tasks))

    async def _deliver(self, task: DeliveryTask) -> None:
        try:
            hook = await asyncio.to_thread(self.store.get, task.hook)
        except UnknownWebhookError:  # the subscription was removed: its deliveries go with it
            await asyncio.to_thread(self.store.drop, task)
            return
        body = json.dumps(
            {"event": task.payload["event"], "delivery_id": task.id, "attempt": task.attempt}
            | {"instance": task.payload["instance"]},
            separators=(",", ":"),
            default=str,
        ).encode()
        now = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "RustyFlower-Webhooks",
            "X-RustyFlower-Event": str(task.payload["event"]),
            "X-RustyFlower-Delivery": task.id,
            SIGNATURE_HEADER: sign(hook.secret, now, body),
        }
        status_code: int | None = None
        error: str | None = None
        try:
            answer = await self._http.post(hook.url, content=body, headers=headers)
            status_code = answer.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
        except httpx.HTTPError as failure:
            error = f"{type(failure).__name__}: {failure}"[:300]
        delivered = error is None
        retry_at: float | None = None
        if not delivered and task.attempt < self.policy.max_attempts:
            retry_at = time.time() + self.policy.delay_after(task.attempt)
        outcome = "delivered" if delivered else ("retrying" if retry_at else "failed")
        self.metrics.deliveries.labels(outcome).inc()
        record = {
            "delivery_id": task.id,
            "event": task.payload["event"],
            "instance_id": task.payload["instance"].get("instance_id"),
            "attempt": task.attempt,
            "at": now,
            "outcome": outcome,
            "status_code": status_code,
            "error": error,
            "next_attempt_at": retry_at,
        }
        await asyncio.to_thread(self.store.settle, task, record, retry_at)
