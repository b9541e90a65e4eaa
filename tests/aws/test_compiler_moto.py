"""Compiled machines run on moto's Step Functions executor (fresh starts).

The activity and token Lambdas run in-process (``test_compiler_kit.FakeLambdas``); an
activity takes no time there, so the cases whose result depends on how long an activity
runs are left to the conformance harness. Cases moto's interpreter gets wrong (not the
compiler) are strict xfails from ``moto_bugs.MOTO_BUGS``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from rustyflower.adapters.aws import fresh_input
from rustyflower.core.model import FlowDefinition, parse_definition
from tests.aws.moto_bugs import MOTO_BUGS
from tests.aws.test_compiler_kit import MotoMachines, moto_machines
from tests.conformance.corpus import Case, load_cases

TIMING = {"elapsed"}  # cases whose result needs activity durations: not run here
FAST_CASES = [
    "pass_dataflow",
    "task_dataflow",
    "choice_comparisons",
    "choice_type_tests",
    "fail_and_succeed",
    "on_error",
    "map",
    "nested",
    "parallel::failing_branch_caught",
    "catches::caught_by_name",
    "catches::zero_retries_then_catch_all",
    "catches::null_result_path_keeps_input",
    "catches::second_name_of_a_list",
    "catches::no_catcher_matches",
    "map_scalars::three_numbers",
    "sub_flow::child_error_caught",
    "sub_flow::child_failure_propagates",
    "sub_flow::latest_version",
    "retries::no_failure",
    "retries::used_up_retrier_still_decides",
    "runtime_errors::missing_input_path",
    "runtime_errors::missing_output_path",
    "runtime_errors::ordinary_error_is_caught",
    "approval::approved_at_once",
    "task_failed::caught_by_task_failed",
    "task_failed::retries_used_up_then_caught",
    "null_paths::task_input_is_an_empty_object",
    "null_paths::parameters_read_the_empty_object",
    "null_paths::null_output_path_is_an_empty_object",
    "null_paths::task_in_a_map_iteration",
    "null_paths::choice_tests_an_empty_object",
]


def _selected() -> list[Any]:
    chosen = []
    for case in load_cases():
        if not any(case.id == key or case.file == key for key in FAST_CASES):
            continue
        marks = []
        if case.id in MOTO_BUGS:
            marks.append(pytest.mark.xfail(strict=True, reason=f"moto bug: {MOTO_BUGS[case.id]}"))
        chosen.append(pytest.param(case, id=case.id, marks=marks))
    return chosen


_names = itertools.count()


@pytest.fixture(scope="module")
def machines() -> Iterator[MotoMachines]:
    with moto_machines() as opened:
        yield opened


def run_case(machines: MotoMachines, case: Case) -> Any:
    assert case.flow is not None
    arn = machines.deploy(case.flow, case.subflows)
    events = [(event.event, event.data) for event in case.events]
    return machines.run(
        arn,
        fresh_input(f"{case.file}.{case.name}", case.input),
        f"fresh-{next(_names)}",
        events=events,
    )


@pytest.mark.parametrize("case", _selected())
def test_corpus_case_runs_on_moto(machines: MotoMachines, case: Case) -> None:
    outcome = run_case(machines, case)
    assert outcome.status == case.expect.status.upper(), outcome
    if case.expect.status == "succeeded":
        assert outcome.output == case.expect.output
    else:
        assert outcome.error == case.expect.error
        if case.expect.checks_cause and case.expect.cause is not None:
            assert outcome.cause == case.expect.cause


def _flow(states: dict[str, Any], **extra: Any) -> FlowDefinition:
    start_at = extra.pop("start_at", next(iter(states)))
    return parse_definition(
        {"name": extra.pop("name", "custom"), "start_at": start_at, "states": states, **extra}
    )


def test_flow_timeout_fails_the_execution(machines: MotoMachines) -> None:
    definition = _flow(
        {"Long": {"type": "wait", "seconds": 30, "end": True}},
        name="deadline",
        timeout_seconds=1,
    )
    outcome = machines.run(machines.deploy(definition), fresh_input("d-1", {}), "deadline-1")
    assert (outcome.status, outcome.error) == ("FAILED", "States.Timeout")


def test_flow_in_time_ends_with_its_output(machines: MotoMachines) -> None:
    definition = _flow(
        {
            "Work": {
                "type": "task",
                "activity": "add",
                "parameters": {"a.$": "$.a", "b": 1},
                "result_path": "$.sum",
                "end": True,
            }
        },
        name="in_time",
        timeout_seconds=60,
    )
    outcome = machines.run(machines.deploy(definition), fresh_input("t-1", {"a": 2}), "in-time-1")
    assert (outcome.status, outcome.output) == ("SUCCEEDED", {"a": 2, "sum": 3})


def test_event_timeout_goes_to_on_timeout(machines: MotoMachines) -> None:
    definition = _flow(
        {
            "Ask": {
                "type": "wait_for_event",
                "event": "answer",
                "timeout_seconds": 1,
                "on_timeout": "Late",
                "next": "Done",
            },
            "Late": {"type": "pass", "result": "late", "result_path": "$.r", "end": True},
            "Done": {"type": "pass", "end": True},
        },
        name="event_timeout",
    )
    outcome = machines.run(machines.deploy(definition), fresh_input("e-1", {"q": 1}), "etimeout-1")
    assert (outcome.status, outcome.output) == ("SUCCEEDED", {"q": 1, "r": "late"})
    registered = [t for t in machines.lambdas.tokens if t.event == "answer"]
    assert registered and registered[-1].wait_id is not None
    assert registered[-1].wait_id.startswith("Ask~")


def test_map_positions_reach_the_activity(machines: MotoMachines) -> None:
    definition = _flow(
        {
            "Each": {
                "type": "map",
                "iterator": {
                    "start_at": "Echo",
                    "states": {"Echo": {"type": "task", "activity": "echo", "end": True}},
                },
                "end": True,
            }
        },
        name="positions",
    )
    before = len(machines.lambdas.calls)
    outcome = machines.run(machines.deploy(definition), fresh_input("m-1", ["a", "b"]), "pos-1")
    assert outcome.output == ["a", "b"]
    positions = sorted(call["position"] for call in machines.lambdas.calls[before:])
    assert positions == ["Each[0]/Echo", "Each[1]/Echo"]
    keys = sorted(call["key"] for call in machines.lambdas.calls[before:])
    # the engine's keys for the same calls: a map item's state is entered once per item
    assert keys == ["m-1:Each[0]/Echo:1", "m-1:Each[1]/Echo:1"]


def test_a_child_timeout_reaches_the_parent_as_a_timeout(
    machines: MotoMachines,
) -> None:
    child = _flow(
        {"Long": {"type": "wait", "seconds": 30, "end": True}},
        name="slow_child",
        timeout_seconds=1,
    )
    parent = _flow(
        {
            "Call": {
                "type": "sub_flow",
                "flow": "slow_child",
                "catch": [{"errors": ["States.ALL"], "next": "Seen", "result_path": "$.e"}],
                "end": True,
            },
            "Seen": {"type": "pass", "output_path": "$.e", "end": True},
        },
        name="impatient_parent",
    )
    arn = machines.deploy(parent, [child])
    outcome = machines.run(arn, fresh_input("p-1", {}), "child-timeout-1")
    assert outcome.status == "SUCCEEDED"
    assert outcome.status == "SUCCEEDED"
    assert outcome.output["Error"] == "States.Timeout"  # raised again: its cause is ASL's
