"""The in-process runtime: one runtime, two clocks, no server.

It carries out the engine's commands in this process, on a real clock (activities in
threads, timers that sleep: ``rustyflower run``) or on a virtual one (time jumps from
one event to the next: ``rustyflower run --virtual-time`` and the test kit). The
``_name`` modules are private; the CLI imports this package, and users reach the same
names through ``rustyflower.testing``.
"""

from rustyflower.adapters.local._clock import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_WAIT_SECONDS,
    EPOCH,
    Clock,
    RealClock,
    VirtualClock,
)
from rustyflower.adapters.local._errors import CallCrashedError, EndlessFlowError, HarnessError
from rustyflower.adapters.local._results import ActivityCall, RunResult
from rustyflower.adapters.local._runtime import (
    UNKNOWN_FLOW,
    Cut,
    LocalRuntime,
    Transfer,
    TransitionListener,
    VirtualRuntime,
    at_transitions,
    every_transition,
    round_trip,
    run_flow,
)
from rustyflower.adapters.local._world import (
    DEFAULT_MAX_EVENTS,
    FlowLibrary,
    ScriptedEvent,
    World,
)

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_EVENTS",
    "DEFAULT_MAX_WAIT_SECONDS",
    "EPOCH",
    "UNKNOWN_FLOW",
    "ActivityCall",
    "CallCrashedError",
    "Clock",
    "Cut",
    "EndlessFlowError",
    "FlowLibrary",
    "HarnessError",
    "LocalRuntime",
    "RealClock",
    "RunResult",
    "ScriptedEvent",
    "Transfer",
    "TransitionListener",
    "VirtualClock",
    "VirtualRuntime",
    "World",
    "at_transitions",
    "every_transition",
    "round_trip",
    "run_flow",
]
