"""Engine: a null path is not a path left out (ASL, "InputPath, Parameters and OutputPath").

The Amazon States Language spec: "If the value of InputPath is null, that means that the
raw input is discarded, and the effective input for the state is an empty JSON object,
{}"; "If the value of OutputPath is null, that means the input and result are
discarded, and the effective output from the state is an empty JSON object, {}"; a
null ResultPath discards the result and keeps the raw input. Left out, each of them is
``$``.
"""

from __future__ import annotations

from typing import Any

import pytest

from rustyflower.core.builder import Flow
from rustyflower.core.engine import (
    ActivityCompleted,
    EventReceived,
    RunActivity,
    StartTimer,
    TimerFired,
    advance,
    start,
)
from rustyflower.core.model import TaskState, dump_definition, load_definition
from tests.unit.engine_kit import NOW, at, finish, flow, one

DATA = {"order": {"id": 7}, "keep": True}


def task(**fields: Any) -> dict[str, Any]:
    return {"type": "task", "activity": "work", "end": True, **fields}


def completed(states: dict[str, Any], result: Any = "done") -> Any:
    started = start(flow(states), DATA, "i", NOW)
    call = one(started.commands, RunActivity)
    done = finish(advance(started.snapshot, ActivityCompleted(call.call_id, result), at(1)))
    assert done.status == "succeeded", done
    return call.input, done.output


def test_a_null_input_path_gives_the_task_an_empty_object() -> None:
    activity_input, output = completed({"A": task(input_path=None)})
    assert activity_input == {}
    assert output == "done"


def test_a_null_input_path_keeps_the_raw_input_for_result_path() -> None:
    activity_input, output = completed({"A": task(input_path=None, result_path="$.r")})
    assert activity_input == {}
    assert output == {**DATA, "r": "done"}


def test_parameters_read_the_empty_object_a_null_input_path_makes() -> None:
    activity_input, _ = completed(
        {"A": task(input_path=None, parameters={"all.$": "$", "fixed": 1})}
    )
    assert activity_input == {"all": {}, "fixed": 1}


def test_a_null_output_path_makes_the_output_an_empty_object() -> None:
    _, output = completed({"A": task(output_path=None, result_path="$.r")})
    assert output == {}


def test_a_null_result_path_discards_the_result_and_keeps_the_input() -> None:
    _, output = completed({"A": task(result_path=None)})
    assert output == DATA


def test_left_out_paths_are_the_whole_document() -> None:
    activity_input, output = completed({"A": task(result_path="$.r")})
    assert activity_input == DATA
    assert output == {**DATA, "r": "done"}


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"type": "pass", "input_path": None, "end": True}, {}),
        (
            {"type": "pass", "input_path": None, "result_path": "$.x", "end": True},
            {**DATA, "x": {}},
        ),
        ({"type": "pass", "output_path": None, "end": True}, {}),
        ({"type": "succeed", "input_path": None}, {}),
        ({"type": "succeed", "output_path": None}, {}),
        ({"type": "wait", "seconds": 0, "input_path": None, "end": True}, {}),
        ({"type": "wait", "seconds": 0, "output_path": None, "end": True}, {}),
    ],
)
def test_states_without_a_task_apply_null_paths_too(state: dict[str, Any], expected: Any) -> None:
    done = finish(start(flow({"A": state}), DATA, "i", NOW))
    assert (done.status, done.output) == ("succeeded", expected)


def test_a_choice_with_a_null_input_path_tests_and_passes_on_an_empty_object() -> None:
    states = {
        "A": {
            "type": "choice",
            "input_path": None,
            "choices": [{"when": {"variable": "$.keep", "is_present": True}, "next": "Kept"}],
            "default": "Empty",
        },
        "Kept": {"type": "pass", "result": "kept", "result_path": "$.went", "end": True},
        "Empty": {"type": "pass", "result": "empty", "result_path": "$.went", "end": True},
    }
    done = finish(start(flow(states), DATA, "i", NOW))
    assert (done.status, done.output) == ("succeeded", {"went": "empty"})


def test_a_waited_event_lands_in_the_raw_input_when_the_input_path_is_null() -> None:
    definition = flow(
        {
            "A": {
                "type": "wait_for_event",
                "event": "go",
                "input_path": None,
                "result_path": "$.event",
                "end": True,
            }
        }
    )
    started = start(definition, DATA, "i", NOW)
    done = finish(advance(started.snapshot, EventReceived("go", {"ok": 1}), at(1)))
    assert done.output == {**DATA, "event": {"ok": 1}}


def test_a_timed_wait_with_a_null_output_path_continues_with_an_empty_object() -> None:
    definition = flow({"A": {"type": "wait", "seconds": 5, "output_path": None, "end": True}})
    started = start(definition, DATA, "i", NOW)
    timer = one(started.commands, StartTimer)
    assert finish(advance(started.snapshot, TimerFired(timer.timer_id), at(5))).output == {}


def test_null_and_left_out_paths_survive_the_definition_document_and_yaml() -> None:
    definition = flow({"A": task(input_path=None, output_path=None, result_path=None)})
    state = definition.states["A"]
    assert isinstance(state, TaskState)
    assert (state.input_path, state.output_path, state.result_path) == (None, None, None)
    document = definition.document()["states"]["A"]
    assert document["input_path"] is None and document["output_path"] is None
    again = load_definition(dump_definition(definition, "yaml"), fmt="yaml")
    assert again == definition
    left_out = flow({"A": task()}).document()["states"]["A"]
    assert "input_path" not in left_out and "output_path" not in left_out


def test_a_path_written_out_as_dollar_stays_in_the_document_so_digests_hold() -> None:
    # before null and left-out paths were told apart, "$" was not a default: a definition
    # that wrote it out carried it in its document, and snapshots carry that digest
    written = {"type": "pass", "input_path": "$", "output_path": "$", "end": True}
    definition = flow({"A": written})
    assert definition.document()["states"]["A"] == written
    reloaded = load_definition(dump_definition(definition, "json"), fmt="json")
    assert reloaded.document() == definition.document()


def test_the_builder_keeps_a_null_input_path() -> None:
    definition = Flow("f").task("A", "work", input_path=None, output_path=None).build()
    state = definition.states["A"]
    assert isinstance(state, TaskState)
    assert (state.input_path, state.output_path) == (None, None)
