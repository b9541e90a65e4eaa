"""The whole machine: the router in front, the flow's deadline race, the public functions.

:func:`compile_flow` is the entry point; :class:`MachineCompiler` puts the concerns
together and dispatches each user state to the one that compiles its kind.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from rustyflower.adapters.aws.compiler.join_states import JoinStates
from rustyflower.adapters.aws.compiler.layout import (
    DIGEST_MISMATCH,
    FINISHED,
    INSTANCE_ID,
    LAMBDA_WAIT_FOR_TOKEN,
    Copy,
    StateItems,
)
from rustyflower.adapters.aws.compiler.resume_entries import ResumeEntries
from rustyflower.adapters.aws.compiler.simple_states import SimpleStates
from rustyflower.adapters.aws.errors import CompileError
from rustyflower.adapters.aws.services import AwsServiceBindings
from rustyflower.core.model import (
    ChoiceState,
    FailState,
    FlowDefinition,
    MapState,
    ParallelState,
    PassState,
    SubFlowState,
    SucceedState,
    TaskState,
    WaitForEventState,
    WaitState,
)
from rustyflower.core.snapshot.canonical import definition_digest


def compile_flow(
    definition: FlowDefinition,
    *,
    activity_function_arn: str,
    flow_arns: Mapping[str, str] | None = None,
    token_function_arn: str | None = None,
    services: AwsServiceBindings | None = None,
) -> dict[str, Any]:
    """The ASL document (a dict) of ``definition``.

    ``flow_arns`` maps the flows that ``sub_flow`` states call to their state machines:
    key ``"name@version"`` for a state that names a version, ``"name"`` for one that does
    not (the latest). ``token_function_arn`` is the Lambda that stores task tokens; flows
    with ``wait_for_event`` states or a ``timeout_seconds`` need it. ``services`` binds
    the queues, buses and stores of service tasks (adapters/aws/services.py); flows with
    queue, event or object tasks need it.
    """
    return MachineCompiler(
        definition, activity_function_arn, flow_arns or {}, token_function_arn, services
    ).run()


def compile_to_json(
    definition: FlowDefinition,
    *,
    activity_function_arn: str,
    flow_arns: Mapping[str, str] | None = None,
    token_function_arn: str | None = None,
    services: AwsServiceBindings | None = None,
    indent: int | None = 2,
) -> str:
    """:func:`compile_flow` as JSON text (the ``definition`` of ``CreateStateMachine``)."""
    document = compile_flow(
        definition,
        activity_function_arn=activity_function_arn,
        flow_arns=flow_arns,
        token_function_arn=token_function_arn,
        services=services,
    )
    return json.dumps(document, indent=indent, ensure_ascii=False)


def machine_comment(definition: FlowDefinition) -> str:
    """The ``Comment`` of the compiled machine: it carries the definition's digest."""
    digest = definition_digest(definition.document())
    return f"RustyFlower flow {definition.name} version {definition.version} digest={digest}"


