"""The ASL compiler: every corpus flow validates, and each state kind and option maps as
documented in docs/aws.md (the runs on moto's executor are in test_compiler_moto.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from rustyflower.adapters.aws import CompileError, compile_flow, compile_to_json, machine_comment
from rustyflower.adapters.aws.compiler import iter_states
from rustyflower.adapters.aws.names import MAX_STATE_NAME
from rustyflower.adapters.aws.resume import deployed_digest
from rustyflower.core.contract import error_matches
from rustyflower.core.model import FlowDefinition, load_definition, parse_definition
from rustyflower.core.snapshot.canonical import definition_digest
from tests.aws.test_compiler_kit import (
    ACTIVITY_ARN,
    MOTO_CONFIG,
    REGION,
    ROLE_ARN,
    TOKEN_ARN,
    compile_for,
    lint,
    machine_name,
)
from tests.conformance.corpus import load_corpus

ROOT = Path(__file__).resolve().parents[2]


def _all_flows() -> list[tuple[str, FlowDefinition, tuple[FlowDefinition, ...]]]:
    found = []
    for corpus_file in load_corpus():
        assert corpus_file.flow is not None, corpus_file.problem
        every = (corpus_file.flow, *corpus_file.subflows)
        for definition in every:
            found.append((f"{corpus_file.path.stem}:{definition.key}", definition, every))
    for path in sorted((ROOT / "examples").glob("*/flow.yaml")):
        definition = load_definition(path.read_text(encoding="utf-8"), str(path))
        found.append((f"examples/{path.parent.name}", definition, (definition,)))
    return found


FLOWS = _all_flows()


def flow(states: dict[str, Any], **extra: Any) -> FlowDefinition:
    start = extra.pop("start_at", next(iter(states)))
    return parse_definition({"name": "f", "start_at": start, "states": states, **extra})


def compiled(definition: FlowDefinition, **options: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "activity_function_arn": ACTIVITY_ARN,
        "token_function_arn": TOKEN_ARN,
    }
    arguments.update(options)
    return compile_flow(definition, **arguments)


def state(document: dict[str, Any], name: str) -> dict[str, Any]:
    for found, value in iter_states(document):
        if found == name:
            return dict(value)
    raise KeyError(name)


# --- validity ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("label", "definition", "every"), FLOWS, ids=[f[0] for f in FLOWS])
def test_corpus_flow_passes_statelint(
    label: str, definition: FlowDefinition, every: tuple[FlowDefinition, ...]
) -> None:
    assert lint(compile_for(definition, every)) == []


def test_corpus_flows_pass_moto_parser() -> None:
    with mock_aws(config=MOTO_CONFIG):
        client = boto3.client("stepfunctions", region_name=REGION)
        for index, (label, definition, every) in enumerate(FLOWS):
            document = compile_for(definition, every)
            arn = client.create_state_machine(
                name=f"{machine_name(definition)}-{index}",
                definition=json.dumps(document),
                roleArn=ROLE_ARN,
            )["stateMachineArn"]
            described = client.describe_state_machine(stateMachineArn=arn)
            assert deployed_digest(described) == definition_digest(definition.document()), label


def test_state_names_fit_asl_and_are_unique() -> None:
    for _label, definition, every in FLOWS:
        names = [name for name, _ in iter_states(compile_for(definition, every))]
        assert len(names) == len(set(names))
        assert all(len(name) <= MAX_STATE_NAME for name in names)


def test_long_state_names_are_cut_with_a_hash() -> None:
    long_a = "A" * 80
    long_b = "A" * 79 + "B"
    definition = flow(
        {
            long_a: {"type": "task", "activity": "x", "next": long_b},
            long_b: {"type": "task", "activity": "x", "end": True},
        }
    )
    document = compiled(definition)
    names = [name for name, _ in iter_states(document)]
    assert long_a in names and long_b in names
    cut = [name for name in names if "#" in name]
    assert cut and all(len(name) == MAX_STATE_NAME for name in cut)
    assert len(names) == len(set(names))
    assert lint(document) == []


# --- the machine ----------------------------------------------------------------------------


def test_machine_is_jsonpath_with_digest_comment_and_router() -> None:
    definition = flow({"A": {"type": "pass", "end": True}})
    document = compiled(definition)
    assert "QueryLanguage" not in document
    assert "TimeoutSeconds" not in document
    assert document["Comment"] == machine_comment(definition)
    assert deployed_digest(document) == definition_digest(definition.document())
    assert document["StartAt"] == "RF:Start"
    start = document["States"]["RF:Start"]
    assert start["Choices"] == [
        {"Variable": "$.rf.resume.route", "IsPresent": False, "Next": "RF:Fresh"}
    ]
    assert document["States"]["RF:Fresh"] == {"Type": "Pass", "InputPath": "$.input", "Next": "A"}
    check = document["States"]["RF:Check"]["Choices"][0]
    assert check["StringEquals"] == definition_digest(definition.document())
    assert document["States"]["RF:WrongDigest"]["Error"] == "RF.DigestMismatch"


def test_compile_to_json_is_the_same_document() -> None:
    definition = flow({"A": {"type": "pass", "end": True}})
    text = compile_to_json(definition, activity_function_arn=ACTIVITY_ARN)
    assert json.loads(text) == compiled(definition)


def test_activity_arn_is_required() -> None:
    with pytest.raises(CompileError, match="activity_function_arn"):
        compile_flow(flow({"A": {"type": "pass", "end": True}}), activity_function_arn="")


# --- task ---------------------------------------------------------------------------------------


def test_task_invokes_the_activity_lambda_with_the_call_payload() -> None:
    definition = flow(
        {
            "Charge": {
                "type": "task",
                "activity": "charge",
                "input_path": "$.order",
                "parameters": {"amount.$": "$.total", "currency": "EUR"},
                "timeout_seconds": 30,
                "end": True,
            }
        }
    )
    charge = state(compiled(definition), "Charge")
    assert charge["Type"] == "Task"
    assert charge["Resource"] == "arn:aws:states:::lambda:invoke"
    assert charge["InputPath"] == "$.order"
    assert charge["TimeoutSeconds"] == 30
    parameters = charge["Parameters"]
    assert parameters["FunctionName"] == ACTIVITY_ARN
    assert parameters["Payload"] == {
        "activity": "charge",
        "flow": definition.name,
        "instance_id.$": "$$.Execution.Input.rf.instance_id",
        "input": {"amount.$": "$.total", "currency": "EUR"},
        "attempt.$": "States.MathAdd($$.State.RetryCount, 1)",
        "call": {
            "scope": None,
            "state": "Charge",
            "tag.$": "States.Format('{}@{}', $$.Execution.Name, $$.State.EnteredTime)",
            "positional_key": True,
        },
    }


def test_task_without_parameters_sends_its_effective_input() -> None:
    charge = state(compiled(flow({"A": {"type": "task", "activity": "a", "end": True}})), "A")
    assert charge["Parameters"]["Payload"]["input.$"] == "$"


@pytest.mark.parametrize(
    ("fields", "expected", "unwrap"),
    [
        # no selector, result at $: keep {"value": Payload}, output $.value
        ({}, {"ResultSelector": {"value.$": "$.Payload"}, "OutputPath": "$.value"}, None),
        (
            {"output_path": "$.total"},
            {"ResultSelector": {"value.$": "$.Payload"}, "OutputPath": "$.value.total"},
            None,
        ),
        # a selector reads the Payload
        (
            {"result_selector": {"t.$": "$.total"}, "result_path": "$.r"},
            {"ResultSelector": {"t.$": "$.Payload.total"}, "ResultPath": "$.r"},
            None,
        ),
        # discarded result
        ({"result_path": None}, {"ResultPath": None}, None),
        # placed result: a Pass takes the value out of its wrapper
        (
            {"result_path": "$.r", "output_path": "$.r"},
            {"ResultSelector": {"value.$": "$.Payload"}, "ResultPath": "$.r"},
            {"InputPath": "$.r.value", "ResultPath": "$.r", "OutputPath": "$.r"},
        ),
    ],
)
def test_task_result_is_the_lambda_payload(
    fields: dict[str, Any], expected: dict[str, Any], unwrap: dict[str, Any] | None
) -> None:
    document = compiled(flow({"A": {"type": "task", "activity": "a", "end": True, **fields}}))
    task = state(document, "A")
    for key in ("ResultSelector", "ResultPath", "OutputPath"):
        assert task.get(key, "absent") == expected.get(key, "absent"), key
    if unwrap is None:
        assert task["End"] is True
    else:
        assert task["Next"] == "A~unwrap"
        assert state(document, "A~unwrap") == {"Type": "Pass", **unwrap, "End": True}


# --- null paths (ASL: a null InputPath/OutputPath makes the data {}) ---------------------------


def test_null_paths_stay_null_in_asl_and_left_out_ones_stay_left_out() -> None:
    definition = flow(
        {
            "A": {
                "type": "task",
                "activity": "a",
                "input_path": None,
                "result_path": "$.r",
                "output_path": None,
                "next": "B",
            },
            "B": {"type": "pass", "input_path": None, "next": "C"},
            "C": {"type": "succeed", "output_path": None},
        }
    )
    document = compiled(definition)
    task = state(document, "A")
    assert task["InputPath"] is None
    assert state(document, "A~unwrap")["OutputPath"] is None
    assert state(document, "B")["InputPath"] is None
    assert state(document, "C")["OutputPath"] is None
    left_out = state(compiled(flow({"A": {"type": "task", "activity": "a", "end": True}})), "A")
    assert "InputPath" not in left_out
    assert left_out["OutputPath"] == "$.value"


def test_a_resumed_task_with_a_null_input_path_sends_an_empty_object() -> None:
    definition = flow(
        {
            "A": {"type": "task", "activity": "a", "input_path": None, "next": "B"},
            "B": {
                "type": "task",
                "activity": "b",
                "input_path": None,
                "parameters": {"all.$": "$", "at.$": "$.missing", "when.$": "$$.State.Name"},
                "end": True,
            },
        },
        start_at="A",
    )
    document = compiled(definition)
    assert state(document, "A~resume")["Parameters"]["Payload"]["input"] == {}
    assert state(document, "B~resume")["Parameters"]["Payload"]["input"] == {
        "all": {},
        "at.$": "$.rf.nothing.missing",  # selects nothing: States.ParameterPathFailure
        "when.$": "$$.State.Name",
    }


def test_in_a_map_iteration_a_null_input_path_reads_an_empty_object() -> None:
    definition = flow(
        {
            "Each": {
                "type": "map",
                "iterator": {
                    "start_at": "Look",
                    "states": {
                        "Look": {
                            "type": "task",
                            "activity": "a",
                            "input_path": None,
                            "parameters": {"all.$": "$", "fixed": 1},
                            "next": "Nap",
                        },
                        "Nap": {"type": "wait", "seconds": 1, "output_path": None, "end": True},
                    },
                },
                "end": True,
            }
        }
    )
    document = compiled(definition)
    look = state(document, "Each[*]/Look")
    assert look["Parameters"]["Payload"]["input"] == {"all": {}, "fixed": 1}
    assert "Each[*]/Look~in" not in dict(iter_states(document))  # nothing to check first
    nap_out = state(document, "Each[*]/Nap~out")
    assert nap_out == {
        "Type": "Pass",
        "InputPath": None,
        "ResultPath": "$.d",
        "Next": "Each[*]/~end",
    }


def test_retry_maps_every_field() -> None:
    definition = flow(
        {
            "A": {
                "type": "task",
                "activity": "a",
                "retry": [
                    {"errors": ["Flaky"], "interval_seconds": 2, "max_attempts": 4},
                    {
                        "errors": ["States.ALL"],
                        "interval_seconds": 1,
                        "max_attempts": 2,
                        "backoff_rate": 1.5,
                        "max_delay_seconds": 10,
                        "jitter": "full",
                    },
                ],
                "end": True,
            }
        }
    )
    assert state(compiled(definition), "A")["Retry"] == [
        {"ErrorEquals": ["Flaky"], "IntervalSeconds": 2, "MaxAttempts": 4, "BackoffRate": 2.0},
        {
            "ErrorEquals": ["States.ALL"],
            "IntervalSeconds": 1,
            "MaxAttempts": 2,
            "BackoffRate": 1.5,
            "MaxDelaySeconds": 10,
            "JitterStrategy": "FULL",
        },
    ]


def test_default_retry_applies_to_tasks_and_sub_flows_without_their_own() -> None:
    definition = flow(
        {
            "Own": {
                "type": "task",
                "activity": "a",
                "retry": [{"errors": ["X"], "max_attempts": 1}],
                "next": "Default",
            },
            "Default": {"type": "task", "activity": "a", "next": "Child"},
            "Child": {"type": "sub_flow", "flow": "child", "next": "Join"},
            "Join": {
                "type": "parallel",
                "branches": [{"start_at": "P", "states": {"P": {"type": "pass", "end": True}}}],
                "end": True,
            },
        },
        default_retry=[{"errors": ["Flaky"], "max_attempts": 2, "interval_seconds": 3}],
    )
    document = compiled(definition, flow_arns={"child": "arn:aws:states:::stateMachine:child"})
    assert state(document, "Own")["Retry"][0]["ErrorEquals"] == ["X"]
    assert state(document, "Default")["Retry"][0]["ErrorEquals"] == ["Flaky"]
    assert state(document, "Child")["Retry"][0]["ErrorEquals"] == ["Flaky"]
    assert "Retry" not in state(document, "Join")


def test_catch_maps_and_on_error_is_appended_at_the_top_level_only() -> None:
    definition = flow(
        {
            "A": {
                "type": "task",
                "activity": "a",
                "catch": [{"errors": ["Boom"], "next": "H", "result_path": None}],
                "next": "P",
            },
            "P": {
                "type": "parallel",
                "branches": [
                    {
                        "start_at": "B",
                        "states": {"B": {"type": "task", "activity": "b", "end": True}},
                    }
                ],
                "end": True,
            },
            "H": {"type": "pass", "end": True},
            "All": {"type": "pass", "end": True},
        },
        on_error=[{"errors": ["States.ALL"], "next": "All", "result_path": "$.error"}],
    )
    document = compiled(definition)
    assert state(document, "A")["Catch"] == [
        {"ErrorEquals": ["Boom"], "Next": "H", "ResultPath": None},
        {"ErrorEquals": ["States.ALL"], "Next": "All", "ResultPath": "$.error"},
    ]
    assert state(document, "P")["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "Next": "All", "ResultPath": "$.error"}
    ]
    assert "Catch" not in state(document, "P[0]/B")


def test_catch_all_stays_last_after_on_error_is_appended() -> None:
    definition = flow(
        {
            "A": {
                "type": "task",
                "activity": "a",
                "catch": [{"errors": ["States.ALL"], "next": "H"}],
                "end": True,
            },
            "H": {"type": "pass", "end": True},
        },
        on_error=[
            {"errors": ["Other"], "next": "H"},
            {"errors": ["States.Runtime"], "next": "H"},
        ],
    )
    catch = state(compiled(definition), "A")["Catch"]
    # "Other" can never be reached after States.ALL; States.Runtime still can
    assert [entry["ErrorEquals"] for entry in catch] == [["States.Runtime"], ["States.ALL"]]


# --- pass, choice, wait, succeed, fail ------------------------------------------------------


def test_pass_maps_its_fields() -> None:
    definition = flow(
        {
            "A": {
                "type": "pass",
                "input_path": "$.a",
                "parameters": {"x.$": "$.x"},
                "result_path": "$.r",
                "output_path": "$.r",
                "next": "B",
            },
            "B": {"type": "pass", "result": {"fixed": 1}, "result_path": None, "end": True},
        }
    )
    document = compiled(definition)
    assert state(document, "A") == {
        "Type": "Pass",
        "InputPath": "$.a",
        "Parameters": {"x.$": "$.x"},
        "ResultPath": "$.r",
        "OutputPath": "$.r",
        "Next": "B",
    }
    assert state(document, "B") == {
        "Type": "Pass",
        "Result": {"fixed": 1},
        "ResultPath": None,
        "End": True,
    }


def test_choice_uses_the_conditions_asl_form() -> None:
    definition = flow(
        {
            "C": {
                "type": "choice",
                "input_path": "$.in",
                "output_path": "$.out",
                "choices": [
                    {
                        "when": {
                            "and": [
                                {"variable": "$.n", "numeric_greater_than": 1},
                                {"not": {"variable": "$.s", "string_equals": "x"}},
                            ]
                        },
                        "next": "A",
                    }
                ],
                "default": "B",
            },
            "A": {"type": "succeed"},
            "B": {"type": "succeed"},
        }
    )
    assert state(compiled(definition), "C") == {
        "Type": "Choice",
        "InputPath": "$.in",
        "OutputPath": "$.out",
        "Choices": [
            {
                "And": [
                    {"Variable": "$.n", "NumericGreaterThan": 1},
                    {"Not": {"Variable": "$.s", "StringEquals": "x"}},
                ],
                "Next": "A",
            }
        ],
        "Default": "B",
    }


def test_no_choice_matched_goes_to_a_matching_on_error_handler() -> None:
    definition = flow(
        {
            "C": {
                "type": "choice",
                "choices": [{"when": {"variable": "$.n", "numeric_equals": 1}, "next": "A"}],
            },
            "A": {"type": "succeed"},
            "H": {"type": "pass", "end": True},
        },
        on_error=[{"errors": ["States.NoChoiceMatched"], "next": "H", "result_path": "$.e"}],
    )
    document = compiled(definition)
    assert state(document, "C")["Default"] == "C~nomatch"
    assert state(document, "C~nomatch") == {
        "Type": "Pass",
        "Result": {"Error": "States.NoChoiceMatched", "Cause": "no rule of choice 'C' matched"},
        "ResultPath": "$.e",
        "Next": "H",
    }
    # without a handler, ASL raises States.NoChoiceMatched itself
    plain = flow(
        {
            "C": {
                "type": "choice",
                "choices": [{"when": {"variable": "$.n", "numeric_equals": 1}, "next": "A"}],
            },
            "A": {"type": "succeed"},
        }
    )
    assert "Default" not in state(compiled(plain), "C")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"seconds": 5}, {"Seconds": 5}),
        ({"timestamp": "2030-01-01T01:00:00+01:00"}, {"Timestamp": "2030-01-01T00:00:00Z"}),
        ({"seconds_path": "$.delay"}, {"SecondsPath": "$.delay"}),
        ({"timestamp_path": "$.at"}, {"TimestampPath": "$.at"}),
    ],
)
def test_wait_variants(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    definition = flow({"W": {"type": "wait", "input_path": "$.p", "end": True, **fields}})
    assert state(compiled(definition), "W") == {
        "Type": "Wait",
        "InputPath": "$.p",
        **expected,
        "End": True,
    }


def test_succeed_and_fail() -> None:
    definition = flow(
        {
            "C": {
                "type": "choice",
                "choices": [{"when": {"variable": "$.ok", "boolean_equals": True}, "next": "S"}],
                "default": "F",
            },
            "S": {"type": "succeed", "output_path": "$.x"},
            "F": {"type": "fail", "error_path": "$.e", "cause": "because"},
        }
    )
    document = compiled(definition)
    assert state(document, "S") == {"Type": "Succeed", "OutputPath": "$.x"}
    assert state(document, "F") == {"Type": "Fail", "ErrorPath": "$.e", "Cause": "because"}


def test_a_fail_state_cannot_raise_a_reserved_name() -> None:
    definition = flow({"F": {"type": "fail", "error": "States.Timeout"}})
    with pytest.raises(CompileError, match=r"state 'F'.*States.Timeout"):
        compiled(definition)


# --- wait_for_event ----------------------------------------------------------------------------


def test_event_wait_is_a_task_token_wait() -> None:
    definition = flow(
        {
            "Approve": {
                "type": "wait_for_event",
                "event": "approval",
                "timeout_seconds": 3600,
                "on_timeout": "Late",
                "result_path": "$.answer",
                "catch": [{"errors": ["States.ALL"], "next": "Late"}],
                "next": "Done",
            },
            "Late": {"type": "pass", "end": True},
            "Done": {"type": "pass", "end": True},
        }
    )
    approve = state(compiled(definition), "Approve")
    assert approve["Resource"] == "arn:aws:states:::lambda:invoke.waitForTaskToken"
    assert approve["TimeoutSeconds"] == 3600
    payload = approve["Parameters"]["Payload"]
    assert approve["Parameters"]["FunctionName"] == TOKEN_ARN
    assert payload["kind"] == "event"
    assert payload["event"] == "approval"
    assert payload["task_token.$"] == "$$.Task.Token"
    assert payload["call"]["state"] == "Approve"
    assert approve["ResultPath"] == "$.answer"
    # the timeout goes to on_timeout with the state's input, before any catch
    assert approve["Catch"][0] == {
        "ErrorEquals": ["States.Timeout"],
        "Next": "Late",
        "ResultPath": None,
    }
    assert approve["Catch"][1]["ErrorEquals"] == ["States.ALL"]


def test_event_wait_needs_the_token_function() -> None:
    definition = flow({"W": {"type": "wait_for_event", "event": "e", "end": True}})
    with pytest.raises(CompileError, match=r"state 'W'.*token_function_arn"):
        compile_flow(definition, activity_function_arn=ACTIVITY_ARN)


# --- parallel and map ----------------------------------------------------------------------------


def test_parallel_branches_know_their_scope() -> None:
    definition = flow(
        {
            "Fork": {
                "type": "parallel",
                "parameters": {"x.$": "$.x"},
                "branches": [
                    {"start_at": "A", "states": {"A": {"type": "pass", "end": True}}},
                    {
                        "start_at": "B",
                        "states": {"B": {"type": "task", "activity": "b", "end": True}},
                    },
                ],
                "result_selector": {"second.$": "$[1]"},
                "end": True,
            }
        }
    )
    fork = state(compiled(definition), "Fork")
    assert fork["Parameters"] == {"x.$": "$.x"}
    assert fork["ResultSelector"] == {"second.$": "$[1]"}
    assert [branch["StartAt"] for branch in fork["Branches"]] == ["Fork[0]/A", "Fork[1]/B"]
    call = fork["Branches"][1]["States"]["Fork[1]/B"]["Parameters"]["Payload"]["call"]
    assert call["scope"] == {"up": None, "owner": "Fork", "index": 1}


def test_map_items_carry_their_index_when_the_iterator_needs_it() -> None:
    definition = flow(
        {
            "Each": {
                "type": "map",
                "items_path": "$.lines",
                "max_concurrency": 2,
                "item_selector": {"line.$": "$$.Map.Item.Value", "cur.$": "$.currency"},
                "iterator": {
                    "start_at": "Price",
                    "states": {
                        "Price": {
                            "type": "task",
                            "activity": "price",
                            "parameters": {"sku.$": "$.line.sku"},
                            "result_path": "$.price",
                            "output_path": "$.price",
                            "end": True,
                        }
                    },
                },
                "end": True,
            }
        }
    )
    document = compiled(definition)
    each = state(document, "Each")
    assert each["ItemsPath"] == "$.lines"
    assert each["MaxConcurrency"] == 2
    assert each["ItemSelector"] == {
        "rf": {"scope": {"up": None, "owner": "Each", "index.$": "$$.Map.Item.Index"}},
        "d": {"line.$": "$$.Map.Item.Value", "cur.$": "$.currency"},
    }
    assert each["ItemProcessor"]["ProcessorConfig"] == {"Mode": "INLINE"}
    price = state(document, "Each[*]/Price")
    payload = price["Parameters"]["Payload"]
    assert payload["input"] == {"sku.$": "$.d.line.sku"}
    assert payload["call"]["scope.$"] == "$.rf.scope"
    assert price["ResultPath"] == "$.d.price"
    unwrap = state(document, price["Next"])
    assert unwrap["InputPath"] == "$.d.price.value"
    assert unwrap["ResultPath"] == "$.d.price"
    # the output_path keeps the item's data next to its scope; the branch ends with $.d
    out = state(document, unwrap["Next"])
    assert out == {
        "Type": "Pass",
        "InputPath": "$.d.price",
        "ResultPath": "$.d",
        "Next": out["Next"],
    }
    assert state(document, out["Next"]) == {"Type": "Succeed", "OutputPath": "$.d"}


def test_map_of_plain_states_keeps_the_user_item_selector() -> None:
    definition = flow(
        {
            "Each": {
                "type": "map",
                "input_path": "$.data",
                "item_selector": {"v.$": "$$.Map.Item.Value"},
                "iterator": {"start_at": "P", "states": {"P": {"type": "pass", "end": True}}},
                "result_path": "$.r",
                "end": True,
            }
        }
    )
    each = state(compiled(definition), "Each")
    assert each["InputPath"] == "$.data"
    assert each["ItemSelector"] == {"v.$": "$$.Map.Item.Value"}
    assert each["ResultPath"] == "$.r"


def test_a_wildcard_input_path_cannot_be_moved_under_the_item_data() -> None:
    definition = flow(
        {
            "Each": {
                "type": "map",
                "iterator": {
                    "start_at": "T",
                    "states": {
                        "T": {
                            "type": "task",
                            "activity": "t",
                            "input_path": "$.lines[*]",
                            "parameters": {"sku.$": "$.sku"},
                            "end": True,
                        }
                    },
                },
                "end": True,
            }
        }
    )
    with pytest.raises(CompileError, match=r"state 'T'.*wildcard"):
        compiled(definition)


# --- sub_flow -------------------------------------------------------------------------------------


def test_sub_flow_starts_the_child_machine_and_waits() -> None:
    definition = flow(
        {
            "Call": {
                "type": "sub_flow",
                "flow": "child",
                "version": "2",
                "parameters": {"x.$": "$.x"},
                "result_selector": {"y.$": "$.y"},
                "result_path": "$.child",
                "timeout_seconds": 60,
                "end": True,
            }
        }
    )
    arn = "arn:aws:states:us-east-1:123456789012:stateMachine:child-2"
    document = compiled(definition, flow_arns={"child@2": arn})
    call = state(document, "Call")
    assert call["Type"] == "Parallel"
    # entered once: the child is parent/position@attempt, as the engine names it
    assert call["Parameters"] == {
        "input": {"x.$": "$.x"},
        "child": {
            "scope": None,
            "path": "",
            "state": "Call",
            "attempt.$": "States.MathAdd($$.State.RetryCount, 1)",
        },
    }
    start = state(document, "Call~child")
    assert start["Resource"] == "arn:aws:states:::states:startExecution.sync:2"
    assert start["TimeoutSeconds"] == 60
    assert start["Parameters"]["StateMachineArn"] == arn
    assert start["Parameters"]["Input"]["rf"]["instance_id.$"] == (
        "States.Format('{}/{}{}@{}', $$.Execution.Input.rf.instance_id, $.child.path, "
        "$.child.state, $.child.attempt)"
    )
    assert "States.Hash" in start["Parameters"]["Name.$"]
    assert start["Parameters"]["Input"]["rf"]["resume"] is None
    assert start["OutputPath"] == "$.Output"
    assert start["Catch"] == [{"ErrorEquals": ["States.TaskFailed"], "Next": "Call~why"}]
    assert state(document, "Call~select") == {
        "Type": "Pass",
        "Parameters": {"y.$": "$.y"},
        "End": True,
    }
    assert call["ResultSelector"] == {"value.$": "$[0]"}
    # the child's error is raised again under its own name
    assert state(document, "Call~reraise") == {
        "Type": "Fail",
        "ErrorPath": "$.child.Error",
        "CausePath": "$.child.Cause",
    }


def test_a_looping_sub_flow_names_its_children_itself() -> None:
    """A state entered again in the same scope cannot be named by position and attempt:
    its children get unique ids of the machine's own (the engine numbers them)."""
    definition = flow(
        {
            "Call": {"type": "sub_flow", "flow": "child", "result_path": "$.r", "next": "More"},
            "More": {
                "type": "choice",
                "choices": [
                    {"when": {"variable": "$.r.more", "boolean_equals": True}, "next": "Call"}
                ],
                "default": "Done",
            },
            "Done": {"type": "succeed"},
        },
        start_at="Call",
    )
    document = compiled(definition, flow_arns={"child": "arn:aws:states:::stateMachine:child"})
    assert state(document, "Call")["Parameters"]["call"] == {"scope": None, "state": "Call"}
    start = state(document, "Call~child")
    assert "$$.State.EnteredTime" in start["Parameters"]["Input"]["rf"]["instance_id.$"]


