"""Engine: each transition traces the states it entered and left, with their data.

The trace is what a dashboard shows as a step's input and output (Step Functions'
``StateEntered`` input and ``StateExited`` output, Developer Guide "Input and output
processing"): the input is the data a state receives, the output what the next state
receives. It is not part of the snapshot.
"""

from __future__ import annotations

from typing import Any

from rustyflower import read_definition
from rustyflower.core.engine import (
    ActivityCompleted,
    ActivityFailed,
    EventReceived,
    RunActivity,
    StepTrace,
    TimerFired,
    Transition,
    advance,
    start,
)
from rustyflower.core.snapshot.document import encode_snapshot
from tests.unit.engine_kit import NOW, at, flow, of

ORDER = read_definition("examples/order/flow.yaml")
BIG = {"order_id": "A-1", "total": 1250.0, "items": ["kettle"]}


def steps(transition: Transition) -> list[tuple[str, str]]:
    return [(step.kind, step.position) for step in transition.trace]


def call(transition: Transition, activity: str) -> RunActivity:
    (found,) = [c for c in of(transition.commands, RunActivity) if c.activity == activity]
    return found


def test_the_order_flow_traces_every_state_it_passes_through_choices_included() -> None:
    started = start(ORDER, BIG, "o-1", NOW)
    assert started.trace == (StepTrace("entered", "Charge", BIG),)

    charge = call(started, "charge_card").call_id
    charged = advance(started.snapshot, ActivityCompleted(charge, {"charge_id": "c1"}), at(1))
    paid = BIG | {"payment": {"charge_id": "c1"}}
    assert charged.trace == (
        StepTrace("left", "Charge", paid),
        StepTrace("entered", "Large order?", paid),
        StepTrace("left", "Large order?", paid),
        StepTrace("entered", "Await approval", paid),
    )

    approved = advance(charged.snapshot, EventReceived("approval", {"approved": True}), at(2))
    assert steps(approved) == [
        ("left", "Await approval"),
        ("entered", "Approved?"),
        ("left", "Approved?"),
        ("entered", "Fulfil"),
        ("entered", "Fulfil[0]/Ship"),
        ("entered", "Fulfil[1]/Invoice"),
    ]
    assert approved.trace[-1].data == paid | {"approval": {"approved": True}}

    shipped = advance(
        approved.snapshot, ActivityCompleted(call(approved, "ship_order").call_id, "S"), at(3)
    )
    assert shipped.trace == (StepTrace("left", "Fulfil[0]/Ship", "S"),)
    done = advance(
        shipped.snapshot, ActivityCompleted(call(approved, "send_invoice").call_id, "I"), at(4)
    )
    output = paid | {
        "approval": {"approved": True},
        "fulfilment": {"shipment": "S", "invoice": "I"},
    }
    assert done.trace == (
        StepTrace("left", "Fulfil[1]/Invoice", "I"),
        StepTrace("left", "Fulfil", output),
        StepTrace("entered", "Done", output),
        StepTrace("left", "Done", output),
    )
    assert done.snapshot.state.output == output


def test_a_retry_is_not_a_new_entry_and_a_caught_error_leaves_with_its_result_path() -> None:
    started = start(ORDER, BIG, "o-2", NOW)
    first = call(started, "charge_card")
    failed = advance(started.snapshot, ActivityFailed(first.call_id, "GatewayUnavailable"), at(1))
    assert failed.trace == ()  # a retry timer: the state stays entered
    (retry_timer,) = failed.snapshot.state.tokens["Charge"].pending
    again = advance(failed.snapshot, TimerFired(retry_timer), at(2))
    assert again.trace == ()
    declined = advance(
        again.snapshot,
        ActivityFailed(call(again, "charge_card").call_id, "CardDeclined", "no funds"),
        at(3),
    )
    caught = BIG | {"error": {"Error": "CardDeclined", "Cause": "no funds"}}
    assert declined.trace == (
        StepTrace("left", "Charge", caught),
        StepTrace("entered", "Declined", caught),
    )


def test_map_items_are_traced_at_their_item_positions() -> None:
    definition = flow(
        {
            "M": {
                "type": "map",
                "items_path": "$.xs",
                "iterator": {"start_at": "P", "states": {"P": {"type": "pass", "end": True}}},
                "end": True,
            }
        },
        start_at="M",
    )
    transition = start(definition, {"xs": [1, 2]}, "m-1", NOW)
    assert steps(transition) == [
        ("entered", "M"),
        ("entered", "M[0]/P"),  # items start together (no max_concurrency), then run
        ("entered", "M[1]/P"),
        ("left", "M[0]/P"),
        ("left", "M[1]/P"),
        ("left", "M"),
    ]
    assert transition.snapshot.state.output == [1, 2]


def test_the_trace_stays_out_of_the_snapshot() -> None:
    started = start(ORDER, BIG, "o-3", NOW)
    assert b"entered" not in encode_snapshot(started.snapshot)
    payload: Any = started.trace[0].data
    assert payload is BIG  # the same value, not a copy: tracing costs no serialisation
