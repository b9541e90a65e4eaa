"""Which states a flow can enter more than once in the same scope.

An activity call's idempotency key must be the same wherever the call is made (the site,
AWS, Azure) so that a call made again after a failover is recognised. A state that can be
entered only once per scope is named by its position and attempt alone; only a state that
can be entered again (it lies on a loop: a Choice going back, a Catch leading back, a
flow-level ``on_error`` target that leads back) needs a further number to tell its visits
apart. Parallel branches and map items are scopes of their own, so a state inside them is
entered again only when its enclosing state is, or when its enclosing state is retried
(a retried Parallel or Map runs its branches again, in the same scopes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from rustyflower.core.model.definition import FlowDefinition
from rustyflower.core.model.states import Branch, transitions_of


def reentered_states(branch: Branch) -> frozenset[str]:
    """The states of ``branch`` (not of the branches nested in it) that lie on a loop.

    For a whole flow, its ``on_error`` handlers count as edges from every state: an error
    can escape from any of them to the handler's target.
    """
    edges: dict[str, list[str]] = {
        name: [target for _, target in transitions_of(state)]
        for name, state in branch.states.items()
    }
    if isinstance(branch, FlowDefinition) and branch.on_error:
        handler_targets = [handler.next for handler in branch.on_error]
        for targets in edges.values():
            targets.extend(handler_targets)
    return frozenset(_states_on_cycles(edges))


def reruns_its_branches(state: object) -> bool:
    """Whether a Parallel or Map state runs its branches again in the same scopes when it is
    retried (it has retry policies)."""
    return bool(getattr(state, "retry", ()))


def _states_on_cycles(edges: Mapping[str, Sequence[str]]) -> set[str]:
    """Nodes in a strongly connected component with a cycle (Kosaraju, iteratively).

    Iterative because definitions with thousands of states are valid and recursion would
    hit Python's limit.
    """
    order = _finish_order(edges, edges)
    reverse: dict[str, list[str]] = {name: [] for name in edges}
    for source, targets in edges.items():
        for target in targets:
            reverse.setdefault(target, []).append(source)
    on_cycles: set[str] = set()
    assigned: set[str] = set()
    for root in reversed(order):
        if root in assigned:
            continue
        component = _collect(root, reverse, assigned)
        if len(component) > 1 or root in edges.get(root, ()):
            on_cycles.update(component)
    return on_cycles


def _finish_order(nodes: Iterable[str], edges: Mapping[str, Sequence[str]]) -> list[str]:
    order: list[str] = []
    visited: set[str] = set()
    for root in nodes:
        if root in visited:
            continue
        visited.add(root)
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            node, index = stack.pop()
            targets = edges.get(node, ())
            if index < len(targets):
                stack.append((node, index + 1))
                target = targets[index]
                if target not in visited:
                    visited.add(target)
                    stack.append((target, 0))
            else:
                order.append(node)
    return order


def _collect(root: str, edges: Mapping[str, Sequence[str]], assigned: set[str]) -> list[str]:
    assigned.add(root)
    component = [root]
    stack = [root]
    while stack:
        for target in edges.get(stack.pop(), ()):
            if target not in assigned:
                assigned.add(target)
                component.append(target)
                stack.append(target)
    return component
