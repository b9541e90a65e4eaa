"""The RustyFlower test kit: run flows in your tests, on a virtual clock, in microseconds.

:func:`run_flow` runs one instance of a flow to its end in this process: the activities
of your registry run for real, while time is virtual by default, so an hour-long wait
or timeout costs nothing and every run is deterministic. A :class:`World` holds what
the run meets: the activities (and, optionally, how many virtual seconds each call
lasts), the sub-flows, and the external events the outside world sends
(:class:`ScriptedEvent`: ``after_seconds`` after the flow starts waiting for it)::

    from rustyflower import read_definition
    from rustyflower.testing import ScriptedEvent, World, run_flow

    flow = read_definition("flows/order.yaml")
    world = World(registry, events=[ScriptedEvent("approval", {"approved": True}, 600)])
    result = run_flow(flow, {"total": 1250}, world, cut="every", failover=True)
    assert result.status == "succeeded"

Cut policies check that a flow survives being moved: with ``cut="every"`` (or a
predicate of the transition number, e.g. :func:`at_transitions`) the snapshot is
encoded, signed, decoded and continued after each chosen transition, and with
``failover=True`` a brand-new runtime continues it from the snapshot alone, as after a
failover to another site or cloud. The :class:`RunResult` tells how the run ended, how
long it took, and every activity call (:class:`ActivityCall`, with its idempotency key).

The same runtime runs on the real clock (:class:`RealClock`: activities in threads,
timers that sleep); ``rustyflower run`` uses it, and ``rustyflower run --virtual-time``
uses the virtual one. :class:`HarnessError` (an ``AssertionError``) says the runtime
could not carry out a run: an event the engine refused, an endless flow
(:class:`EndlessFlowError`), an activity call that crashed the interpreter's way
(:class:`CallCrashedError`).
"""

from __future__ import annotations

from rustyflower.adapters.local import (
    DEFAULT_MAX_EVENTS,
    EPOCH,
    ActivityCall,
    CallCrashedError,
    Clock,
    Cut,
    EndlessFlowError,
    FlowLibrary,
    HarnessError,
    LocalRuntime,
    RealClock,
    RunResult,
    ScriptedEvent,
    Transfer,
    TransitionListener,
    VirtualClock,
    VirtualRuntime,
    World,
    at_transitions,
    every_transition,
    round_trip,
    run_flow,
)

__all__ = [
    "DEFAULT_MAX_EVENTS",
    "EPOCH",
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
