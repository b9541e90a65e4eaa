"""Flow definition validation: every problem, located as a human reads it, all at once."""

from __future__ import annotations

from typing import Any

import pytest

from rustyflower.core.errors import DefinitionError, Problem
from rustyflower.core.model import parse_definition, validate_definition
from rustyflower.core.model.formats import load_definition


def flow(states: dict[str, Any], start: str = "A", **extra: Any) -> dict[str, Any]:
    return {"name": "f", "start_at": start, "states": states, **extra}


def problems_of(raw: dict[str, Any]) -> list[Problem]:
    found = validate_definition(raw)
    with pytest.raises(DefinitionError) as caught:
        parse_definition(raw)
    assert caught.value.problems == found
    return found


def assert_only(raw: dict[str, Any], *expected: tuple[str, str]) -> list[Problem]:
    """The definition has exactly the problems ``expected`` (location, message fragment)."""
    found = problems_of(raw)
    assert len(found) == len(expected), [str(p) for p in found]
    for location, fragment in expected:
        matching = [p for p in found if p.location == location and fragment in p.message]
        assert len(matching) == 1, (location, fragment, [str(p) for p in found])
    return found


TASK_END = {"type": "task", "activity": "work", "end": True}
SUCCEED = {"type": "succeed"}


def test_a_valid_definition_has_no_problems() -> None:
    assert validate_definition(flow({"A": TASK_END})) == []
    assert parse_definition(flow({"A": TASK_END})).key == "f@1"


# --- unknown targets -----------------------------------------------------------------------


def test_unknown_next() -> None:
    assert_only(
        flow({"A": {"type": "task", "activity": "w", "next": "Ghost"}}),
        ("state 'A'", "next 'Ghost' is not a state here"),
    )  # reported once: not also as "no path reaches an end"
    found = problems_of(flow({"A": {"type": "task", "activity": "w", "next": "Ghost"}}))
    assert Problem("state 'A'", "next 'Ghost' is not a state here") in found


def test_unknown_default_and_choice_targets() -> None:
    raw = flow(
        {
            "A": {
                "type": "choice",
                "choices": [
                    {"when": {"variable": "$.n", "numeric_equals": 1}, "next": "B"},
                    {"when": {"variable": "$.n", "numeric_equals": 2}, "next": "Zip"},
                ],
                "default": "Zap",
            },
            "B": SUCCEED,
        }
    )
    assert_only(
        raw,
        ("state 'A'", "choices[1].next 'Zip' is not a state here"),
        ("state 'A'", "default 'Zap' is not a state here"),
    )


def test_unknown_catch_target() -> None:
    raw = flow(
        {
            "A": {
                "type": "task",
                "activity": "w",
                "next": "B",
                "catch": [{"errors": ["E"], "next": "B"}, {"next": "Gone"}],
            },
            "B": SUCCEED,
        }
    )
    assert_only(raw, ("state 'A'", "catch[1].next 'Gone' is not a state here"))


def test_unknown_on_timeout_target() -> None:
    raw = flow(
        {
            "A": {
                "type": "wait_for_event",
                "event": "approved",
                "timeout_seconds": 5,
                "on_timeout": "Zed",
                "end": True,
            }
        }
    )
    assert_only(raw, ("state 'A'", "on_timeout 'Zed' is not a state here"))


def test_start_at_not_a_state() -> None:
    assert_only(
        flow({"A": SUCCEED}, start="B"),
        ("flow", "start_at 'B' is not a state of this flow"),
    )


def test_unreachable_state() -> None:
    assert_only(
        flow({"A": TASK_END, "Island": SUCCEED}),
        ("state 'Island'", "unreachable from start_at"),
    )


def test_loop_with_no_exit_has_no_terminal_path() -> None:
    raw = flow(
        {
            "A": {"type": "pass", "next": "B"},
            "B": {"type": "task", "activity": "w", "next": "A"},
        }
    )
    assert_only(
        raw,
        ("state 'A'", "no path from here reaches an end (endless loop)"),
        ("state 'B'", "no path from here reaches an end (endless loop)"),
    )


