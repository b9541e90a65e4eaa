"""Checks on the shape of a flow's state graph, over raw mappings.

They run on raw data (not only on a validated model) so that a definition with field
errors still gets its graph problems reported in the same pass.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rustyflower.core.contract import ReservedError
from rustyflower.core.errors import Problem
from rustyflower.core.model.common import STATE_NAME_PATTERN
from rustyflower.core.model.states import STATE_TYPES, transitions_of

_NAME = re.compile(STATE_NAME_PATTERN)
_TERMINAL_TYPES = {"succeed", "fail"}
_NO_TRANSITION_TYPES = {"choice", "succeed", "fail"}


def state_location(prefix: str, name: str) -> str:
    return f"{prefix} > state {name!r}" if prefix else f"state {name!r}"


def flow_problems(flow: Mapping[str, Any]) -> list[Problem]:
    """Every graph problem of a whole flow, including its flow-level error handlers."""
    problems: list[Problem] = []
    handlers = flow.get("on_error")
    roots: list[str] = []
    states = flow.get("states")
    for key in ("default_retry", "on_error"):
        problems += [Problem("flow", text) for text in policy_order_problems(flow.get(key), key)]
    if isinstance(handlers, list):
        for index, handler in enumerate(handlers):
            target = handler.get("next") if isinstance(handler, Mapping) else None
            if not isinstance(target, str):
                continue
            if isinstance(states, Mapping) and target not in states:
                problems.append(
                    Problem("flow", f"on_error[{index}].next {target!r} is not a state here")
                )
            else:
                roots.append(target)
    return problems + graph_problems(flow, extra_roots=roots)


def policy_order_problems(policies: Any, what: str) -> list[str]:
    """ASL: a States.ALL entry (also the default when errors is left out) must come last."""
    if not isinstance(policies, list):
        return []
    problems = []
    for index, policy in enumerate(policies[:-1]):
        if not isinstance(policy, Mapping):
            continue
        errors = policy.get("errors", [ReservedError.ALL])
        if isinstance(errors, list) and ReservedError.ALL in errors:
            problems.append(
                f"{what}[{index}] uses {ReservedError.ALL} but is not the last {what} entry"
            )
    return problems


def graph_problems(
    branch: Mapping[str, Any], prefix: str = "", extra_roots: list[str] | None = None
) -> list[Problem]:
    """Every graph problem of a branch and of the branches nested in it.

    ``extra_roots`` are states entered from outside the graph (flow-level on_error targets).
    """
    states = branch.get("states")
    if not isinstance(states, Mapping) or not states:
        return []  # reported by field validation
    problems: list[Problem] = []
    start = branch.get("start_at")
    where = prefix or "flow"
    if isinstance(start, str) and start not in states:
        problems.append(Problem(where, f"start_at {start!r} is not a state of this flow"))

    edges: dict[str, list[str]] = {}
    broken: set[str] = set()  # already reported: do not also call them endless loops
    for name, state in states.items():
        location = state_location(prefix, str(name))
        if not _NAME.match(str(name)):
            problems.append(
                Problem(
                    location,
                    "a state name is 1-80 characters without / [ ] ~ : # or control characters",
                )
            )
        if not isinstance(state, Mapping):
            continue
        transition_problems = _transition_problems(state, location)
        if transition_problems:
            broken.add(str(name))
        problems.extend(transition_problems)
        for key in ("retry", "catch"):
            problems += [
                Problem(location, text) for text in policy_order_problems(state.get(key), key)
            ]
        targets = []
        for label, target in transitions_of(dict(state)):
            if target not in states:
                problems.append(Problem(location, f"{label} {target!r} is not a state here"))
                broken.add(str(name))
            else:
                targets.append(target)
        edges[str(name)] = targets
        problems.extend(_nested_problems(state, location))

    if isinstance(start, str) and start in states:
        reachable: set[str] = set()
        for root in [start, *(extra_roots or [])]:
            reachable |= _reachable(root, edges)
        for name in states:
            if name not in reachable:
                problems.append(
                    Problem(state_location(prefix, str(name)), "unreachable from start_at")
                )
        problems.extend(_dead_ends(states, edges, reachable, broken, prefix))
    return problems


def _transition_problems(state: Mapping[str, Any], location: str) -> list[Problem]:
    kind = state.get("type")
    if kind not in STATE_TYPES or kind in _NO_TRANSITION_TYPES:
        return []
    has_next = isinstance(state.get("next"), str)
    has_end = state.get("end") is True
    if has_next and has_end:
        return [Problem(location, "give next or end: true, not both")]
    if not has_next and not has_end:
        return [Problem(location, "needs next (a state name) or end: true")]
    return []


def _nested_problems(state: Mapping[str, Any], location: str) -> list[Problem]:
    problems: list[Problem] = []
    if state.get("type") == "parallel" and isinstance(state.get("branches"), list):
        for index, branch in enumerate(state["branches"]):
            if isinstance(branch, Mapping):
                problems.extend(graph_problems(branch, f"{location} > branches[{index}]"))
    if state.get("type") == "map" and isinstance(state.get("iterator"), Mapping):
        problems.extend(graph_problems(state["iterator"], f"{location} > iterator"))
    return problems


def _reachable(start: str, edges: Mapping[str, list[str]]) -> set[str]:
    seen = {start}
    stack = [start]
    while stack:
        for target in edges.get(stack.pop(), []):
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


def _is_terminal(state: Any) -> bool:
    if not isinstance(state, Mapping):
        return True  # its own field errors are reported; do not pile on
    return state.get("type") in _TERMINAL_TYPES or state.get("end") is True


def _dead_ends(
    states: Mapping[str, Any],
    edges: Mapping[str, list[str]],
    reachable: set[str],
    broken: set[str],
    prefix: str,
) -> list[Problem]:
    """Reachable states from which no path leads to an end: a flow that could never finish.

    States with a reported transition problem count as able to finish, so that one
    mistake is reported once rather than as a loop at every state before it.
    """
    can_finish = {name for name, state in states.items() if _is_terminal(state)} | broken
    # Walk the edges backwards from the states that can finish: linear in states + edges
    # (a fixed point over all edges was quadratic: 29 s for a 10,000-state chain).
    sources: dict[str, list[str]] = {}
    for name, targets in edges.items():
        for target in targets:
            sources.setdefault(target, []).append(name)
    stack = list(can_finish)
    while stack:
        for source in sources.get(stack.pop(), []):
            if source not in can_finish:
                can_finish.add(source)
                stack.append(source)
    return [
        Problem(state_location(prefix, name), "no path from here reaches an end (endless loop)")
        for name in states
        if name in reachable and name not in can_finish
    ]
