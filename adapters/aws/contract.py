"""The payloads the compiled state machine sends to its Lambda functions.

The Lambda handlers (``lambda_aws/``) read them with the helpers here, so that the
positions, attempt numbers, idempotency keys and event-wait ids they work with are the
engine's (docs/aws.md, "Lambda contract").

Activity function (``arn:aws:states:::lambda:invoke``)::

    {"activity": "charge", "flow": "order", "input": <effective input>,
     "instance_id": "order-1", "attempt": 2,
     "call": {"scope": <scope>, "state": "Charge", "tag": "7", "positional_key": true}}

(``flow`` names the metrics the function emits; payloads of machines compiled before it
was added have none.) ``positional_key`` is true for a state entered only once per scope:
its key is ``instance:position:attempt``, the key the site's engine gives the same call,
so that a call made again after a failover is recognised; without it (a state on a loop,
or a machine compiled before the flag) the tag is part of the key.

Token function (``arn:aws:states:::lambda:invoke.waitForTaskToken``)::

    {"kind": "event", "instance_id": ..., "event": "approval", "task_token": ...,
     "call": {"scope": <scope>, "state": "Approve", "tag": ...}, "since": <time>, "order": 3}
    {"kind": "deadline", "instance_id": ..., "task_token": ...}

A *scope* is ``null`` for the flow's own states, else ``{"up": <scope>, "owner": "Ship",
"index": 0}`` for branch 0 of parallel ``Ship`` (or map item 0 of map ``Ship``): the
engine's scope text ``"Ship[0]/"`` as a linked list, because Step Functions cannot build
text from a map item's index inside the iteration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from rustyflower.core.contract import format_work_id, idempotency_key

MAX_SCOPE_DEPTH = 64


class PayloadError(ValueError):
    """A Lambda payload does not follow the contract."""


def render_scope(scope: Any) -> str:
    """The engine's scope text of a scope value: ``{"up": null, "owner": "A", "index": 1}``
    -> ``"A[1]/"``."""
    parts: list[str] = []
    node = scope
    while node is not None:
        if len(parts) >= MAX_SCOPE_DEPTH:
            raise PayloadError(f"scope nests deeper than {MAX_SCOPE_DEPTH} levels")
        if not isinstance(node, Mapping):
            raise PayloadError(f"a scope is null or an object, not {type(node).__name__}")
        owner, index = node.get("owner"), node.get("index")
        if not isinstance(owner, str) or isinstance(index, bool) or not isinstance(index, int):
            raise PayloadError(f"scope part {dict(node)!r} needs a text 'owner' and an 'index'")
        parts.append(f"{owner}[{index}]/")
        node = node.get("up")
    return "".join(reversed(parts))


def scope_value(scope_text: str) -> Any:
    """The inverse of :func:`render_scope`: ``"A[1]/B[0]/"`` -> the linked-list value."""
    value: Any = None
    for part in scope_text.split("/")[:-1]:
        owner, _, index = part.rpartition("[")
        value = {"up": value, "owner": owner, "index": int(index[:-1])}
    return value


def _call_object(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    call = payload.get("call")
    if not isinstance(call, Mapping):
        raise PayloadError("the payload has no 'call' object")
    return call


def _call_position(payload: Mapping[str, Any]) -> tuple[str, str]:
    call = _call_object(payload)
    state, tag = call.get("state"), call.get("tag")
    if not isinstance(state, str) or not isinstance(tag, str | int) or isinstance(tag, bool):
        raise PayloadError("'call' needs a text 'state' and a 'tag'")
    return render_scope(call.get("scope")) + state, str(tag)


def _positional_key(payload: Mapping[str, Any]) -> bool:
    flag = _call_object(payload).get("positional_key", False)
    if not isinstance(flag, bool):
        raise PayloadError("'call.positional_key' must be true or false")
    return flag


def _instance(payload: Mapping[str, Any]) -> str:
    instance_id = payload.get("instance_id")
    if not isinstance(instance_id, str) or not instance_id:
        raise PayloadError("the payload has no 'instance_id'")
    return instance_id


@dataclass(frozen=True, slots=True)
class ActivityCall:
    """One activity call, as the engine would have issued it."""

    activity: str
    input: Any
    instance_id: str
    position: str
    attempt: int
    idempotency_key: str
    """The engine's key: ``instance:position:attempt`` for a state entered once per scope
    (the same wherever the call is made), else ``instance:position:attempt:tag`` with the
    engine's call number for a call re-issued from a snapshot, a new unique tag otherwise."""
    flow: str | None = None
    """The flow's name (for metrics), when the machine sends it."""

    @property
    def state(self) -> str:
        """The user state the call is made at (its position without the scope)."""
        return self.position.rpartition("/")[2]


def activity_call(payload: Mapping[str, Any]) -> ActivityCall:
    """Read the activity function's payload."""
    activity = payload.get("activity")
    if not isinstance(activity, str) or not activity:
        raise PayloadError("the payload has no 'activity'")
    attempt = payload.get("attempt")
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise PayloadError("'attempt' must be a whole number >= 1")
    instance_id = _instance(payload)
    position, tag = _call_position(payload)
    flow = payload.get("flow")
    return ActivityCall(
        activity=activity,
        input=payload.get("input"),
        instance_id=instance_id,
        position=position,
        attempt=attempt,
        idempotency_key=idempotency_key(
            instance_id, position, attempt, None if _positional_key(payload) else tag
        ),
        flow=flow if isinstance(flow, str) and flow else None,
    )


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """A task token to store: an event wait, or the flow's deadline clock (store nothing)."""

    kind: Literal["event", "deadline"]
    instance_id: str
    task_token: str
    event: str | None = None
    wait_id: str | None = None
    """``position~tag``: the engine's wait id for a wait re-issued from a snapshot."""
    position: str | None = None
    since: str | None = None
    """When the wait began; the oldest waiter (then the lowest ``order``) gets an event."""
    order: int = 0


def token_request(payload: Mapping[str, Any]) -> TokenRequest:
    """Read the token function's payload."""
    kind = payload.get("kind")
    token = payload.get("task_token")
    if not isinstance(token, str) or not token:
        raise PayloadError("the payload has no 'task_token'")
    instance_id = _instance(payload)
    if kind == "deadline":
        return TokenRequest("deadline", instance_id, token)
    if kind != "event":
        raise PayloadError(f"unknown token request kind {kind!r}")
    event = payload.get("event")
    if not isinstance(event, str) or not event:
        raise PayloadError("an event wait names its 'event'")
    position, tag = _call_position(payload)
    order = payload.get("order")
    since = payload.get("since")
    return TokenRequest(
        "event",
        instance_id,
        token,
        event=event,
        wait_id=format_work_id(position, tag),
        position=position,
        since=since if isinstance(since, str) else None,
        order=order if isinstance(order, int) and not isinstance(order, bool) else 0,
    )