def test_loop_with_an_exit_is_fine() -> None:
    raw = flow(
        {
            "A": {"type": "pass", "next": "B"},
            "B": {
                "type": "choice",
                "choices": [{"when": {"variable": "$.again", "boolean_equals": True}, "next": "A"}],
                "default": "C",
            },
            "C": SUCCEED,
        }
    )
    assert validate_definition(raw) == []


def test_state_with_both_next_and_end() -> None:
    assert_only(
        flow({"A": {"type": "pass", "next": "B", "end": True}, "B": SUCCEED}),
        ("state 'A'", "give next or end: true, not both"),
    )


def test_state_with_neither_next_nor_end() -> None:
    found = problems_of(flow({"A": {"type": "pass"}}))
    assert Problem("state 'A'", "needs next (a state name) or end: true") in found


@pytest.mark.parametrize("name", ["B/x", "B:x", "B[0]", "B~1", "B#", "", "x" * 81, "a\nb"])
def test_bad_state_names(name: str) -> None:
    found = problems_of(flow({"A": {"type": "pass", "next": name}, name: SUCCEED}))
    named = [p for p in found if p.location == f"state {name!r}"]
    assert len(named) == 1, found
    assert named[0].message.startswith("a state name is 1-80")
    # the edge to it is reported at the state that names it
    assert [p.location for p in found if p.message.startswith("next:")] == ["state 'A'"]


def test_good_state_names() -> None:
    name = "Ship order-2.v_1"
    assert validate_definition(flow({"A": {"type": "pass", "next": name}, name: SUCCEED})) == []


# --- YAML and JSON text --------------------------------------------------------------------


def test_duplicate_state_in_yaml() -> None:
    text = "name: f\nstart_at: A\nstates:\n  A:\n    type: succeed\n  A:\n    type: succeed\n"
    with pytest.raises(DefinitionError) as caught:
        load_definition(text, "f.yaml")
    assert caught.value.problems == [
        Problem("line 6", "duplicate key 'A' (a second state or field with the same name)")
    ]
    assert caught.value.source == "f.yaml"
    assert "f.yaml: line 6" in str(caught.value)


def test_duplicate_field_in_yaml_is_reported_with_other_problems() -> None:
    text = "name: f\nstart_at: A\nstates: {A: {type: pass, end: true}}\nstart_at: B\n"
    with pytest.raises(DefinitionError) as caught:
        load_definition(text)
    assert caught.value.problems == [
        Problem("line 4", "duplicate key 'start_at' (a second state or field with the same name)"),
        Problem("flow", "start_at 'B' is not a state of this flow"),
    ]


def test_duplicate_keys_in_json() -> None:
    text = (
        '{"name": "f", "start_at": "A",'
        ' "states": {"A": {"type": "succeed"}, "A": {"type": "succeed"}}, "name": "g"}'
    )
    with pytest.raises(DefinitionError) as caught:
        load_definition(text, "f.json")
    assert caught.value.problems == [
        Problem("json", "duplicate key 'A'"),
        Problem("json", "duplicate key 'name'"),
    ]


def test_malformed_text() -> None:
    with pytest.raises(DefinitionError) as caught:
        load_definition('{"name": "f",', "f.json")
    assert caught.value.problems[0].location == "line 1 column 14"
    with pytest.raises(DefinitionError) as caught:
        load_definition("name: [unclosed\n", "f.yaml")
    assert caught.value.problems[0].message.startswith("not valid YAML")
    with pytest.raises(DefinitionError) as caught:
        load_definition("", "f.yaml")
    assert caught.value.problems == [Problem("flow", "the document is empty")]
    assert validate_definition([1, 2]) == [
        Problem("flow", "a flow definition is a mapping, not list")
    ]


# --- expressions ---------------------------------------------------------------------------


def test_bad_input_path() -> None:
    found = assert_only(
        flow({"A": {"type": "pass", "input_path": "nope", "end": True}}),
        ("state 'A'", "input_path: invalid path 'nope'"),
    )
    assert "must start with '$'" in found[0].message


