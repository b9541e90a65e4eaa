"""Sub-flow definitions: how a ``sub_flow`` state finds the flow it starts, in Azure.

A snapshot embeds its own definition, but not the definitions of the sub-flows it may
start. The orchestrator must not read files or settings while it replays, so the starter
gathers them once into a *bundle* (the definitions the instance can reach, transitively)
and puts it in the orchestration input; a parent hands the same bundle to its children.

The starter takes sub-flows from the app (``RUSTYFLOWER_FLOWS_PATH``: a YAML/JSON file or
a folder of them shipped with the app) and from the request (the handover envelope's
``flows``, covered by its signature: ``core.snapshot.handover``). The app's win: a flow
version it ships is never replaced by the request's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rustyflower.core.model import (
    FlowDefinition,
    SubFlowState,
    iter_states,
    parse_definition,
    version_key,
)
from rustyflower.core.model.formats import load_definition
from rustyflower.core.model.states import Branch
from rustyflower.core.snapshot.canonical import definition_digest


class BundleError(ValueError):
    """Sub-flow definitions are missing or contradict each other."""


def sub_flow_calls(branch: Branch) -> Iterator[SubFlowState]:
    """Every ``sub_flow`` state of a definition, nested branches and iterators included."""
    return (state for state in iter_states(branch) if isinstance(state, SubFlowState))


class FlowBundle:
    """Definitions by name and version; a call without a version takes the highest one."""

    def __init__(self, definitions: Iterable[FlowDefinition] = ()) -> None:
        self._flows: dict[str, dict[str, FlowDefinition]] = {}
        for definition in definitions:
            self.add(definition)

    def add(self, definition: FlowDefinition) -> None:
        versions = self._flows.setdefault(definition.name, {})
        existing = versions.get(definition.version)
        if existing is not None and definition_digest(existing.document()) != definition_digest(
            definition.document()
        ):
            raise BundleError(
                f"flow {definition.name!r} version {definition.version!r} is given twice "
                "with different definitions"
            )
        versions[definition.version] = definition

    def __len__(self) -> int:
        return sum(len(versions) for versions in self._flows.values())

    def find(self, name: str, version: str | None) -> FlowDefinition | None:
        versions = self._flows.get(name)
        if not versions:
            return None
        if version is None:
            return versions[max(versions, key=version_key)]
        return versions.get(version)

    def definitions(self) -> list[FlowDefinition]:
        """Every definition, in a stable order (name, then version)."""
        found: list[FlowDefinition] = []
        for name in sorted(self._flows):
            versions = self._flows[name]
            found += [versions[version] for version in sorted(versions, key=version_key)]
        return found

    def reachable_from(self, root: FlowDefinition) -> FlowBundle:
        """The sub-flows ``root`` can start, transitively; raises BundleError for a missing one."""
        found = FlowBundle()
        pending: list[FlowDefinition] = [root]
        seen: set[str] = set()
        while pending:
            definition = pending.pop()
            if definition.key in seen:
                continue
            seen.add(definition.key)
            for call in sub_flow_calls(definition):
                target = self.find(call.flow, call.version)
                if target is None:
                    wanted = f"version {call.version!r}" if call.version else "any version"
                    raise BundleError(
                        f"flow {definition.name!r} calls sub-flow {call.flow!r} ({wanted}), "
                        "which is neither in the request's flows nor in the app's "
                        "RUSTYFLOWER_FLOWS_PATH"
                    )
                # every version a call without a version may pick stays in the bundle
                candidates = [target] if call.version else list(self._flows[call.flow].values())
                for candidate in candidates:
                    found.add(candidate)
                    pending.append(candidate)
        return found

    def documents(self) -> list[dict[str, Any]]:
        return [definition.document() for definition in self.definitions()]

    @classmethod
    def from_documents(cls, documents: Iterable[Any], source: str = "flows") -> FlowBundle:
        return cls(
            parse_definition(document, source=f"{source}[{index}]")
            for index, document in enumerate(documents)
        )

    @classmethod
    def from_path(cls, path: Path) -> FlowBundle:
        """Definitions from a YAML/JSON file, or from every such file of a folder."""
        if path.is_dir():
            files = sorted(
                p for p in path.rglob("*") if p.suffix.lower() in (".yaml", ".yml", ".json")
            )
        elif path.exists():
            files = [path]
        else:
            raise BundleError(f"RUSTYFLOWER_FLOWS_PATH {str(path)!r} does not exist")
        return cls(load_definition(p.read_text(encoding="utf-8"), source=str(p)) for p in files)

    def merged(self, other: FlowBundle) -> FlowBundle:
        merged = FlowBundle(self.definitions())
        for definition in other.definitions():
            merged.add(definition)
        return merged