def test_a_sub_flow_in_a_map_item_builds_its_position_from_the_scope() -> None:
    definition = flow(
        {
            "Fork": {
                "type": "parallel",
                "branches": [
                    {
                        "start_at": "Items",
                        "states": {
                            "Items": {
                                "type": "map",
                                "iterator": {
                                    "start_at": "Call",
                                    "states": {
                                        "Call": {"type": "sub_flow", "flow": "child", "end": True}
                                    },
                                },
                                "end": True,
                            }
                        },
                    }
                ],
                "end": True,
            }
        },
        start_at="Fork",
    )
    document = compiled(definition, flow_arns={"child": "arn:aws:states:::stateMachine:child"})
    child = state(document, "Fork[0]/Items[*]/Call")["Parameters"]["child"]
    # the owners' names are arguments, never text inside the intrinsic's string literal
    assert child["path.$"] == (
        "States.Format('{}[{}]/{}[{}]/', $.rf.scope.up.owner, $.rf.scope.up.index, "
        "$.rf.scope.owner, $.rf.scope.index)"
    )
    assert child["state"] == "Call"


def test_sub_flow_without_an_arn_names_the_state() -> None:
    definition = flow({"Call": {"type": "sub_flow", "flow": "child", "version": "3", "end": True}})
    with pytest.raises(CompileError, match=r"state 'Call'.*'child@3'"):
        compiled(definition, flow_arns={"child": "arn:aws:states:::stateMachine:child"})


