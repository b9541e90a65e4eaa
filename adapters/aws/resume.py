"""Snapshot -> Step Functions execution: its input, its name, and the digest check.

The execution input of a compiled machine (docs/aws.md, "Execution input")::

    {"rf": {"format": 1, "instance_id": "order-7", "epoch": 2,
            "digest": "sha256:...", "seq": 14,        # continuations only
            "deadline": "...Z", "timeout": 35,         # continuations of timed flows
            "resume": null | <node>},
     "input": <the flow's input>}

A *node* says where one branch instance of the flow stands: ``route`` (the compiled
state to jump to), ``data`` (the engine's token data there: the user's ``$``) and what
that state needs to continue: the call's attempt and tag, a wait's absolute end, an
event wait's tag and remaining timeout, a child's execution name and input, or, for a
parallel or map join, one node per branch or item (``rf:done`` with its result for
those the snapshot finished, ``rf:start`` for map items not started yet).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from rustyflower.adapters.aws.compiler import RESUME_FORMAT, resume_roles, retriers_of
from rustyflower.adapters.aws.errors import DigestMismatchError, ResumeError
from rustyflower.adapters.aws.names import (
    ROUTE_DONE,
    ROUTE_START,
    branch_copy,
    delay_route,
    iterator_copy,
)
from rustyflower.adapters.aws.names import resume_route as resume_route_name
from rustyflower.core.contract import Purpose, idempotency_key, work_number
from rustyflower.core.engine import Snapshot, Token
from rustyflower.core.engine.commands import AwaitEvent, RunActivity, StartChildFlow, StartTimer
from rustyflower.core.engine.machine import jitter_fraction, retry_delay
from rustyflower.core.engine.state import Frame, Pending
from rustyflower.core.engine.structure import child_scope, structure_of
from rustyflower.core.model import (
    MapState,
    ParallelState,
    SubFlowState,
    TaskState,
    WaitForEventState,
    WaitState,
)
from rustyflower.core.snapshot.canonical import canonical_json
from rustyflower.core.timeutil import format_timestamp, parse_timestamp

MAX_EXECUTION_NAME = 80
MAX_EXECUTION_INPUT = 256 * 1024
"""Step Functions' limit on an execution's input (and on any state's data), in bytes."""
RETRY_PLAN_LENGTH = 64
"""Retries per policy a resumed state makes by the snapshot's counters; past them the
state is entered afresh and ASL's own Retry takes over (docs/aws.md)."""
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_DIGEST_IN_COMMENT = re.compile(r"digest=(sha256:[0-9a-f]{64})")


def fresh_input(instance_id: str, input: Any, *, epoch: int = 0) -> dict[str, Any]:
    """The execution input that starts ``instance_id`` from the flow's start state."""
    if not instance_id:
        raise ValueError("an instance id is required")
    return {
        "rf": {"format": RESUME_FORMAT, "instance_id": instance_id, "epoch": epoch, "resume": None},
        "input": input,
    }


def execution_name(instance_id: str, epoch: int) -> str:
    """A valid, deterministic execution name for (instance, epoch), at most 80 characters.

    Starting the same (instance, epoch) twice with the same input is a no-op in Step
    Functions (while the first execution runs) or a refused duplicate (after it ended):
    a repeated failover never runs the instance twice.
    """
    digest = hashlib.sha256(f"{instance_id}\x1f{epoch}".encode()).hexdigest()[:16]
    suffix = f"-e{epoch}-{digest}"
    room = MAX_EXECUTION_NAME - len(suffix)
    if room < 1:
        raise ValueError(f"epoch {epoch} is too large for an execution name")
    slug = _NAME_UNSAFE.sub("-", instance_id).strip("-")[: min(room, 48)] or "rf"
    return slug + suffix


def digest_from_comment(comment: str | None) -> str | None:
    """The definition digest the compiler wrote into a machine's ``Comment``."""
    if not comment:
        return None
    found = _DIGEST_IN_COMMENT.search(comment)
    return found.group(1) if found else None


def deployed_digest(machine: Mapping[str, Any] | str) -> str | None:
    """The digest of a deployed machine: from ``describe_state_machine``'s answer, an ASL
    document (dict) or its JSON text."""
    document: Any = machine
    if isinstance(machine, Mapping) and isinstance(machine.get("definition"), str):
        document = machine["definition"]
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return None
    if not isinstance(document, Mapping):
        return None
    comment = document.get("Comment")
    return digest_from_comment(comment if isinstance(comment, str) else None)


def check_digest(snapshot: Snapshot, deployed: str | None) -> None:
    """Refuse a snapshot whose definition is not the one the machine was compiled from."""
    if deployed != snapshot.digest:
        raise DigestMismatchError(snapshot.definition.key, snapshot.digest, deployed)


def execution_input(
    snapshot: Snapshot,
    *,
    now: datetime | None = None,
    children: Mapping[str, Snapshot] | None = None,
) -> dict[str, Any]:
    """The input that continues ``snapshot`` on the machine compiled from its definition.

    ``now`` (default: the clock) turns the absolute deadlines of the flow's and the event
    waits' timeouts into the seconds left, which is what ASL can take. ``children`` are
    snapshots of child flows by instance id: a sub-flow in flight whose child is given
    continues that child; otherwise the child starts again from its input.
    """
    if snapshot.finished:
        raise ResumeError(
            f"instance {snapshot.instance_id!r} already {snapshot.status}: nothing to continue"
        )
    if snapshot.state.held:
        raise ResumeError(
            f"instance {snapshot.instance_id!r} is held: release it before continuing it in "
            "AWS (Step Functions cannot hold work back)"
        )
    moment = now if now is not None else datetime.now(UTC)
    if moment.tzinfo is None:
        raise ValueError("'now' must be timezone-aware")
    builder = _NodeBuilder(snapshot, moment, children or {})
    root = builder.token_at("")
    rf: dict[str, Any] = {
        "format": RESUME_FORMAT,
        "instance_id": snapshot.instance_id,
        "epoch": snapshot.epoch,
        "digest": snapshot.digest,
        "seq": snapshot.seq,
        "resume": builder.node(root, ""),
    }
    deadline = builder.flow_deadline()
    if deadline is not None and snapshot.definition.timeout_seconds is not None:
        rf["deadline"] = deadline
        rf["timeout"] = builder.seconds_left(deadline)
    document = {"rf": rf, "input": snapshot.state.input}
    size = len(canonical_json(document))
    if size > MAX_EXECUTION_INPUT:
        raise ResumeError(
            f"instance {snapshot.instance_id!r}: the execution input would be {size} bytes; "
            f"Step Functions takes at most {MAX_EXECUTION_INPUT}"
        )
    return document


def _whole_seconds(text: str) -> str:
    """An RFC 3339 time rounded up to the second (never early), ``Z`` form."""
    moment = parse_timestamp(text)
    if moment is None:  # pragma: no cover - the engine writes these
        raise ResumeError(f"{text!r} is not an RFC 3339 time")
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return format_timestamp(moment)


def _work_number(work_id: str) -> int:
    number = work_number(work_id)
    if number is None:  # pragma: no cover - the engine writes these
        raise ResumeError(f"{work_id!r} is not an engine work id")
    return number


class _NodeBuilder:
    def __init__(self, snapshot: Snapshot, now: datetime, children: Mapping[str, Snapshot]) -> None:
        self.snapshot = snapshot
        self.now = now
        self.children = children
        self.structure = structure_of(snapshot.definition)
        self.by_scope: dict[str, Token] = {}
        for token in snapshot.state.tokens.values():
            if token.scope in self.by_scope:
                raise ResumeError(f"two tokens stand in scope {token.scope!r}")
            self.by_scope[token.scope] = token

    def token_at(self, scope: str) -> Token:
        token = self.by_scope.get(scope)
        if token is None:
            where = f"branch {scope!r}" if scope else "the flow"
            raise ResumeError(f"the snapshot has no token in {where}")
        return token

    def flow_deadline(self) -> str | None:
        for entry in self.snapshot.state.pending.values():
            if entry.purpose == Purpose.FLOW_TIMEOUT and isinstance(entry.command, StartTimer):
                return entry.command.fire_at
        return None

    def seconds_left(self, fire_at: str) -> int:
        moment = parse_timestamp(fire_at)
        assert moment is not None
        return max(1, math.ceil((moment - self.now).total_seconds()))

    def pending(self, token: Token, purpose: str) -> Pending | None:
        for work_id in token.pending:
            entry = self.snapshot.state.pending.get(work_id)
            if entry is not None and entry.purpose == purpose:
                return entry
        return None

    def fail(self, token: Token, message: str) -> ResumeError:
        return ResumeError(f"token at {token.position!r}: {message}")

    # --- nodes ------------------------------------------------------------------------------

    def node(self, token: Token, copy: str) -> dict[str, Any]:
        state = self.structure.branch(token.scope).states[token.state]
        if not resume_roles(state):
            raise self.fail(token, f"a {state.type} state cannot hold a token at rest")
        if token.joining:
            frame = self.snapshot.state.frames.get(token.position)
            if frame is None:
                raise self.fail(token, "it joins branches but the snapshot has no frame")
            if isinstance(state, ParallelState):
                return self.parallel(token, state, frame, copy)
            assert isinstance(state, MapState)
            return self.map_items(token, state, frame, copy)
        retry = self.pending(token, Purpose.RETRY)
        if retry is not None:
            assert isinstance(retry.command, StartTimer)
            node = self.base(token, delay_route(copy, token.state))
            node["until"] = _whole_seconds(retry.command.fire_at)
            if isinstance(state, TaskState):
                # the next attempt is not issued yet: key it as the engine will
                call: dict[str, Any] = {
                    "attempt": token.attempt + 1,
                    "tag": f"e{self.snapshot.epoch}s{self.snapshot.seq}",
                    "positional_key": not (
                        self.snapshot.state.retried or self.structure.repeatable(token.position)
                    ),
                }
                if state.timeout_seconds is not None:
                    call["timeout"] = state.timeout_seconds
                node["call"] = call
                node.update(self.retry_plan(token, state, next_attempt=token.attempt + 1))
            elif isinstance(state, SubFlowState) and not self.structure.repeatable(token.position):
                # the machine starts the next attempt's child under the engine's id,
                # parent/position@attempt, from the attempt that failed (a state that can be
                # entered again starts it from the fresh state instead)
                node["child"] = {"attempt": token.attempt, "position": token.position}
                node.update(self.retry_plan(token, state, next_attempt=token.attempt + 1))
            return node
        if isinstance(state, TaskState):
            return self.task(token, state, copy)
        if isinstance(state, WaitState):
            timer = self.pending(token, Purpose.WAIT)
            if timer is None:
                raise self.fail(token, "the wait has no timer")
            assert isinstance(timer.command, StartTimer)
            node = self.base(token, resume_route_name(copy, token.state))
            node["until"] = _whole_seconds(timer.command.fire_at)
            return node
        if isinstance(state, WaitForEventState):
            return self.event_wait(token, state, copy)
        if isinstance(state, SubFlowState):
            return self.sub_flow(token, state, copy)
        raise self.fail(token, f"the {state.type} state waits for nothing")

    def base(self, token: Token, route: str) -> dict[str, Any]:
        return {"route": route, "data": token.data}

    def task(self, token: Token, state: TaskState, copy: str) -> dict[str, Any]:
        entry = self.pending(token, Purpose.TASK)
        if entry is None or not isinstance(entry.command, RunActivity):
            raise self.fail(token, "the task has no activity call in flight")
        command = entry.command
        number = _work_number(command.call_id)
        instance_id, position, attempt = self.snapshot.instance_id, token.position, command.attempt
        # a snapshot taken before positional keys keys every call by its number: honour
        # whichever form the engine gave this call, so the same call keeps its key
        positional = command.idempotency_key == idempotency_key(
            instance_id, position, attempt, None
        )
        numbered = idempotency_key(instance_id, position, attempt, number)
        if not positional and command.idempotency_key != numbered:
            raise self.fail(
                token,
                f"idempotency key {command.idempotency_key!r} is not the engine's "
                f"{numbered!r}; the AWS runtime could not issue the same call again",
            )
        node = self.base(token, resume_route_name(copy, token.state))
        call: dict[str, Any] = {
            "attempt": command.attempt,
            "tag": str(number),
            "positional_key": positional,
        }
        if state.timeout_seconds is not None:
            timer = self.pending(token, Purpose.TASK_TIMEOUT)
            if timer is not None and isinstance(timer.command, StartTimer):
                call["timeout"] = self.seconds_left(timer.command.fire_at)
            else:
                call["timeout"] = state.timeout_seconds
        node["call"] = call
        node.update(self.retry_plan(token, state, next_attempt=command.attempt))
        return node

    def event_wait(self, token: Token, state: WaitForEventState, copy: str) -> dict[str, Any]:
        entry = self.pending(token, Purpose.EVENT)
        if entry is None or not isinstance(entry.command, AwaitEvent):
            raise self.fail(token, "the event wait has no wait id")
        number = _work_number(entry.command.wait_id)
        node = self.base(token, resume_route_name(copy, token.state))
        node["tag"] = str(number)
        node["order"] = number
        node["since"] = self.waiting_since(token)
        if state.timeout_seconds is not None:
            timer = self.pending(token, Purpose.EVENT_TIMEOUT)
            if timer is None or not isinstance(timer.command, StartTimer):
                raise self.fail(token, "the event wait has a timeout but no timer")
            node["timeout"] = self.seconds_left(timer.command.fire_at)
        return node

    def waiting_since(self, token: Token) -> str:
        for entry in reversed(self.snapshot.state.history):
            if entry.kind == "EventAwaited" and entry.position == token.position:
                return entry.at
        return self.snapshot.updated_at

    def sub_flow(self, token: Token, state: SubFlowState, copy: str) -> dict[str, Any]:
        entry = self.pending(token, Purpose.CHILD)
        if entry is None or not isinstance(entry.command, StartChildFlow):
            raise self.fail(token, "the sub-flow has no child in flight")
        command = entry.command
        node = self.base(token, resume_route_name(copy, token.state))
        child_id = command.child_instance_id
        child = self.children.get(child_id)
        if child is not None:
            child_input = execution_input(child, now=self.now, children=self.children)
        else:
            child_input = fresh_input(child_id, command.input, epoch=self.snapshot.epoch)
        # the child keeps the id its command carries, whatever form the engine gave it (a
        # snapshot from before positional child ids names it by its call); ``attempt`` and
        # ``position`` name the next attempt's child, as the engine will
        node["child"] = {
            "id": child_id,
            "name": execution_name(child_id, self.snapshot.epoch),
            "input": child_input,
            "attempt": token.attempt,
            "position": token.position,
        }
        node.update(self.retry_plan(token, state, next_attempt=token.attempt))
        return node

    def retry_plan(self, token: Token, state: Any, *, next_attempt: int) -> dict[str, Any]:
        """The retry loop's counters: retries used, and the engine's delay of each retry.

        ``next_attempt`` is the attempt that runs (or runs again) first; the delay of
        retry ``n`` is jittered with the attempt that failed before it, assuming the
        policy's retries come one after the other.
        """
        used: list[int] = []
        limit: list[int] = []
        delays: list[list[int]] = []
        for index, policy in enumerate(retriers_of(self.snapshot.definition, state)):
            done = token.retries[index] if index < len(token.retries) else 0
            last = min(policy.max_attempts, done + RETRY_PLAN_LENGTH)
            plan = [0] * done
            for number in range(done, last):
                failed = next_attempt + number - done
                fraction = jitter_fraction(self.snapshot.instance_id, token.position, failed)
                plan.append(math.ceil(retry_delay(policy, number, fraction)))
            used.append(done)
            limit.append(last)
            delays.append(plan)
        return {"used": used, "limit": limit, "delays": delays}

    def parallel(
        self, token: Token, state: ParallelState, frame: Frame, copy: str
    ) -> dict[str, Any]:
        branches: list[dict[str, Any]] = []
        for index in range(len(state.branches)):
            if frame.done[index]:
                branches.append({"route": ROUTE_DONE, "data": frame.results[index]})
                continue
            inner = self.token_at(child_scope(token.position, index))
            prefix = branch_copy(copy, token.state, index, resumed=True)
            branches.append(self.node(inner, prefix))
        node = self.base(token, resume_route_name(copy, token.state))
        node["branches"] = branches
        node.update(self.retry_plan(token, state, next_attempt=token.attempt))
        return node

    def map_items(self, token: Token, state: MapState, frame: Frame, copy: str) -> dict[str, Any]:
        prefix = iterator_copy(copy, token.state, resumed=True)
        items: list[dict[str, Any]] = []
        for index, item in enumerate(frame.items):
            if frame.done[index]:
                items.append({"route": ROUTE_DONE, "data": frame.results[index], "item": item})
            elif index < frame.next_item:
                inner = self.token_at(child_scope(token.position, index))
                items.append({**self.node(inner, prefix), "item": item})
            else:
                items.append({"route": ROUTE_START, "item": item})
        node = self.base(token, resume_route_name(copy, token.state))
        node["items"] = items
        node.update(self.retry_plan(token, state, next_attempt=token.attempt))
        return node