def test_wildcard_in_result_path() -> None:
    found = assert_only(
        flow({"A": {"type": "task", "activity": "w", "result_path": "$.a[*]", "end": True}}),
        ("state 'A'", "result_path: invalid reference path '$.a[*]'"),
    )
    assert "wildcard" in found[0].message


def test_wildcard_in_catch_result_path_is_located_in_the_catch() -> None:
    raw = flow(
        {
            "A": {
                "type": "task",
                "activity": "w",
                "end": True,
                "catch": [{"next": "B", "result_path": "$.e.*"}],
            },
            "B": SUCCEED,
        }
    )
    assert_only(raw, ("state 'A'", "catch[0].result_path: invalid reference path"))


def test_bad_template_value() -> None:
    assert_only(
        flow({"A": {"type": "pass", "parameters": {"x.$": "notapath"}, "end": True}}),
        ("state 'A'", "parameters: template key 'x.$' at the top level: invalid path 'notapath'"),
    )


def test_bad_template_in_result_selector() -> None:
    raw = flow({"A": {"type": "task", "activity": "w", "result_selector": {"y.$": 3}, "end": True}})
    found = problems_of(raw)
    assert len(found) == 1
    assert found[0].location == "state 'A'"
    assert found[0].message.startswith("result_selector: ")


def choice_with(rule: dict[str, Any]) -> dict[str, Any]:
    return flow(
        {
            "A": {"type": "choice", "choices": [{"when": rule, "next": "B"}], "default": "B"},
            "B": SUCCEED,
        }
    )


def test_condition_without_operator() -> None:
    assert_only(
        choice_with({"variable": "$.a"}),
        ("state 'A'", "choices[0].when: a comparison needs exactly one operator, none given"),
    )


def test_condition_with_two_operators() -> None:
    assert_only(
        choice_with({"variable": "$.a", "numeric_equals": 1, "string_equals": "x"}),
        ("state 'A'", "choices[0].when: a comparison takes exactly one operator, got 2"),
    )


def test_condition_with_bad_timestamp_literal() -> None:
    assert_only(
        choice_with({"variable": "$.a", "timestamp_equals": "yesterday"}),
        ("state 'A'", "choices[0].when.timestamp_equals: 'yesterday' is not an RFC 3339"),
    )


def test_condition_with_unknown_operator_suggests_one() -> None:
    found = problems_of(choice_with({"variable": "$.a", "numeric_equal": 1}))
    assert len(found) == 1
    assert "did you mean 'numeric_equals'?" in found[0].message


def test_nested_condition_problem() -> None:
    rule = {"and": [{"variable": "$.a", "numeric_equals": 1}, {"not": {"variable": "$.b"}}]}
    found = problems_of(choice_with(rule))
    assert len(found) == 1
    assert found[0].location == "state 'A'"
    assert "none given" in found[0].message


# --- retry and catch -----------------------------------------------------------------------


def task_with(**fields: Any) -> dict[str, Any]:
    return flow({"A": {"type": "task", "activity": "w", "end": True, **fields}, "B": SUCCEED})


@pytest.mark.parametrize(
    ("policy", "field", "bound"),
    [
        ({"max_attempts": -1}, "retry[0].max_attempts", "greater than or equal to 0"),
        ({"backoff_rate": 0.5}, "retry[0].backoff_rate", "greater than or equal to 1"),
        ({"interval_seconds": 0}, "retry[0].interval_seconds", "greater than or equal to 1"),
        ({"max_delay_seconds": 0}, "retry[0].max_delay_seconds", "greater than or equal to 1"),
        ({"jitter": "half"}, "retry[0].jitter", "'none' or 'full'"),
    ],
)
def test_retry_out_of_range(policy: dict[str, Any], field: str, bound: str) -> None:
    raw = flow({"A": {"type": "task", "activity": "w", "end": True, "retry": [policy]}})
    found = assert_only(raw, ("state 'A'", f"{field}: "))
    assert bound in found[0].message