# --- the flow's timeout ---------------------------------------------------------------------------


def test_flow_timeout_races_a_deadline() -> None:
    definition = flow({"A": {"type": "pass", "end": True}}, timeout_seconds=90)
    document = compiled(definition)
    assert document["StartAt"] == "RF:Run"
    run = document["States"]["RF:Run"]
    flow_branch, clock = run["Branches"]
    assert flow_branch["StartAt"] == "RF:Start"
    assert flow_branch["States"]["A"]["Next"] == "RF:Finished"
    assert flow_branch["States"]["RF:Finished"]["Error"] == "RF.Finished"
    assert clock["States"]["RF:ClockFull"]["TimeoutSeconds"] == 90
    assert clock["States"]["RF:ClockLeft"]["TimeoutSecondsPath"] == "$.rf.timeout"
    assert run["Catch"] == [{"ErrorEquals": ["RF.Finished"], "Next": "RF:Output"}]
    assert lint(document) == []


def test_flow_timeout_needs_the_token_function() -> None:
    definition = flow({"A": {"type": "pass", "end": True}}, timeout_seconds=90)
    with pytest.raises(CompileError, match=r"flow 'f'.*token_function_arn"):
        compile_flow(definition, activity_function_arn=ACTIVITY_ARN)


# --- resume entries -------------------------------------------------------------------------------


