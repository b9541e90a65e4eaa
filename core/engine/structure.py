"""Fast look-ups into a definition: which branch a scope runs, compiled templates, loops."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from rustyflower.core.expressions import Template, compile_template
from rustyflower.core.model import Branch, FlowDefinition, MapState, ParallelState
from rustyflower.core.model.reentry import reentered_states, reruns_its_branches

_CACHE_SIZE = 64


class FlowStructure:
    """Per-definition caches; built once per definition object and reused by every transition."""

    def __init__(self, definition: FlowDefinition) -> None:
        self.definition = definition
        self._branches: dict[str, Branch] = {"": definition}
        self._templates: dict[int, Template] = {}
        self._reentered: dict[int, frozenset[str]] = {}

    def branch(self, scope: str) -> Branch:
        """The branch a scope like ``"Ship[0]/Items[3]/"`` runs."""
        found = self._branches.get(scope)
        if found is not None:
            return found
        parent_scope, owner, index = split_scope(scope)
        owner_state = self.branch(parent_scope).states[owner]
        if isinstance(owner_state, ParallelState):
            found = owner_state.branches[index]
        elif isinstance(owner_state, MapState):
            found = owner_state.iterator
            # every item of a map runs the same iterator: cache by a shared key too
        else:
            raise KeyError(f"scope {scope!r} does not name a parallel or map branch")
        if len(self._branches) < 10_000:
            self._branches[scope] = found
        return found

    def reentered(self, branch: Branch) -> frozenset[str]:
        """The states of ``branch`` that lie on a loop (:mod:`rustyflower.core.model.reentry`)."""
        found = self._reentered.get(id(branch))
        if found is None:
            found = self._reentered[id(branch)] = reentered_states(branch)
        return found

    def repeatable(self, position: str) -> bool:
        """Whether the state at ``position`` can be entered again in the same scope: it,
        or a Parallel or Map state enclosing it, lies on a loop, or an enclosing one is
        retried."""
        scope, _, name = position.rpartition("/")
        nested = False
        while True:
            branch = self.branch(scope + "/" if scope else "")
            if name in self.reentered(branch):
                return True
            if nested and reruns_its_branches(branch.states[name]):
                return True
            if not scope:
                return False
            parent, owner, _ = split_scope(scope + "/")
            scope, name, nested = parent[:-1], owner, True

    def template(self, source: dict[str, Any]) -> Template:
        key = id(source)
        compiled = self._templates.get(key)
        if compiled is None:
            compiled = compile_template(source)
            self._templates[key] = compiled
        return compiled


def split_scope(scope: str) -> tuple[str, str, int]:
    """``"A[0]/B[2]/"`` -> (``"A[0]/"``, ``"B"``, 2)."""
    inner = scope[:-1]
    cut = inner.rfind("/") + 1
    last = inner[cut:]
    bracket = last.rfind("[")
    return inner[:cut], last[:bracket], int(last[bracket + 1 : -1])


def child_scope(owner_position: str, index: int) -> str:
    return f"{owner_position}[{index}]/"


_structures: OrderedDict[int, FlowStructure] = OrderedDict()


def structure_of(definition: FlowDefinition) -> FlowStructure:
    """The cached structure of a definition (keeps the definition alive while cached)."""
    key = id(definition)
    found = _structures.get(key)
    if found is not None and found.definition is definition:
        _structures.move_to_end(key)
        return found
    found = FlowStructure(definition)
    _structures[key] = found
    if len(_structures) > _CACHE_SIZE:
        _structures.popitem(last=False)
    return found
