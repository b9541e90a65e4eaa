"""Task tokens of event waits: the table the token function fills, and ``signal``.

A compiled ``wait_for_event`` state is a ``lambda:invoke.waitForTaskToken`` task: the
token function (``lambda_aws.tokens.handler``) stores the task token it is given under
the instance and the event name, and the execution waits until someone calls
``SendTaskSuccess`` with that token. :func:`signal` is that someone (``rustyflower
signal`` when the instance lives in AWS): it takes the **oldest** waiter of the event (by
the time its wait began, then its order), removes it with a conditional delete (two
signals never use one token) and sends the event's data as the task's output.

Table layout (``RUSTYFLOWER_TOKENS_TABLE``): partition key ``waiter`` =
``["<instance id>","<event>"]`` (JSON text), sort key ``rank`` =
``<since, UTC, microseconds>#<order, 12 digits>#<wait id>``, TTL attribute ``expires_at``.
A token whose wait already ended (timed out, cancelled with its branch, the execution
stopped) stays until its TTL; ``signal`` skips it when Step Functions refuses it.

The flow's deadline clock (``kind: deadline``) needs no stored token: it only ever times
out.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rustyflower.adapters.aws.client_errors import ClientError, error_code
from rustyflower.adapters.aws.contract import TokenRequest
from rustyflower.adapters.aws.deployment import (
    TOKENS_PARTITION_KEY,
    TOKENS_SORT_KEY,
    TOKENS_TTL_ATTRIBUTE,
)
from rustyflower.core.errors import NoWaiterError
from rustyflower.core.timeutil import parse_timestamp

logger = logging.getLogger("rustyflower.aws.tokens")

STALE_TOKEN_CODES = frozenset({"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"})
"""SendTaskSuccess answers for a token whose wait is over: try the next waiter."""
MAX_OUTPUT_BYTES = 256 * 1024
ORDER_DIGITS = 12


class SignalError(ValueError):
    """The signal cannot be sent (its data is not JSON, or too large for Step Functions)."""


def waiter_key(instance_id: str, event: str) -> str:
    """The partition key of everything that may receive ``event`` for ``instance_id``."""
    return json.dumps([instance_id, event], ensure_ascii=False, separators=(",", ":"))


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rank_key(since: str | None, order: int, wait_id: str, registered: datetime) -> str:
    """Sorts waiters oldest first; ``since`` in any RFC 3339 form (ASL's, the engine's)."""
    moment = parse_timestamp(since) if since else None
    return f"{_utc_text(moment or registered)}#{max(order, 0):0{ORDER_DIGITS}d}#{wait_id}"


@dataclass(frozen=True)
class Waiter:
    """One stored event wait."""

    instance_id: str
    event: str
    wait_id: str
    position: str
    since: str
    order: int
    task_token: str
    rank: str


@dataclass(frozen=True)
class Delivered:
    """Where a signal went."""

    instance_id: str
    event: str
    wait_id: str
    position: str
    skipped: int = 0
    """Stale tokens (waits already over) passed over before this one."""


class TokenStore:
    """The tokens table, through a low-level DynamoDB client."""

    def __init__(self, table: str, dynamodb: Any, ttl_seconds: int) -> None:
        self.table = table
        self.dynamodb = dynamodb
        self.ttl_seconds = ttl_seconds

    def register(self, request: TokenRequest, now: datetime) -> Waiter:
        """Store an event wait's token (a repeated registration of one wait replaces it)."""
        if request.kind != "event" or request.event is None or request.wait_id is None:
            raise ValueError("only event waits store their token")
        order = request.order
        since_moment = parse_timestamp(request.since) if request.since else None
        waiter = Waiter(
            instance_id=request.instance_id,
            event=request.event,
            wait_id=request.wait_id,
            position=request.position or "",
            since=_utc_text(since_moment or now),
            order=order,
            task_token=request.task_token,
            rank=rank_key(request.since, order, request.wait_id, now),
        )
        self.dynamodb.put_item(TableName=self.table, Item=self._item(waiter, now))
        return waiter

    def waiters(self, instance_id: str, event: str) -> Iterator[Waiter]:
        """The stored waiters of ``event``, oldest first (strongly consistent reads)."""
        arguments: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "#w = :w",
            "ExpressionAttributeNames": {"#w": TOKENS_PARTITION_KEY},
            "ExpressionAttributeValues": {":w": {"S": waiter_key(instance_id, event)}},
            "ConsistentRead": True,
            "ScanIndexForward": True,
        }
        while True:
            page = self.dynamodb.query(**arguments)
            for item in page.get("Items", []):
                yield _waiter(item)
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            arguments["ExclusiveStartKey"] = last

    def take(self, waiter: Waiter) -> bool:
        """Remove ``waiter``; False when another signal removed it first."""
        try:
            self.dynamodb.delete_item(
                TableName=self.table,
                Key=self._key(waiter),
                ConditionExpression="attribute_exists(#r)",
                ExpressionAttributeNames={"#r": TOKENS_SORT_KEY},
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def put_back(self, waiter: Waiter, now: datetime) -> None:
        """Undo ``take`` after a transient failure to deliver (unless re-registered since)."""
        try:
            self.dynamodb.put_item(
                TableName=self.table,
                Item=self._item(waiter, now),
                ConditionExpression="attribute_not_exists(#r)",
                ExpressionAttributeNames={"#r": TOKENS_SORT_KEY},
            )
        except ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise

    def _item(self, waiter: Waiter, now: datetime) -> dict[str, Any]:
        return {
            **self._key(waiter),
            "instance_id": {"S": waiter.instance_id},
            "event": {"S": waiter.event},
            "wait_id": {"S": waiter.wait_id},
            "position": {"S": waiter.position},
            "since": {"S": waiter.since},
            "order": {"N": str(waiter.order)},
            "task_token": {"S": waiter.task_token},
            "registered_at": {"S": _utc_text(now)},
            TOKENS_TTL_ATTRIBUTE: {"N": str(math.floor(now.timestamp()) + self.ttl_seconds)},
        }

    def _key(self, waiter: Waiter) -> dict[str, Any]:
        return {
            TOKENS_PARTITION_KEY: {"S": waiter_key(waiter.instance_id, waiter.event)},
            TOKENS_SORT_KEY: {"S": waiter.rank},
        }


def _waiter(item: dict[str, Any]) -> Waiter:
    return Waiter(
        instance_id=item["instance_id"]["S"],
        event=item["event"]["S"],
        wait_id=item["wait_id"]["S"],
        position=item.get("position", {}).get("S", ""),
        since=item.get("since", {}).get("S", ""),
        order=int(item.get("order", {}).get("N", "0")),
        task_token=item["task_token"]["S"],
        rank=item[TOKENS_SORT_KEY]["S"],
    )


def signal(
    instance_id: str,
    event: str,
    data: Any = None,
    *,
    store: TokenStore,
    stepfunctions: Any,
    wait_id: str | None = None,
    now: datetime | None = None,
) -> Delivered:
    """Deliver ``event`` with ``data`` to the oldest waiter of ``instance_id`` in AWS.

    ``wait_id`` picks one wait instead (the engine's ``EventReceived.wait_id``). Raises
    ``NoWaiterError`` when no live wait is stored for the event, ``SignalError`` when the
    data cannot be sent; any other failure (an AWS error, a transport error) is raised
    with the token kept for a retry.
    """
    try:
        output = json.dumps(data, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as problem:
        raise SignalError(f"the data of event {event!r} is not JSON: {problem}") from None
    if len(output.encode("utf-8")) > MAX_OUTPUT_BYTES:
        raise SignalError(
            f"the data of event {event!r} is larger than Step Functions' 256 KiB task output"
        )
    skipped = 0
    for waiter in store.waiters(instance_id, event):
        if wait_id is not None and waiter.wait_id != wait_id:
            continue
        if not store.take(waiter):
            continue  # another signal took this one
        try:
            stepfunctions.send_task_success(taskToken=waiter.task_token, output=output)
        except BaseException as error:
            if error_code(error) in STALE_TOKEN_CODES:
                skipped += 1
                logger.info(
                    "skipped a stale task token of wait %s (%s)", waiter.wait_id, error_code(error)
                )
                continue
            # Any other failure (throttling, a dropped connection, a read timeout, an
            # interrupt) may not have reached Step Functions: a token lost here would leave
            # the wait hanging until its timeout, so keep it. If the send did land, the retry
            # finds the task over (a stale code) and moves on.
            store.put_back(waiter, now or datetime.now(UTC))
            raise
        return Delivered(instance_id, event, waiter.wait_id, waiter.position, skipped)
    which = f"wait {wait_id!r}" if wait_id is not None else "wait"
    raise NoWaiterError(
        f"instance {instance_id!r} has no live {which} for event {event!r} in AWS"
        + (f" ({skipped} stale task token(s) skipped)" if skipped else "")
    )