def test_every_waiting_state_has_resume_entries() -> None:
    definition = flow(
        {
            "T": {"type": "task", "activity": "t", "next": "W"},
            "W": {"type": "wait", "seconds": 5, "next": "E"},
            "E": {"type": "wait_for_event", "event": "go", "timeout_seconds": 5, "next": "P"},
            "P": {"type": "pass", "end": True},
        }
    )
    document = compiled(definition)
    routes = {rule["StringEquals"] for rule in document["States"]["RF:Route"]["Choices"]}
    assert routes == {"T~resume", "T~delay", "W~resume", "E~resume"}
    task = state(document, "T~resume")
    assert task["Parameters"]["Payload"]["attempt.$"] == "$.rf.node.call.attempt"
    assert task["Parameters"]["Payload"]["call"]["tag.$"] == "$.rf.node.call.tag"
    assert "Retry" not in task  # the retry loop over the node's counters replaces it
    assert state(document, "T~delay") == {
        "Type": "Wait",
        "TimestampPath": "$.rf.node.until",
        "Next": "T~resume",
    }
    wait = state(document, "W~resume")
    assert wait["TimestampPath"] == "$.rf.node.until"
    assert wait["OutputPath"] == "$.rf.node.data"
    event = state(document, "E~resume")
    assert event["TimeoutSecondsPath"] == "$.rf.node.timeout"
    assert event["Parameters"]["Payload"]["call"]["tag.$"] == "$.rf.node.tag"


