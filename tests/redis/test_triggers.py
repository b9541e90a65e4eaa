"""The flows' triggers on the site: Redis streams, heard through consumer groups.

A message on a queue, and an event on a bus, starts exactly one instance, also when it is
delivered again (a worker that took it died before acknowledging it, and another claims
it); an event on a bus signals the instance it names once, however often it comes.
"""

from __future__ import annotations

import time

import pytest

from rustyflower.adapters.redis.triggers import TriggerListener, trigger_group
from rustyflower.adapters.services.onprem import OnPremBackends, event_stream, queue_stream
from rustyflower.core.model import parse_definition
from rustyflower.core.services import EventPublish, QueueSend
from tests.redis.conftest import Runtime

pytestmark = pytest.mark.emulator

FLOW = parse_definition(
    {
        "name": "orders",
        "start_at": "Approve",
        "states": {
            "Approve": {
                "type": "wait_for_event",
                "event": "approved",
                "result_path": "$.approval",
                "end": True,
            }
        },
        "triggers": [
            {"name": "new-orders", "source": "queue", "queue": "incoming"},
            {
                "name": "approvals",
                "source": "events",
                "bus": "decisions",
                "type": "order.approved",
                "action": "signal",
                "event": "approved",
                "instance_path": "$.detail.instance",
                "input_path": "$.detail.by",
            },
        ],
    }
)

# a flow an event starts: its input is the event as a trigger reads it (input_path $)
SHIPPING = parse_definition(
    {
        "name": "shipping",
        "start_at": "Ship",
        "states": {"Ship": {"type": "wait_for_event", "event": "shipped", "end": True}},
        "triggers": [
            {
                "name": "on-approval",
                "source": "events",
                "bus": "decisions",
                "type": "order.approved",
            }
        ],
    }
)


def listener(runtime: Runtime, name: str, visibility: float = 30.0) -> TriggerListener:
    found = TriggerListener(runtime.store, runtime.conductor, name, visibility_timeout=visibility)
    found.refresh()
    return found


def instances(runtime: Runtime) -> list[str]:
    return sorted(info.instance_id for info in runtime.store.list_instances(flow="orders"))


def test_a_message_starts_one_instance_and_redelivery_starts_none(runtime: Runtime) -> None:
    runtime.store.register(FLOW)
    heard = listener(runtime, "w1", visibility=0.2)  # the group exists from here on
    producer = OnPremBackends(runtime.client, runtime.keys.prefix)
    sent = producer.send_message(QueueSend("incoming", {"order": "A-1"}), "k1")
    stream = queue_stream(runtime.keys.prefix, "incoming")
    group = trigger_group("orders", "new-orders")

    # a worker takes the message, starts the instance and dies before acknowledging it
    read = runtime.client.xreadgroup(group, "dead", {stream: ">"}, count=1)
    (_, ((entry_id, fields),)) = read[0]
    heard.handle(heard.listening[0], entry_id.decode(), fields)
    assert instances(runtime) == [f"orders:new-orders@{sent}"]

    time.sleep(0.3)  # past the visibility timeout: another worker claims it
    assert heard.round() == 1
    assert instances(runtime) == [f"orders:new-orders@{sent}"]  # nothing started twice
    assert runtime.client.xpending(stream, group)["pending"] == 0
    started = runtime.store.load(f"orders:new-orders@{sent}")
    assert started.state.input == {"order": "A-1"}
    assert heard.round() == 0

    second = producer.send_message(QueueSend("incoming", {"order": "A-2"}), "k2")
    assert heard.round() == 1
    assert instances(runtime) == sorted(
        [f"orders:new-orders@{sent}", f"orders:new-orders@{second}"]
    )