def test_every_bad_retry_field_is_reported() -> None:
    raw = flow(
        {
            "A": {
                "type": "task",
                "activity": "w",
                "end": True,
                # errors named: an entry without errors means States.ALL, which must come last
                "retry": [
                    {"errors": ["E1"], "max_attempts": -1},
                    {"errors": ["E2"], "backoff_rate": 0.5},
                    {"interval_seconds": 0},
                ],
            }
        }
    )
    assert_only(
        raw,
        ("state 'A'", "retry[0].max_attempts"),
        ("state 'A'", "retry[1].backoff_rate"),
        ("state 'A'", "retry[2].interval_seconds"),
    )


def test_states_all_not_last_in_retry() -> None:
    assert_only(
        flow(
            {
                "A": {
                    "type": "task",
                    "activity": "w",
                    "end": True,
                    "retry": [{"errors": ["States.ALL"]}, {"errors": ["E"]}],
                }
            }
        ),
        ("state 'A'", "retry[0] uses States.ALL but is not the last retry entry"),
    )


def test_states_all_not_last_in_catch() -> None:
    assert_only(
        task_with(catch=[{"next": "B"}, {"errors": ["E"], "next": "B"}]),
        ("state 'A'", "catch[0] uses States.ALL but is not the last catch entry"),
    )


def test_states_all_not_alone_in_retry() -> None:
    raw = flow(
        {
            "A": {
                "type": "task",
                "activity": "w",
                "end": True,
                "retry": [{"errors": ["States.ALL", "E"]}],
            }
        }
    )
    assert_only(raw, ("state 'A'", "retry[0]: States.ALL must appear alone in its errors list"))


def test_states_all_not_alone_in_catch() -> None:
    assert_only(
        task_with(catch=[{"errors": ["E", "States.ALL"], "next": "B"}]),
        ("state 'A'", "catch[0]: States.ALL must appear alone in its errors list"),
    )


def test_states_all_problems_are_reported_together() -> None:
    assert_only(
        task_with(
            retry=[{"errors": ["States.ALL"]}, {"errors": ["E"]}],
            catch=[{"errors": ["States.ALL", "E"], "next": "B"}],
        ),
        ("state 'A'", "retry[0] uses States.ALL but is not the last retry entry"),
        ("state 'A'", "catch[0]: States.ALL must appear alone in its errors list"),
    )


def test_flow_level_states_all_not_last() -> None:
    raw = flow(
        {"A": {"type": "pass", "next": "B"}, "B": TASK_END},
        default_retry=[{}, {"errors": ["E"]}],
        on_error=[{"next": "B"}, {"errors": ["X"], "next": "B"}],
    )
    assert_only(
        raw,
        ("flow", "default_retry[0] uses States.ALL but is not the last default_retry entry"),
        ("flow", "on_error[0] uses States.ALL but is not the last on_error entry"),
    )


def test_on_error_target_unknown() -> None:
    assert_only(
        flow({"A": TASK_END}, on_error=[{"next": "Nowhere"}]),
        ("flow", "on_error[0].next 'Nowhere' is not a state here"),
    )


def test_on_error_target_makes_state_reachable() -> None:
    raw = flow({"A": TASK_END, "Recover": SUCCEED}, on_error=[{"next": "Recover"}])
    assert validate_definition(raw) == []


# --- state kinds ---------------------------------------------------------------------------


def test_wait_without_duration() -> None:
    assert_only(
        flow({"A": {"type": "wait", "end": True}}),
        (
            "state 'A'",
            "a wait needs exactly one of seconds, timestamp, seconds_path, timestamp_path",
        ),
    )


def test_wait_with_two_durations() -> None:
    raw = flow(
        {"A": {"type": "wait", "seconds": 1, "timestamp": "2020-01-01T00:00:00Z", "end": True}}
    )
    assert_only(raw, ("state 'A'", "(got seconds, timestamp)"))


def test_wait_with_bad_timestamp() -> None:
    assert_only(
        flow({"A": {"type": "wait", "timestamp": "2020-01-01", "end": True}}),
        ("state 'A'", "timestamp '2020-01-01' is not an RFC 3339 time"),
    )


def test_fail_with_error_and_error_path() -> None:
    assert_only(
        flow({"A": {"type": "fail", "error": "E", "error_path": "$.e"}}),
        ("state 'A'", "give error or error_path, not both"),
    )