# --- documented differences (docs/aws.md, "Differences") ------------------------------------


def test_pass_choice_and_wait_cannot_catch_so_on_error_does_not_see_their_errors() -> None:
    definition = flow(
        {
            "P": {"type": "pass", "parameters": {"x.$": "$.missing"}, "next": "W"},
            "W": {"type": "wait", "seconds_path": "$.delay", "end": True},
            "H": {"type": "pass", "end": True},
        },
        on_error=[{"errors": ["States.ALL"], "next": "H"}],
    )
    document = compiled(definition)
    assert "Catch" not in state(document, "P")
    assert "Catch" not in state(document, "W")


def test_resume_entries_raise_reserved_errors_the_way_step_functions_does() -> None:
    definition = flow(
        {
            "T": {
                "type": "task",
                "activity": "t",
                "retry": [{"errors": ["States.ALL"], "max_attempts": 2}],
                "end": True,
            }
        }
    )
    document = compiled(definition)
    resumed = state(document, "T~resume")
    assert resumed["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "Next": "T~resume~retry0", "ResultPath": "$.rf.error"}
    ]
    raising = state(document, "T~resume~raise")
    targets = {
        rule["StringEquals"]: rule["Next"] for rule in raising["Choices"] if "StringEquals" in rule
    }
    assert state(document, targets["States.Runtime"])["InputPath"] == "$.rf.error.rf_absent"
    assert state(document, targets["States.Timeout"])["TimeoutSeconds"] == 1
    assert raising["Default"] == "T~resume~rethrow"
    unraisable = next(rule for rule in raising["Choices"] if "StringMatches" in rule)
    assert state(document, unraisable["Next"])["Error"] == "RF.Unraisable"


