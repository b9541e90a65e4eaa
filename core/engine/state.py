"""The instance value: everything needed to continue a flow anywhere.

All of it is immutable. The engine builds a new value per transition and shares every
unchanged part with the old one, which keeps transitions cheap and the old value valid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import StrictBool, StrictInt, StrictStr, TypeAdapter

from rustyflower.core.engine.commands import Command
from rustyflower.core.model import FlowDefinition

Status = Literal["running", "succeeded", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
DEFAULT_HISTORY_LIMIT = 100


@dataclass(frozen=True, slots=True)
class Token:
    """One live position: the root flow, a parallel branch or a map item.

    ``data`` is the raw input of the state the token is at. ``scope`` names the branch
    instance (``""`` for the flow, ``"Ship[0]/"`` for branch 0 of state Ship).
    """

    scope: StrictStr
    state: StrictStr
    data: Any
    attempt: StrictInt = 0
    retries: tuple[StrictInt, ...] = ()
    pending: tuple[str, ...] = ()
    joining: StrictBool = False

    @property
    def position(self) -> str:
        return self.scope + self.state


@dataclass(frozen=True, slots=True)
class Pending:
    """Work the instance waits for; ``command`` re-issues it on another runtime."""

    id: str
    token: str
    purpose: str
    command: Command
    dispatched: StrictBool = True


@dataclass(frozen=True, slots=True)
class Frame:
    """Join bookkeeping of a running Parallel or Map state, keyed by its token's position."""

    owner: str
    kind: Literal["parallel", "map"]
    results: tuple[Any, ...]
    done: tuple[StrictBool, ...]
    running: StrictInt
    next_item: StrictInt = 0
    items: tuple[Any, ...] = ()
    effective_input: Any = None


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    seq: StrictInt
    at: str
    kind: str
    position: str = ""
    detail: Any = None


@dataclass(frozen=True, slots=True)
class ParentLink:
    """Set on a child flow: where to report its end."""

    instance_id: str
    call_id: str


@dataclass(frozen=True, slots=True)
class InstanceState:
    input: Any
    started_at: str
    tokens: dict[str, Token] = field(default_factory=dict)
    frames: dict[str, Frame] = field(default_factory=dict)
    pending: dict[str, Pending] = field(default_factory=dict)
    counter: StrictInt = 0
    retried: StrictInt = 0
    """Operator retries of the failed instance: once retried, its calls carry their number
    in the key, so a call made again by the retry is not mistaken for the failed one."""
    held: StrictBool = False
    output: Any = None
    error: str | None = None
    cause: str | None = None
    finished_at: str | None = None
    failed_position: str | None = None
    failed_input: Any = None
    history: tuple[HistoryEntry, ...] = ()
    history_limit: StrictInt = DEFAULT_HISTORY_LIMIT
    history_dropped: StrictInt = 0
    parent: ParentLink | None = None


STATE_ADAPTER: TypeAdapter[InstanceState] = TypeAdapter(InstanceState)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A flow instance as a value. ``seq`` counts transitions; ``epoch`` names its owner."""

    instance_id: str
    definition: FlowDefinition
    digest: str
    status: Status
    seq: StrictInt
    epoch: int
    updated_at: str
    state: InstanceState

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def positions(self) -> list[str]:
        """Where the instance stands: the positions of its live tokens."""
        return [token.position for token in self.state.tokens.values() if not token.joining]


@dataclass(frozen=True, slots=True)
class StepTrace:
    """A state entered or left during one transition, with the data that came in or out.

    ``entered``: ``data`` is the state's input (the raw data the token brings). ``left``:
    ``data`` is the state's output, what the next state receives (or the branch's or
    flow's result when it ends the branch); a caught error leaves with the data its
    ``result_path`` shaped. A retry is not a new entry: the state was entered once.
    These are what Step Functions' history calls ``StateEntered`` and ``StateExited``.
    """

    kind: Literal["entered", "left"]
    position: str
    data: Any


@dataclass(frozen=True, slots=True)
class Transition:
    """The result of ``start`` or ``advance``: the new value and what to do next."""

    snapshot: Snapshot
    commands: tuple[Command, ...]
    trace: tuple[StepTrace, ...] = ()
    """The states this transition entered and left, in order. Not part of the snapshot
    (which stays small and portable): a runtime that shows step data keeps it aside."""
