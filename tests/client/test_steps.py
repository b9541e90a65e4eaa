"""``Client.steps``: each state an instance visited, with its input and output.

The commits log what the engine traced (``adapters.redis.step_log``); these tests run the
order example on a real worker, on the embedded Valkey and on Redis 7, and read the log
back through the public client.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from examples.order.activities import registry
from rustyflower import Flow, read_definition
from rustyflower.adapters.redis.keys import Keyspace
from rustyflower.adapters.redis.step_log import STEP_DATA_LIMIT, read_steps
from rustyflower.client import Client, UnknownInstanceError
from rustyflower.worker import Worker

pytestmark = pytest.mark.emulator

ORDER = read_definition("examples/order/flow.yaml")
BIG = {"order_id": "S-1", "total": 1250.0, "items": ["kettle", "teapot"]}


def visits(client: Client, instance_id: str) -> list[tuple[str, bool]]:
    return [(visit.position, visit.left) for visit in client.steps(instance_id)]


def eventually(predicate: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return found


def test_the_order_flow_logs_each_visit_with_its_input_and_output(client: Client) -> None:
    client.register(ORDER, activities=registry)
    with Worker(client, registry, concurrency=2, name="steps-tests"):
        order = client.start("order", BIG)
        eventually(lambda: order.status().positions == ("Await approval",))
        assert visits(client, order.id) == [
            ("Charge", True),  # retried once (the example's busy gateway): still one visit
            ("Large order?", True),
            ("Await approval", False),
        ]
        charge, choice, waiting = client.steps(order.id)
        assert charge.input == BIG and charge.entered_seq == 1
        payment = charge.output["payment"]
        assert payment["charge_id"] == "ch_S-1"
        assert charge.output == BIG | {"payment": payment}
        assert choice.input == choice.output == charge.output
        assert waiting.input == charge.output and waiting.left_at is None

        order.signal("approval", {"approved": True})
        final = order.result(timeout=30)
    steps = client.steps(order.id)
    assert [visit.position for visit in steps] == [
        "Charge",
        "Large order?",
        "Await approval",
        "Approved?",
        "Fulfil",
        "Fulfil[0]/Ship",
        "Fulfil[1]/Invoice",
        "Done",
    ]
    by_position = {visit.position: visit for visit in steps}
    assert by_position["Await approval"].output["approval"] == {"approved": True}
    assert by_position["Fulfil[0]/Ship"].output == {"tracking": "TRK-S-1", "parcels": 2}
    assert by_position["Fulfil"].output == by_position["Done"].input == final
    assert all(visit.left for visit in steps)
    assert steps[0].as_dict()["state"] == "Charge"
    assert by_position["Fulfil[1]/Invoice"].state == "Invoice"


def test_a_value_too_large_to_log_is_left_out_with_its_size(client: Client) -> None:
    client.register(Flow("big", version="1").pass_("Echo").build())
    payload = {"text": "x" * STEP_DATA_LIMIT}
    started = client.start("big", payload)
    (visit,) = eventually(lambda: client.steps(started.id))
    size = len(b'{"text":""}') + STEP_DATA_LIMIT
    assert (visit.input, visit.input_omitted) == (None, size)
    assert (visit.output, visit.output_omitted) == (None, size)
    assert started.status().output == payload  # the instance itself keeps it


def test_a_visit_whose_entry_was_trimmed_off_still_shows_how_it_left(client: Client) -> None:
    client.register(Flow("short", version="1").pass_("Only").build())
    started = client.start("short", {"n": 1})
    eventually(lambda: client.steps(started.id))
    keys = Keyspace(prefix=client.prefix)
    raw = redis.Redis.from_url(client.url)
    log = keys.steps(started.id)
    first = raw.xrange(log, "-", "+", count=1)[0][0]
    raw.xdel(log, first)  # what trimming the oldest entry does
    (visit,) = read_steps(raw, keys, started.id)
    assert (visit.position, visit.entered_at, visit.output) == ("Only", None, {"n": 1})
    raw.close()


def test_a_state_entered_with_what_the_one_before_left_with_logs_it_once(
    client: Client,
) -> None:
    flow = Flow("chain", version="1").pass_("First", next="Second").pass_("Second").build()
    client.register(flow)
    document = {"text": "y" * 2000}
    started = client.start("chain", document)
    eventually(lambda: started.status().status == "succeeded")
    first, second = client.steps(started.id)
    assert first.output == second.input == second.output == document
    keys = Keyspace(prefix=client.prefix)
    raw = redis.Redis.from_url(client.url)
    entries = raw.xrange(keys.steps(started.id), "-", "+")
    logged = b"".join(fields[b"e"] for _id, fields in entries)
    assert logged.count(b"y" * 2000) == 3  # First in, First out, Second out: not Second in
    raw.xdel(keys.steps(started.id), *(entry_id for entry_id, _f in entries[:2]))  # trimmed
    (second,) = read_steps(raw, keys, started.id)
    assert (second.position, second.input, second.output) == ("Second", None, document)
    raw.close()


def test_steps_of_an_unknown_instance_is_an_error(client: Client) -> None:
    with pytest.raises(UnknownInstanceError):
        client.steps("nobody")