class MachineCompiler(ResumeEntries, JoinStates, SimpleStates):
    """Compiles one flow to one state machine (fresh starts and continuations)."""

    # --- the machine ----------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        definition = self.definition
        timed = definition.timeout_seconds is not None
        if timed and self.token_arn is None:
            raise CompileError(
                f"flow {definition.name!r}: timeout_seconds needs token_function_arn (the "
                "flow's deadline is a task-token wait that times out)"
            )
        top = Copy(
            prefix="",
            branch=definition,
            mode="plain",
            dynamic=False,
            scope=None,
            top=True,
            resumable=True,
            end="RF:Finished" if timed else None,
        )
        flow = self.branch(top, self.router(top))
        document: dict[str, Any] = {"Comment": machine_comment(definition)}
        if not timed:
            document.update(flow)
            return document
        flow["States"]["RF:Finished"] = {
            "Type": "Fail",
            "Error": FINISHED,
            "CausePath": "States.JsonToString($)",
        }
        document["StartAt"] = "RF:Run"
        document["States"] = {
            "RF:Run": {
                "Type": "Parallel",
                "Comment": "the flow races its deadline (timeout_seconds)",
                "Branches": [flow, self.clock()],
                "Catch": [{"ErrorEquals": [FINISHED], "Next": "RF:Output"}],
                "End": True,
            },
            "RF:Output": {
                "Type": "Pass",
                "Parameters": {"output.$": "States.StringToJson($.Cause)"},
                "OutputPath": "$.output",
                "End": True,
            },
        }
        return document

    def clock(self) -> dict[str, Any]:
        """The deadline branch: a task-token wait that times out when the flow's time is up."""
        seconds = self.definition.timeout_seconds
        assert seconds is not None and self.token_arn is not None
        parameters = {
            "FunctionName": self.token_arn,
            "Payload": {
                "kind": "deadline",
                "instance_id.$": INSTANCE_ID,
                "task_token.$": "$$.Task.Token",
            },
        }
        return {
            "StartAt": "RF:Clock",
            "States": {
                "RF:Clock": {
                    "Type": "Choice",
                    "Choices": [
                        {"Variable": "$.rf.timeout", "IsPresent": True, "Next": "RF:ClockLeft"}
                    ],
                    "Default": "RF:ClockFull",
                },
                "RF:ClockFull": {
                    "Type": "Task",
                    "Resource": LAMBDA_WAIT_FOR_TOKEN,
                    "Parameters": parameters,
                    "TimeoutSeconds": seconds,
                    "End": True,
                },
                "RF:ClockLeft": {
                    "Type": "Task",
                    "Resource": LAMBDA_WAIT_FOR_TOKEN,
                    "Parameters": parameters,
                    "TimeoutSecondsPath": "$.rf.timeout",
                    "End": True,
                },
            },
        }

    def router(self, top: Copy) -> tuple[str, StateItems]:
        start = self.entry(top, self.definition.start_at)
        routes = self.route_rules(top)
        items: StateItems = [
            (
                "RF:Start",
                {
                    "Type": "Choice",
                    "Comment": "a fresh start, or the continuation of a snapshot",
                    "Choices": [
                        {"Variable": "$.rf.resume.route", "IsPresent": False, "Next": "RF:Fresh"}
                    ],
                    "Default": "RF:Check",
                },
            ),
            ("RF:Fresh", {"Type": "Pass", "InputPath": "$.input", "Next": start}),
            (
                "RF:Check",
                {
                    "Type": "Choice",
                    "Choices": [
                        {
                            "Variable": "$.rf.digest",
                            "StringEquals": self.digest,
                            "Next": "RF:Resume",
                        }
                    ],
                    "Default": "RF:WrongDigest",
                },
            ),
            (
                "RF:WrongDigest",
                {
                    "Type": "Fail",
                    "Error": DIGEST_MISMATCH,
                    "Cause": f"this machine runs definition {self.digest}; the resume document "
                    "was built from another one",
                },
            ),
            (
                "RF:Resume",
                {
                    "Type": "Pass",
                    "Parameters": {"rf": {"scope": None, "node.$": "$.rf.resume"}},
                    "Next": "RF:Route" if routes else "RF:Unroutable",
                },
            ),
            ("RF:Unroutable", self.unroutable()),
        ]
        if routes:
            items.append(
                (
                    "RF:Route",
                    {"Type": "Choice", "Choices": routes, "Default": "RF:Unroutable"},
                )
            )
        return "RF:Start", items

    # --- user states ------------------------------------------------------------------------

    def state(self, copy: Copy, name: str, state: Any) -> StateItems:
        if isinstance(state, TaskState):
            return self.task(copy, name, state, resumed=False)
        if isinstance(state, PassState):
            return self.pass_state(copy, name, state)
        if isinstance(state, ChoiceState):
            return self.choice(copy, name, state)
        if isinstance(state, WaitState):
            return self.wait(copy, name, state)
        if isinstance(state, WaitForEventState):
            return self.event_wait(copy, name, state, resumed=False)
        if isinstance(state, ParallelState):
            return self.parallel(copy, name, state)
        if isinstance(state, MapState):
            return self.map_state(copy, name, state)
        if isinstance(state, SubFlowState):
            return self.sub_flow(copy, name, state, resumed=False)
        if isinstance(state, SucceedState):
            return self.succeed(copy, name, state)
        if isinstance(state, FailState):
            return self.fail(copy, name, state)
        raise CompileError(f"state {name!r}: unknown state kind {type(state).__name__}")


def iter_states(document: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every (name, state) of a compiled machine, nested branches and iterators included."""
    for name, state in document.get("States", {}).items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from iter_states(branch)
        for key in ("ItemProcessor", "Iterator"):
            if key in state:
                yield from iter_states(state[key])