def _holds(rule: dict[str, Any], error: str) -> bool:
    """The Choice rules an error router writes (StringEquals, Not, Or), on one error name."""
    if "Not" in rule:
        return not _holds(rule["Not"], error)
    if "Or" in rule:
        return any(_holds(inner, error) for inner in rule["Or"])
    assert rule["Variable"] == "$.rf.error.Error", rule
    return bool(rule["StringEquals"] == error)


@pytest.mark.parametrize(
    ("error", "target"),
    [
        ("Other", "T~resume~h0"),
        ("CardDeclined", "T~resume~h1"),  # States.TaskFailed: every error but a timeout
        ("States.TaskFailed", "T~resume~h1"),
        ("States.Timeout", "T~resume~h2"),
        ("States.Runtime", "T~resume~raise"),
    ],
)
def test_a_used_up_resume_entry_routes_errors_to_catchers_as_the_engine_does(
    error: str, target: str
) -> None:
    catch = [
        {"errors": ["Other"], "next": "Done"},
        {"errors": ["States.TaskFailed"], "next": "Done"},
        {"errors": ["States.Timeout"], "next": "Done"},
    ]
    definition = flow(
        {
            "T": {
                "type": "task",
                "activity": "t",
                "retry": [{"errors": ["States.TaskFailed"], "max_attempts": 1}],
                "catch": catch,
                "next": "Done",
            },
            "Done": {"type": "succeed"},
        }
    )
    used_up = state(compiled(definition), "T~resume~usedup0")
    routed = next(
        (choice["Next"] for choice in used_up["Choices"] if _holds(choice, error)),
        used_up["Default"],
    )
    engine = next(
        (
            f"T~resume~h{index}"
            for index, h in enumerate(catch)
            if error_matches(h["errors"], error)
        ),
        "T~resume~raise",
    )
    assert routed == engine == target