def test_invalid_state_in_parallel_branch() -> None:
    raw = flow(
        {
            "Ship": {
                "type": "parallel",
                "end": True,
                "branches": [
                    {"start_at": "P", "states": {"P": SUCCEED}},
                    {"start_at": "X", "states": {"X": {"type": "pass", "next": "Q"}}},
                ],
            }
        },
        start="Ship",
    )
    assert_only(
        raw,
        ("state 'Ship' > branches[1] > state 'X'", "next 'Q' is not a state here"),
    )


def test_field_error_in_parallel_branch() -> None:
    raw = flow(
        {
            "Ship": {
                "type": "parallel",
                "end": True,
                "branches": [
                    {"start_at": "P", "states": {"P": SUCCEED}},
                    {"start_at": "X", "states": {"X": {"type": "pass", "end": True, "bogus": 1}}},
                ],
            }
        },
        start="Ship",
    )
    assert_only(raw, ("state 'Ship' > branches[1] > state 'X'", "bogus: is not a known field"))


def test_branch_start_at_unknown() -> None:
    raw = flow(
        {
            "Ship": {
                "type": "parallel",
                "end": True,
                "branches": [{"start_at": "Nope", "states": {"P": SUCCEED}}],
            }
        },
        start="Ship",
    )
    assert_only(
        raw,
        ("state 'Ship' > branches[0]", "start_at 'Nope' is not a state of this flow"),
    )


def test_invalid_map_iterator() -> None:
    raw = flow(
        {
            "M": {
                "type": "map",
                "end": True,
                "iterator": {
                    "start_at": "I",
                    "states": {
                        "I": {
                            "type": "task",
                            "activity": "a",
                            "end": True,
                            "retry": [{"max_attempts": -1}],
                        },
                        "Lost": SUCCEED,
                    },
                },
            }
        },
        start="M",
    )
    assert_only(
        raw,
        ("state 'M' > iterator > state 'I'", "retry[0].max_attempts"),
        ("state 'M' > iterator > state 'Lost'", "unreachable from start_at"),
    )


def test_deeply_nested_location() -> None:
    inner = {
        "type": "map",
        "end": True,
        "iterator": {"start_at": "Z", "states": {"Z": {"type": "pass", "next": "Gone"}}},
    }
    raw = flow(
        {
            "Ship": {
                "type": "parallel",
                "end": True,
                "branches": [{"start_at": "Items", "states": {"Items": inner}}],
            }
        },
        start="Ship",
    )
    found = problems_of(raw)
    location = "state 'Ship' > branches[0] > state 'Items' > iterator > state 'Z'"
    assert Problem(location, "next 'Gone' is not a state here") in found


def test_unknown_state_type() -> None:
    found = assert_only(
        flow({"A": {"type": "teleport", "end": True}}),
        ("state 'A'", "Input tag 'teleport' found using 'type' does not match"),
    )
    assert "'wait_for_event'" in found[0].message


def test_unknown_field_on_a_state_and_on_the_flow() -> None:
    assert_only(
        flow({"A": {"type": "succeed", "nxt": "B"}}, extra=1),
        ("state 'A'", "nxt: is not a known field"),
        ("flow", "extra: is not a known field"),
    )


def test_missing_required_field() -> None:
    assert_only(
        flow({"A": {"type": "task", "end": True}}),
        ("state 'A'", "activity: is required"),
    )


def test_bad_cron() -> None:
    assert_only(
        flow({"A": TASK_END}, schedules=[{"cron": "61 * * * *"}]),
        ("flow", "schedules[0].cron: '61 * * * *' is not a valid cron expression"),
    )
    assert_only(
        flow({"A": TASK_END}, schedules=[{"cron": "not cron"}]),
        ("flow", "schedules[0].cron: 'not cron' is not a 5-field cron expression"),
    )


