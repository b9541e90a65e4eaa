"""The app's flow records for Application Insights (functions_azure/telemetry.py): one per
transition of the orchestrator however often it is replayed, one per activity call,
named after the flow and the states; the workbook reads the same prefix."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from functions_azure import telemetry
from tests.azure.support import continue_in_azure, cut_virtual
from tests.conformance.corpus import load_cases

pytestmark = pytest.mark.usefixtures("azure_env")

BICEP = Path(__file__).resolve().parents[2] / "infra" / "bicep" / "modules" / "monitoring.bicep"


def records(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [
        json.loads(r.getMessage()[len(telemetry.PREFIX) :])
        for r in caplog.records
        if r.name == "rustyflower.telemetry"
    ]


def test_each_transition_and_call_is_told_once(caplog: pytest.LogCaptureFixture) -> None:
    case = next(c for c in load_cases() if c.id == "retries::backoff_two_failures")
    caplog.set_level(logging.INFO, logger="rustyflower.telemetry")
    run = continue_in_azure(case, cut_virtual(case, 1))
    assert run.result["status"] == "succeeded"
    told = records(caplog)
    transitions = [r for r in told if r["event"] in ("FlowTransition", "FlowFinished")]
    seqs = [r["seq"] for r in transitions]
    assert seqs == sorted(set(seqs)), "a replay told a transition again"
    assert transitions[-1]["event"] == "FlowFinished"
    assert transitions[-1]["status"] == "succeeded"
    assert {r["flow"] for r in told} == {case.flow.name}  # type: ignore[union-attr]
    calls = [r for r in told if str(r["event"]).startswith("Activity")]
    assert [r["event"] for r in calls] == ["ActivityFailed", "ActivityFailed", "ActivityCompleted"]
    assert {r["activity"] for r in calls} == {"flaky"}
    assert all(r["state"] and "/" not in str(r["state"]) for r in calls)


def test_the_workbook_reads_the_records_the_app_writes() -> None:
    text = BICEP.read_text()
    assert f'startswith "{telemetry.PREFIX}"' in text
    assert f"substring(message, {len(telemetry.PREFIX)})" in text
    for event in ("FlowFinished", "FlowTransition", "ActivityFailed"):
        assert event in text
