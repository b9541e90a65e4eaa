"""The sub-flows an instance may start, from the site's registry (they travel with it to
Azure, whose orchestrator cannot read a registry)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from rustyflower.core.errors import UnknownFlowError
from rustyflower.core.instance_store import InstanceStore
from rustyflower.core.model import Branch, FlowDefinition, SubFlowState, iter_states

__all__ = ["sub_flow_calls", "sub_flow_definitions"]


def sub_flow_calls(branch: Branch) -> Iterator[SubFlowState]:
    """Every ``sub_flow`` state of a flow, nested branches and iterators included."""
    return (state for state in iter_states(branch) if isinstance(state, SubFlowState))


def sub_flow_definitions(
    store: InstanceStore, roots: Iterable[FlowDefinition]
) -> list[FlowDefinition]:
    """The registered flows the ``roots`` can start, transitively (the latest version for a
    call without one). Flows not registered here are left out: the cloud may ship them."""
    found: dict[str, FlowDefinition] = {}
    pending = list(roots)
    seen: set[str] = set()
    while pending:
        definition = pending.pop()
        for call in sub_flow_calls(definition):
            try:
                target = store.definition(call.flow, call.version)
            except UnknownFlowError:
                continue
            if target.key not in seen:
                seen.add(target.key)
                found[target.key] = target
                pending.append(target)
    return list(found.values())