# A declared schedule is checked by the rules the runners apply (core.schedules): what
# validates here registers, and runs under the same name on premises and in the cloud.
@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"cron": "0 0 9 * * *"}, "schedules[0].cron: '0 0 9 * * *' is not a 5-field cron"),
        ({"cron": "0 0 30 2 *"}, "schedules[0].cron: cron expression '0 0 30 2 *' never fires"),
        ({"cron": "R 2 * * *"}, "schedules[0].cron: 'R 2 * * *' is not a valid cron expression"),
        ({"cron": "@daily", "input": {"x": float("nan")}}, "schedules[0].input: the input must"),
        ({"cron": "@daily", "name": "has space"}, "schedule name 'f:has space' is not valid"),
    ],
)
def test_a_declared_schedule_the_runners_would_refuse_is_a_problem(
    schedule: dict[str, Any], message: str
) -> None:
    assert_only(flow({"A": TASK_END}, schedules=[schedule]), ("flow", message))


def test_a_schedule_name_too_long_with_its_flow_name_is_a_problem() -> None:
    long = flow({"A": TASK_END}, name="F" * 80, schedules=[{"cron": "@daily", "name": "n" * 39}])
    assert validate_definition(long) == []  # 'F...F:n...n' has 120 characters: the limit
    long["schedules"][0]["name"] += "n"
    assert_only(long, ("flow", "schedules[0].name: schedule name 'FFF"))


def test_a_schedule_name_given_twice_is_a_problem_at_the_second() -> None:
    schedules = [{"cron": "@daily", "name": "1"}, {"cron": "@hourly"}, {"cron": "@daily"}]
    assert_only(
        flow({"A": TASK_END}, schedules=schedules),
        ("flow", "schedules[1].name: flow 'f' declares schedule 'f:1' twice"),
    )


def test_bad_timezone() -> None:
    assert_only(
        flow({"A": TASK_END}, schedules=[{"cron": "0 2 * * *", "timezone": "Mars/Base"}]),
        ("flow", "schedules[0].timezone: unknown time zone 'Mars/Base'"),
    )


def test_bad_flow_name_and_version() -> None:
    raw = {"name": "1 bad name", "version": "", "start_at": "A", "states": {"A": TASK_END}}
    assert_only(
        raw,
        ("flow", "name: String should match pattern"),
        ("flow", "version: "),
    )


def test_numeric_version_is_text() -> None:
    assert parse_definition(flow({"A": TASK_END}, version=2)).version == "2"


# --- all problems at once ------------------------------------------------------------------


def four_problems() -> dict[str, Any]:
    return flow(
        {
            "A": {
                "type": "task",
                "activity": "w",
                "next": "B",
                "catch": [{"next": "Ghost"}],
            },
            "B": {"type": "wait", "next": "C"},
            "C": {"type": "task", "activity": "w", "end": True, "retry": [{"max_attempts": -1}]},
            "Orphan": SUCCEED,
        }
    )


def test_four_problems_come_back_at_once() -> None:
    assert_only(
        four_problems(),
        ("state 'A'", "catch[0].next 'Ghost' is not a state here"),
        ("state 'B'", "a wait needs exactly one of"),
        ("state 'C'", "retry[0].max_attempts"),
        ("state 'Orphan'", "unreachable from start_at"),
    )


def test_all_problems_in_the_error_message() -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(four_problems(), source="orders.yaml")
    text = str(caught.value)
    assert text.startswith("invalid flow definition (4 problem(s)):")
    assert "orders.yaml: state 'Orphan': unreachable from start_at" in text


def test_four_problems_from_yaml_text_and_a_duplicate_key() -> None:
    text = """
name: f
start_at: A
states:
  A:
    type: task
    activity: w
    next: B
    catch:
      - next: Ghost
  B:
    type: wait
    next: C
  C:
    type: task
    activity: w
    end: true
    end: true
"""
    with pytest.raises(DefinitionError) as caught:
        load_definition(text, "f.yaml")
    assert [p.location for p in caught.value.problems] == ["line 18", "state 'B'", "state 'A'"]


def test_on_error_problem_is_reported_with_field_problems() -> None:
    raw = four_problems() | {"on_error": [{"next": "Nowhere"}]}
    found = problems_of(raw)
    assert Problem("flow", "on_error[0].next 'Nowhere' is not a state here") in found
    assert len(found) == 5
