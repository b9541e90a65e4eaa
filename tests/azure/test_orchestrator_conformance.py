"""The conformance corpus continued in Azure: the real Durable SDK replaying the orchestrator.

For every case of ``tests/conformance/flows`` the flow runs on the in-process virtual
runtime up to transition *k*; its signed snapshot is posted to the app's HTTP starter and
the orchestration runs to its end on the replay host (``durable_host``). It must end with
the status, output, error (and cause) the case expects, having run the same activity
calls (idempotency keys) as an uninterrupted run. *k* = 1 is a flow that starts in Azure
(there, the virtual elapsed time is checked too); the other cut points are slow.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from tests.azure.support import MEMORY_SINK, AzureRun, continue_in_azure, cut_virtual
from tests.conformance.corpus import Case, load_cases
from tests.conformance.test_conformance import baseline, json_equal

pytestmark = pytest.mark.usefixtures("azure_env")

CASES = load_cases()


def params() -> list[Any]:
    return [pytest.param(case, id=case.id) for case in CASES]


def calls_of(keys: list[str]) -> list[str]:
    """Distinct activity calls as ``instance:position:attempt`` (as the virtual tests count)."""
    return sorted({key.rpartition(":")[0] for key in keys})


@cache
def reference_calls(case_id: str) -> list[str]:
    return calls_of([call.idempotency_key for call in baseline(case_id).calls])


def problems(case: Case, run: AzureRun, before_cut: list[str]) -> list[str]:
    found: list[str] = []
    if run.start_status != 202:
        found.append(f"the starter answered {run.start_status}")
    if run.instance.status != "Completed":
        return [*found, f"orchestration {run.instance.status}: {run.instance.failure}"]
    result = run.result
    expect = case.expect
    if result["status"] != expect.status:
        return [
            *found,
            f"status {result['status']!r} ({result['error']!r}: {result['cause']!r}), "
            f"expected {expect.status!r}",
        ]
    if expect.checks_output and not json_equal(result["output"], expect.output):
        found.append(f"output {result['output']!r}, expected {expect.output!r}")
    if expect.status != "succeeded" and result["error"] != expect.error:
        found.append(f"error {result['error']!r}, expected {expect.error!r}")
    if expect.checks_cause and result["cause"] != expect.cause:
        found.append(f"cause {result['cause']!r}, expected {expect.cause!r}")
    calls = calls_of(before_cut + run.idempotency_keys())
    if calls != reference_calls(case.id):
        found.append(f"activity calls {calls}, uninterrupted {reference_calls(case.id)}")
    return found


def transitions(case: Case) -> int:
    return baseline(case.id).transitions


@pytest.mark.parametrize("case", params())
def test_starts_in_azure(case: Case) -> None:
    """Transition 1 (a fresh start) continued in Azure: result, timing, replay determinism."""
    handover = cut_virtual(case, 1)
    before = [call.idempotency_key for call in handover.world.calls]
    run = continue_in_azure(case, handover)
    found = problems(case, run, before)
    expected_elapsed = case.expect.elapsed_seconds
    if expected_elapsed is not None and abs(run.elapsed - expected_elapsed) > 1e-6:
        found.append(f"elapsed {run.elapsed}s, expected {expected_elapsed}s")
    assert not found, f"{case.id}: " + "; ".join(found)
    assert run.host.verify_determinism() > 0
    final = MEMORY_SINK.latest(handover.snapshot.instance_id)
    assert final is not None and final[0] == run.result["seq"], "the final checkpoint"


@pytest.mark.slow
@pytest.mark.parametrize("case", params())
def test_continues_in_azure_after_every_cut(case: Case) -> None:
    """Every cut point k >= 2 of the uninterrupted run, continued in Azure."""
    failures = []
    for k in range(2, transitions(case)):
        handover = cut_virtual(case, k)
        before = [call.idempotency_key for call in handover.world.calls]
        run = continue_in_azure(case, handover)
        found = problems(case, run, before)
        if found:
            failures.append(f"cut after transition {k}: " + "; ".join(found))
    assert not failures, f"{case.id}:\n" + "\n".join(failures)


@pytest.mark.parametrize("case", params())
def test_continue_as_new_after_every_transition(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With RUSTYFLOWER_CONTINUE_AS_NEW_AFTER=1 every quiet moment starts a new generation."""
    monkeypatch.setenv("RUSTYFLOWER_CONTINUE_AS_NEW_AFTER", "1")
    handover = cut_virtual(case, 1)
    before = [call.idempotency_key for call in handover.world.calls]
    run = continue_in_azure(case, handover)
    found = problems(case, run, before)
    assert not found, f"{case.id}: " + "; ".join(found)
    assert run.host.verify_determinism() > 0


@pytest.mark.parametrize("case", params())
def test_one_message_per_episode(case: Case) -> None:
    """Without batching (each message its own episode) the results are the same."""
    handover = cut_virtual(case, 1)
    before = [call.idempotency_key for call in handover.world.calls]
    run = continue_in_azure(case, handover, batch=False)
    found = problems(case, run, before)
    assert not found, f"{case.id}: " + "; ".join(found)


def test_continue_as_new_is_exercised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUSTYFLOWER_CONTINUE_AS_NEW_AFTER", "1")
    generations = 0
    for case in CASES:
        if case.file in ("loop", "waits", "retries"):
            run = continue_in_azure(case, cut_virtual(case, 1))
            generations += run.generations()
    assert generations >= 10


@pytest.mark.slow
@pytest.mark.parametrize("case", params())
def test_every_cut_with_continue_as_new_and_single_messages(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every cut point again, continuing as new whenever quiet, one message per episode."""
    monkeypatch.setenv("RUSTYFLOWER_CONTINUE_AS_NEW_AFTER", "1")
    failures = []
    for k in range(2, transitions(case)):
        handover = cut_virtual(case, k)
        before = [call.idempotency_key for call in handover.world.calls]
        run = continue_in_azure(case, handover, batch=False)
        found = problems(case, run, before)
        if found:
            failures.append(f"cut after transition {k}: " + "; ".join(found))
        else:
            run.host.verify_determinism()
    assert not failures, f"{case.id}:\n" + "\n".join(failures)