def test_an_event_starts_one_instance_and_redelivery_starts_none(runtime: Runtime) -> None:
    runtime.store.register(SHIPPING)
    heard = listener(runtime, "w1", visibility=0.2)
    producer = OnPremBackends(runtime.client, runtime.keys.prefix)
    detail = {"order": "A-1", "by": "ann"}
    sent = producer.publish_event(EventPublish("decisions", "order.approved", detail), "p1")
    # the publisher's call run again (a crash, a failover) sends no second event
    assert producer.publish_event(EventPublish("decisions", "order.approved", detail), "p1") == sent
    stream = event_stream(runtime.keys.prefix, "decisions")
    group = trigger_group("shipping", "on-approval")

    def started() -> list[str]:
        return sorted(i.instance_id for i in runtime.store.list_instances(flow="shipping"))

    # a worker takes the event, starts the instance and dies before acknowledging it
    read = runtime.client.xreadgroup(group, "dead", {stream: ">"}, count=1)
    (_, ((entry_id, fields),)) = read[0]
    assert entry_id.decode() == sent
    heard.handle(heard.listening[0], sent, fields)
    instance_id = f"shipping:on-approval@{sent}"
    assert started() == [instance_id]
    snapshot = runtime.store.load(instance_id, fresh=True)
    assert snapshot.state.input == {
        "type": "order.approved",
        "source": "rustyflower",
        "detail": {"order": "A-1", "by": "ann"},
    }
    seq = snapshot.seq

    time.sleep(0.3)  # past the visibility timeout: another worker claims the same event
    assert heard.round() == 1
    assert started() == [instance_id]  # the same event id: nothing started again
    assert runtime.store.load(instance_id, fresh=True).seq == seq  # nor touched
    assert runtime.client.xpending(stream, group)["pending"] == 0
    heard.handle(heard.listening[0], sent, fields)  # heard once more (a replay): nothing
    assert started() == [instance_id]

    # another type is no event of the trigger; another event of its type is another start
    producer.publish_event(EventPublish("decisions", "order.rejected", detail), "p2")
    other = producer.publish_event(EventPublish("decisions", "order.approved", detail), "p3")
    assert heard.round() == 2
    assert started() == sorted([instance_id, f"shipping:on-approval@{other}"])


def test_an_event_signals_the_instance_it_names_once(runtime: Runtime) -> None:
    runtime.store.register(FLOW)
    heard = listener(runtime, "w1")
    runtime.conductor.start("orders", {}, instance_id="o-1")
    producer = OnPremBackends(runtime.client, runtime.keys.prefix)
    detail = {"instance": "o-1", "by": "ann"}
    producer.publish_event(EventPublish("decisions", "order.rejected", detail), "e0")
    assert heard.round() == 1  # another type: ignored (acknowledged)
    assert runtime.store.load("o-1", fresh=True).status == "running"
    producer.publish_event(EventPublish("decisions", "order.approved", detail), "e1")
    assert heard.round() == 1
    done = runtime.store.load("o-1", fresh=True)
    assert (done.status, done.state.output) == ("succeeded", {"approval": "ann"})

    # the same message heard again (a second group's worker, a replay): no second signal
    listening = next(item for item in heard.listening if item.trigger.name == "approvals")
    (entry_id, fields) = runtime.client.xrange(listening.stream)[-1]
    heard.handle(listening, entry_id.decode(), fields)  # no error: it is remembered
    assert runtime.store.load("o-1", fresh=True).seq == done.seq


def test_the_worker_hears_triggers(runtime: Runtime) -> None:
    from tests.redis.activities import running_worker, wait_finished  # noqa: PLC0415

    runtime.store.register(FLOW)
    with running_worker(runtime.server.url, runtime.keys):
        producer = OnPremBackends(runtime.client, runtime.keys.prefix)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not runtime.client.exists(
            queue_stream(runtime.keys.prefix, "incoming")
        ):
            time.sleep(0.05)  # the worker creates the trigger's group when it sees the flow
        sent = producer.send_message(QueueSend("incoming", {"order": "B-1"}), "k")
        instance_id = f"orders:new-orders@{sent}"
        while time.monotonic() < deadline and not runtime.store.exists(instance_id):
            time.sleep(0.05)
        assert runtime.store.exists(instance_id)
        producer.publish_event(
            EventPublish("decisions", "order.approved", {"instance": instance_id, "by": "bo"}),
            "e",
        )
        wait_finished(runtime.store, instance_id, 10)
    assert runtime.store.load(instance_id, fresh=True).state.output == {
        "order": "B-1",
        "approval": "bo",
    }