def test_a_resumed_join_is_retried_once_by_the_snapshot_counters_then_by_asl() -> None:
    definition = flow(
        {
            "Fork": {
                "type": "parallel",
                "branches": [
                    {
                        "start_at": "A",
                        "states": {"A": {"type": "task", "activity": "a", "end": True}},
                    }
                ],
                "retry": [{"errors": ["Boom"], "max_attempts": 3}],
                "end": True,
            }
        }
    )
    document = compiled(definition)
    assert "Retry" not in state(document, "Fork~resume")
    assert state(document, "Fork~resume~pause")["Next"] == "Fork~resume~fresh"
    assert state(document, "Fork~resume~fresh") == {
        "Type": "Pass",
        "OutputPath": "$.rf.node.data",
        "Next": "Fork",
    }
    assert state(document, "Fork")["Retry"][0]["MaxAttempts"] == 3


def test_a_resumed_child_wait_gets_its_full_timeout_again() -> None:
    definition = flow(
        {"Call": {"type": "sub_flow", "flow": "child", "timeout_seconds": 60, "end": True}}
    )
    document = compiled(definition, flow_arns={"child": "arn:aws:states:::stateMachine:child"})
    assert state(document, "Call~resume~child")["TimeoutSeconds"] == 60
    assert state(document, "Call~resume~child")["Parameters"]["Name.$"] == "$.child.name"


def test_in_a_map_iteration_paths_are_checked_before_and_after_the_task() -> None:
    definition = flow(
        {
            "Each": {
                "type": "map",
                "iterator": {
                    "start_at": "T",
                    "states": {
                        "T": {
                            "type": "task",
                            "activity": "t",
                            "input_path": "$.in",
                            "output_path": "$.out",
                            "end": True,
                        }
                    },
                },
                "end": True,
            }
        }
    )
    document = compiled(definition)
    processor = state(document, "Each")["ItemProcessor"]
    assert processor["StartAt"] == "Each[*]/T~in"
    assert state(document, "Each[*]/T~in") == {
        "Type": "Pass",
        "InputPath": "$.d.in",
        "ResultPath": None,
        "Next": "Each[*]/T",
    }
    assert state(document, "Each[*]/T~out")["InputPath"] == "$.d.value.out"
