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
