"""What every part of the compiler shares: the machine's data layout and branch copies.

The constants name the Lambda integrations, the compiler's own error names (``RF.*``) and
where data sits in the compiled machine (``$.d`` inside a map iteration, ``$.rf.node``
for a continuation); a :class:`Copy` is one compiled copy of a branch; the functions
answer structural questions (which states need their position at run time, which get
resume entries, which retry policies apply) and chain and prune compiled states.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from rustyflower.core.contract import RESERVED_PREFIX
from rustyflower.core.model import (
    Branch,
    FlowDefinition,
    MapState,
    ParallelState,
    Retry,
    SubFlowState,
    TaskState,
    WaitForEventState,
    WaitState,
)

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
LAMBDA_WAIT_FOR_TOKEN = "arn:aws:states:::lambda:invoke.waitForTaskToken"
START_EXECUTION_SYNC = "arn:aws:states:::states:startExecution.sync:2"

RESUME_FORMAT = 1
"""Version of the execution input layout (``rf.format``) and of the resume nodes."""

SUB_FLOW_FAILED = "RF.SubFlowFailed"
"""A child failed with an error ASL cannot raise again (a ``States.*`` name, or none)."""
FINISHED = "RF.Finished"
"""Raised by the flow's branch of the deadline race to end it with the flow's output."""
RESUME_REJECTED = "RF.ResumeRejected"
UNRAISABLE = "RF.Unraisable"
"""A resumed state's error that ASL has no way to raise again under its own name."""
DIGEST_MISMATCH = "RF.DigestMismatch"
RESERVED_WILDCARD = RESERVED_PREFIX + "*"
"""A ``StringMatches`` pattern that holds for every reserved (``States.*``) error name."""

INSTANCE_ID = "$$.Execution.Input.rf.instance_id"
EPOCH = "$$.Execution.Input.rf.epoch"
NATIVE_TAG = "States.Format('{}@{}', $$.Execution.Name, $$.State.EnteredTime)"
ENV_ROOT = "$.d"
RESUME_ROOT = "$.rf.node.data"
NODE = "$.rf.node"
ERROR_AT = "$.rf.error"

Mode = Literal["plain", "env"]
StateItems = list[tuple[str, dict[str, Any]]]


# --- structure ------------------------------------------------------------------------------


def needs_scope(branch: Branch) -> bool:
    """Whether a state of the branch (or below) needs its engine position at run time."""
    for state in branch.states.values():
        if isinstance(state, TaskState | SubFlowState | WaitForEventState):
            return True
        if isinstance(state, ParallelState) and any(needs_scope(b) for b in state.branches):
            return True
        if isinstance(state, MapState) and needs_scope(state.iterator):
            return True
    return False


def resume_roles(state: Any) -> tuple[str, ...]:
    """The resume entries a state gets: where a snapshot's token can stand at it."""
    if isinstance(state, TaskState | SubFlowState | ParallelState | MapState):
        return ("resume", "delay")
    if isinstance(state, WaitState | WaitForEventState):
        return ("resume",)
    return ()


def retriers_of(definition: FlowDefinition, state: Any) -> list[Retry]:
    """The retry policies that apply to ``state``: its own, else the flow's default_retry."""
    own: list[Retry] = list(getattr(state, "retry", []))
    if not own and isinstance(state, TaskState | SubFlowState):
        return list(definition.default_retry)
    return own


@dataclass
class Copy:
    """One compiled copy of a branch: the flow itself, a branch, an iterator, a resume copy."""

    prefix: str
    branch: Branch
    mode: Mode
    dynamic: bool
    """Inside a map iteration: the scope is known at run time only (``$.rf.scope``)."""
    scope: Any
    """The scope value (for the payloads) when not ``dynamic``."""
    top: bool
    resumable: bool
    end: str | None
    """Where ``end: true`` goes: ``None`` for ASL's End, else a state name."""
    repeats: bool = False
    """An enclosing Parallel or Map state lies on a loop: every state here can be entered
    again in the same scope."""
    uses_end: list[bool] = field(default_factory=lambda: [False])

    @property
    def root(self) -> str:
        return "$" if self.mode == "plain" else ENV_ROOT


def child_scope(copy: Copy, owner: str, index: Any, *, dynamic_index: bool) -> dict[str, Any]:
    """The scope value of a branch or item of ``owner`` (an ASL template)."""
    scope: dict[str, Any] = {}
    if copy.dynamic:
        scope["up.$"] = "$.rf.scope"
    else:
        scope["up"] = copy.scope
    scope["owner"] = owner
    if dynamic_index:
        scope["index.$"] = index
    else:
        scope["index"] = index
    return scope


def chain(items: StateItems, transition: dict[str, Any]) -> StateItems:
    """Link ``items`` in order; the last one gets ``transition`` (Next or End)."""
    for (_, state), (next_name, _) in itertools.pairwise(items):
        state["Next"] = next_name
    items[-1][1].update(transition)
    return items


def reachable(start: str, states: Mapping[str, Mapping[str, Any]]) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen or name not in states:
            continue
        seen.add(name)
        state = states[name]
        targets = [state.get("Next"), state.get("Default")]
        targets += [rule.get("Next") for rule in state.get("Choices", [])]
        targets += [entry.get("Next") for entry in state.get("Catch", [])]
        todo.extend(target for target in targets if isinstance(target, str))
    return seen
