"""Every example flow completes on the Redis runner, with its own activities module."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from examples.nightly_report.activities import registry as nightly_activities
from examples.order.activities import registry as order_activities
from examples.polling.activities import registry as polling_activities
from rustyflower.core.activities import ActivityRegistry
from rustyflower.core.model import load_definition
from tests.redis.activities import check_instance, running_worker, wait_finished, wait_until
from tests.redis.conftest import Runtime

pytestmark = pytest.mark.emulator

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def register(runtime: Runtime, name: str, activities: ActivityRegistry) -> None:
    text = (EXAMPLES / name / "flow.yaml").read_text()
    definition = activities.apply_defaults(load_definition(text, source=f"{name}/flow.yaml"))
    runtime.store.register(definition)


def run(runtime: Runtime, activities: ActivityRegistry, flow: str, flow_input: Any) -> Any:
    with running_worker(runtime.server.url, runtime.keys, activities):
        instance_id = runtime.conductor.start(flow, flow_input).instance_id
        status = wait_finished(runtime.store, instance_id, timeout=30)
    check_instance(runtime.store, instance_id)
    return status, runtime.store.load(instance_id, fresh=True).state


def test_order_flow_is_approved_shipped_and_invoiced(runtime: Runtime) -> None:
    register(runtime, "order", order_activities)
    order = json.loads((EXAMPLES / "order" / "input.json").read_text())
    with running_worker(runtime.server.url, runtime.keys, order_activities):
        instance_id = runtime.conductor.start("order", order).instance_id
        wait_until(
            lambda: "Await approval" in runtime.store.load(instance_id, fresh=True).positions,
            15,
            what="the approval wait",
        )
        runtime.conductor.signal(instance_id, "approval", {"approved": True})
        assert wait_finished(runtime.store, instance_id, timeout=15) == "succeeded"
    output = runtime.store.load(instance_id, fresh=True).state.output
    assert output["fulfilment"]["shipment"]["tracking"] == "TRK-A-1001"
    assert output["payment"]["charge_id"] == "ch_A-1001"
    check_instance(runtime.store, instance_id)


def test_rejected_order_is_refunded(runtime: Runtime) -> None:
    register(runtime, "order", order_activities)
    order = {"order_id": "A-2", "total": 5000.0, "items": ["piano"]}
    with running_worker(runtime.server.url, runtime.keys, order_activities):
        instance_id = runtime.conductor.start("order", order).instance_id
        wait_until(
            lambda: "Await approval" in runtime.store.load(instance_id, fresh=True).positions,
            15,
            what="the approval wait",
        )
        runtime.conductor.signal(instance_id, "approval", {"approved": False})
        assert wait_finished(runtime.store, instance_id, timeout=15) == "failed"
    state = runtime.store.load(instance_id, fresh=True).state
    assert state.error == "OrderCancelled"


def test_nightly_report_maps_over_accounts_and_records_a_failure(runtime: Runtime) -> None:
    register(runtime, "nightly_report", nightly_activities)
    status, state = run(runtime, nightly_activities, "nightly_report", {"region": "eu"})
    assert status == "succeeded"
    assert state.output == {"region": "eu", "published": 5, "failed": ["eu-005"]}


def test_polling_loop_finishes_before_its_deadline(runtime: Runtime) -> None:
    register(runtime, "polling", polling_activities)
    flow_input = {"poll_seconds": 1, "ready_after_polls": 2, "deadline_seconds": 30}
    status, state = run(runtime, polling_activities, "poll_export", flow_input)
    assert status == "succeeded"
    assert state.output["status"] == "ready" and state.output["polls"] == 2


def test_polling_loop_gives_up_at_its_deadline(runtime: Runtime) -> None:
    register(runtime, "polling", polling_activities)
    flow_input = {"poll_seconds": 1, "ready_after_polls": 99, "deadline_seconds": 1}
    status, state = run(runtime, polling_activities, "poll_export", flow_input)
    assert status == "failed"
    assert state.error == "ExportDeadlinePassed"


def test_nightly_report_schedule_is_declared(runtime: Runtime) -> None:
    definition = load_definition((EXAMPLES / "nightly_report" / "flow.yaml").read_text())
    (schedule,) = definition.schedules
    assert (schedule.cron, schedule.timezone) == ("0 2 * * *", "Europe/Berlin")


def test_intake_starts_from_its_queue_and_uses_a_queue_and_a_store(
    runtime: Runtime, tmp_path: Path
) -> None:
    """examples/intake on the site: a message on its trigger queue starts it (the Redis
    stream queue.send writes), it archives in a folder, sends to a queue, reads back."""
    import time  # noqa: PLC0415

    from examples.intake.activities import registry as intake_activities  # noqa: PLC0415
    from rustyflower.adapters.services.onprem import OnPremBackends, queue_stream  # noqa: PLC0415
    from rustyflower.core.services import QueueSend  # noqa: PLC0415

    register(runtime, "intake", intake_activities)
    request = json.loads((EXAMPLES / "intake" / "input.json").read_text())
    objects = tmp_path / "objects"
    producer = OnPremBackends(runtime.client, runtime.keys.prefix)
    requests = queue_stream(runtime.keys.prefix, "intake-requests")
    with running_worker(
        runtime.server.url, runtime.keys, intake_activities, objects_dir=str(objects)
    ):
        wait_until(lambda: runtime.client.exists(requests), 10, what="the trigger's group")
        sent = producer.send_message(QueueSend("intake-requests", request), "outside-1")
        instance_id = f"intake:new-requests@{sent}"
        wait_until(lambda: runtime.store.exists(instance_id), 10, what="the started instance")
        assert wait_finished(runtime.store, instance_id, timeout=15) == "succeeded"
        time.sleep(0.3)  # a redelivery would show as a second instance by now
    check_instance(runtime.store, instance_id)
    output = runtime.store.load(instance_id, fresh=True).state.output
    assert output == {**request, "score": 25, "archived": request}
    assert json.loads((objects / "intake-archive" / "req-7").read_text()) == request
    scored = runtime.client.xrange(queue_stream(runtime.keys.prefix, "intake-scored"))
    assert [json.loads(fields[b"body"]) for _, fields in scored] == [{"id": "req-7", "score": 25}]
    assert [i.instance_id for i in runtime.store.list_instances(flow="intake")] == [instance_id]
