"""The states that call out: task, wait_for_event and sub_flow.

A task invokes the activity Lambda with the engine's call payload (adapters/aws/contract.py),
an event wait hands a task token to the token Lambda, a sub-flow starts the child's
machine and waits for it inside a one-branch Parallel that re-raises the child's error.
Each compiles fresh, and (``resumed=True``) as the resume entry that re-issues the
snapshot's call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rustyflower.adapters.aws.compiler.layout import (
    ENV_ROOT,
    EPOCH,
    INSTANCE_ID,
    LAMBDA_INVOKE,
    LAMBDA_WAIT_FOR_TOKEN,
    NATIVE_TAG,
    RESERVED_WILDCARD,
    RESUME_FORMAT,
    RESUME_ROOT,
    START_EXECUTION_SYNC,
    SUB_FLOW_FAILED,
    Copy,
    StateItems,
    retriers_of,
)
from rustyflower.adapters.aws.compiler.policies import retry_document
from rustyflower.adapters.aws.compiler.service_states import ServiceStates
from rustyflower.adapters.aws.errors import CompileError
from rustyflower.adapters.aws.jsonpaths import reach
from rustyflower.adapters.aws.names import helper_of, state_name
from rustyflower.adapters.aws.services import natively_compiled
from rustyflower.core.contract import CHILD_ATTEMPT_SEPARATOR, ReservedError, RunnerError
from rustyflower.core.model import SubFlowState, TaskState, WaitForEventState

_CHILD_ID = (
    "States.Format('{}/{}', $$.Execution.Input.rf.instance_id, States.Hash(States.Format("
    "'{}|{}|{}', States.JsonToString($.call), $$.Execution.Name, $$.State.EnteredTime), "
    "'SHA-256'))"
)
"""The child of a sub_flow state that can be entered again: unique, not the engine's id."""
_CHILD_NAME = (
    f"States.Format('rf-{{}}', States.Hash(States.Format('{{}}|{{}}', {_CHILD_ID}, {EPOCH}), "
    "'SHA-256'))"
)
_POSITIONAL_TEMPLATE = f"'{{}}/{{}}{{}}{CHILD_ATTEMPT_SEPARATOR}{{}}'"
_POSITIONAL_CHILD_ID = (
    f"States.Format({_POSITIONAL_TEMPLATE}, {INSTANCE_ID}, $.child.path, $.child.state, "
    "$.child.attempt)"
)
"""The engine's id of the child of a state entered once per scope: ``parent/position@attempt``
(core.contract.child_instance_id), from the wrapper's ``child``: ``path`` (the scope text),
``state`` and ``attempt``."""
_NEXT_CHILD_ID = (
    f"States.Format('{{}}/{{}}{CHILD_ATTEMPT_SEPARATOR}{{}}', {INSTANCE_ID}, "
    "$.rf.node.child.position, States.MathAdd($.rf.node.child.attempt, 1))"
)
"""The engine's id of the next attempt's child, in a resume entry (from its node)."""


def _positional_child_name(child_id: str) -> str:
    """The execution name of a positional child: unique per start, as the names of the
    other children are (the time the starting state was entered counts in). Should a
    Step Functions ever give a retried wrapper its first attempt's Parameters again (moto
    does, adapters/localcloud/moto_fixes.py), the retry would reuse the child's id, but
    its start would not fail on the name."""
    return (
        f"States.Format('rf-{{}}', States.Hash(States.Format('{{}}|{{}}|{{}}|{{}}', {child_id}, "
        f"{EPOCH}, $$.Execution.Name, $$.State.EnteredTime), 'SHA-256'))"
    )


class CallStates(ServiceStates):
    """Task, event-wait and sub-flow states, fresh and resumed."""

    def task(self, copy: Copy, name: str, state: TaskState, *, resumed: bool) -> StateItems:
        if natively_compiled(state, self.services):
            return self.service_task(copy, name, state, resumed=resumed)
        base = state_name(copy.prefix, name, "resume" if resumed else None)
        root = RESUME_ROOT if resumed else copy.root
        main: dict[str, Any] = {"Type": "Task", "Resource": LAMBDA_INVOKE}
        if state.comment:
            main["Comment"] = state.comment
        input_base: str | None = "$"
        if resumed or copy.mode == "env":
            input_base = reach(root, state.input_path)
        elif state.input_path != "$":
            main["InputPath"] = state.input_path
        # an activity, or a service task carried out by the activity Lambda (http.call
        # without a connection): the engine's reserved name tells the Lambda which
        payload: dict[str, Any] = {
            "activity": state.work_name,
            "flow": self.definition.name,
            "instance_id.$": INSTANCE_ID,
        }
        payload.update(self.input_field("input", state.parameters, input_base))
        # the key of a call at a state entered once per scope is its position and attempt,
        # as the engine makes it, so a call the site made before a failover and the cloud
        # makes again carries the same key (a state on a loop keys by its tag instead)
        positional = not self.reentered(copy, name)
        if resumed:
            payload["attempt.$"] = "$.rf.node.call.attempt"
            payload["call"] = {
                "scope.$": "$.rf.scope",
                "state": name,
                "tag.$": "$.rf.node.call.tag",
                "positional_key.$": "$.rf.node.call.positional_key",
            }
        else:
            payload["attempt.$"] = "States.MathAdd($$.State.RetryCount, 1)"
            payload["call"] = {
                **self.scope_field(copy),
                "state": name,
                "tag.$": NATIVE_TAG,
                "positional_key": positional,
            }
        main["Parameters"] = {"FunctionName": self.activity_arn, "Payload": payload}
        if state.timeout_seconds is not None:
            if resumed:
                main["TimeoutSecondsPath"] = "$.rf.node.call.timeout"
            else:
                main["TimeoutSeconds"] = state.timeout_seconds
        fields, after = self.result_fields(copy, base, root, state, "$.Payload")
        main.update(fields)
        if resumed:
            next_call: dict[str, Any] = {
                "attempt.$": "States.MathAdd($.rf.node.call.attempt, 1)",
                "tag.$": NATIVE_TAG,
                "positional_key": positional,
            }
            if state.timeout_seconds is not None:
                next_call["timeout"] = state.timeout_seconds
            again = {
                "Type": "Pass",
                "Parameters": next_call,
                "ResultPath": "$.rf.node.call",
                "Next": base,
            }
            catch, extra = self.error_router(copy, name, base, state, (again, []))
        else:
            retry = retriers_of(self.definition, state)
            if retry:
                main["Retry"] = retry_document(retry)
            catch, extra = self.catches(copy, base, root, self.handlers(copy, state))
        if catch:
            main["Catch"] = catch
        return self.assemble(
            copy, name, base, main, after=after, transition=self.follow(copy, state), extra=extra
        )

    def event_wait(
        self, copy: Copy, name: str, state: WaitForEventState, *, resumed: bool
    ) -> StateItems:
        if self.token_arn is None:
            raise CompileError(
                f"state {name!r}: wait_for_event needs token_function_arn (the Lambda that "
                "stores the task token the event is delivered to)"
            )
        base = state_name(copy.prefix, name, "resume" if resumed else None)
        root = RESUME_ROOT if resumed else copy.root
        main: dict[str, Any] = {"Type": "Task", "Resource": LAMBDA_WAIT_FOR_TOKEN}
        if state.comment:
            main["Comment"] = state.comment
        if not resumed and copy.mode == "plain" and state.input_path != "$":
            main["InputPath"] = state.input_path
        payload: dict[str, Any] = {
            "kind": "event",
            "instance_id.$": INSTANCE_ID,
            "event": state.event,
            "task_token.$": "$$.Task.Token",
        }
        if resumed:
            payload["call"] = {"scope.$": "$.rf.scope", "state": name, "tag.$": "$.rf.node.tag"}
            payload["since.$"] = "$.rf.node.since"
            payload["order.$"] = "$.rf.node.order"
        else:
            payload["call"] = {**self.scope_field(copy), "state": name, "tag.$": NATIVE_TAG}
            payload["since.$"] = "$$.State.EnteredTime"
            payload["order"] = 0
        main["Parameters"] = {"FunctionName": self.token_arn, "Payload": payload}
        if state.timeout_seconds is not None:
            if resumed:
                main["TimeoutSecondsPath"] = "$.rf.node.timeout"
            else:
                main["TimeoutSeconds"] = state.timeout_seconds
        fields, after = self.result_fields(copy, base, root, state, None)
        main.update(fields)
        first: list[tuple[list[str], str | None, str]] = []
        if state.on_timeout is not None:
            first.append(([ReservedError.TIMEOUT], None, state.on_timeout))
        catch, extra = self.catches(copy, base, root, self.handlers(copy, state), first)
        if catch:
            main["Catch"] = catch
        return self.assemble(
            copy, name, base, main, after=after, transition=self.follow(copy, state), extra=extra
        )

    def flow_arn(self, name: str, state: SubFlowState) -> str:
        key = f"{state.flow}@{state.version}" if state.version is not None else state.flow
        arn = self.flow_arns.get(key)
        if arn is None:
            known = ", ".join(sorted(self.flow_arns)) or "none"
            raise CompileError(
                f"state {name!r}: sub_flow calls flow {key!r}, which has no state machine ARN "
                f"in flow_arns (known: {known})"
            )
        return arn

    def sub_flow(self, copy: Copy, name: str, state: SubFlowState, *, resumed: bool) -> StateItems:
        arn = self.flow_arn(name, state)
        base = state_name(copy.prefix, name, "resume" if resumed else None)
        root = RESUME_ROOT if resumed else copy.root
        main: dict[str, Any] = {"Type": "Parallel"}
        if state.comment:
            main["Comment"] = state.comment
        child_task: dict[str, Any] = {"Type": "Task", "Resource": START_EXECUTION_SYNC}
        # a state entered once per scope names its child as the engine does (position and
        # attempt), so a child the site started before a failover, from a snapshot taken
        # before the start, is the child the machine starts again (its calls keep their
        # keys); a state that can be entered again gets a unique id of the machine's own
        positional = not self.reentered(copy, name)
        if resumed:
            main["Parameters"] = {
                "child": {"name.$": "$.rf.node.child.name", "input.$": "$.rf.node.child.input"}
            }
            child_task["Parameters"] = {
                "StateMachineArn": arn,
                "Name.$": "$.child.name",
                "Input.$": "$.child.input",
            }
        else:
            input_base: str | None = "$"
            if copy.mode == "env":
                input_base = reach(ENV_ROOT, state.input_path)
            elif state.input_path != "$":
                main["InputPath"] = state.input_path
            parameters = self.input_field("input", state.parameters, input_base)
            if positional:
                # ASL's retry count of this wrapper is the engine's attempt - 1
                parameters["child"] = {
                    **self.scope_field(copy),  # where failback places the child's start
                    **self.scope_text_field(copy),
                    "state": name,
                    "attempt.$": "States.MathAdd($$.State.RetryCount, 1)",
                }
                child_id, child_name = (
                    _POSITIONAL_CHILD_ID,
                    _positional_child_name(_POSITIONAL_CHILD_ID),
                )
            else:
                parameters["call"] = {**self.scope_field(copy), "state": name}
                child_id, child_name = _CHILD_ID, _CHILD_NAME
            main["Parameters"] = parameters
            child_task["Parameters"] = {
                "StateMachineArn": arn,
                "Name.$": child_name,
                "Input": {
                    "rf": {
                        "format": RESUME_FORMAT,
                        "instance_id.$": child_id,
                        "epoch.$": EPOCH,
                        "resume": None,
                    },
                    "input.$": "$.input",
                },
            }
        if state.timeout_seconds is not None:
            child_task["TimeoutSeconds"] = state.timeout_seconds
        child_task["OutputPath"] = "$.Output"
        main["Branches"] = [self.child_branch(base, child_task, state.result_selector)]
        fields, after = self.result_fields(copy, base, root, state, "$[0]", select=False)
        main.update(fields)
        if resumed:
            again: tuple[dict[str, Any], StateItems] | None = None
            if positional:
                again = (self.next_child(state, base), [])
            catch, extra = self.error_router(copy, name, base, state, again)
        else:
            retry = retriers_of(self.definition, state)
            if retry:
                main["Retry"] = retry_document(retry)
            catch, extra = self.catches(copy, base, root, self.handlers(copy, state))
        if catch:
            main["Catch"] = catch
        return self.assemble(
            copy, name, base, main, after=after, transition=self.follow(copy, state), extra=extra
        )

    def next_child(self, state: SubFlowState, base: str) -> dict[str, Any]:
        """The next attempt of a resumed sub-flow, as the engine makes it: a new child
        ``parent/position@attempt+1`` started from the state's input again.

        (Entering the fresh state instead would count attempts from 1 again, and start the
        failed attempt's child id a second time.)
        """
        child_input = {
            "rf": {
                "format": RESUME_FORMAT,
                "instance_id.$": _NEXT_CHILD_ID,
                "epoch.$": EPOCH,
                "resume": None,
            },
            **self.input_field("input", state.parameters, reach(RESUME_ROOT, state.input_path)),
        }
        return {
            "Type": "Pass",
            "Parameters": {
                "id.$": _NEXT_CHILD_ID,
                "name.$": _positional_child_name(_NEXT_CHILD_ID),
                "input": child_input,
                "attempt.$": "States.MathAdd($.rf.node.child.attempt, 1)",
                "position.$": "$.rf.node.child.position",
            },
            "ResultPath": "$.rf.node.child",
            "Next": base,
        }

    def child_branch(
        self, base: str, child_task: dict[str, Any], selector: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """Start the child and wait; a failed child's error is raised again under its name.

        The user's result_selector runs here, on the child's output: the Parallel around
        this branch can then take its one result with ``$[0]`` alone.
        """

        def named(role: str) -> str:
            return helper_of(base, role)

        child_task["Catch"] = [{"ErrorEquals": [ReservedError.TASK_FAILED], "Next": named("why")}]
        if selector is None:
            child_task["End"] = True
        else:
            child_task["Next"] = named("select")
        reserved, reraise_items = self.reraise(named("child"), "$.child")
        error = "$.child.Error"
        cause = "$.child.Cause"
        states: dict[str, dict[str, Any]] = {
            named("child"): child_task,
            named("why"): {
                "Type": "Pass",
                "Parameters": {"child.$": "States.StringToJson($.Cause)"},
                "Next": named("why1"),
            },
            named("why1"): {
                "Type": "Choice",
                "Choices": [
                    {"Variable": error, "IsPresent": True, "Next": named("why2")},
                    {
                        "Variable": "$.child.Status",
                        "StringEquals": "ABORTED",
                        "Next": named("cancelled"),
                    },
                ],
                "Default": named("failed"),
            },
            named("why2"): {
                "Type": "Choice",
                "Choices": [{"Variable": error, "IsString": True, "Next": named("why3")}],
                "Default": named("failed"),
            },
            named("why3"): {
                "Type": "Choice",
                "Choices": [
                    {"Variable": error, "StringMatches": RESERVED_WILDCARD, "Next": reserved},
                    {"Variable": cause, "IsPresent": True, "Next": named("why4")},
                ],
                "Default": named("reraise0"),
            },
            named("why4"): {
                "Type": "Choice",
                "Choices": [{"Variable": cause, "IsString": True, "Next": named("reraise")}],
                "Default": named("reraise0"),
            },
            named("reraise"): {"Type": "Fail", "ErrorPath": error, "CausePath": cause},
            named("reraise0"): {"Type": "Fail", "ErrorPath": error},
            named("cancelled"): {
                "Type": "Fail",
                "Error": RunnerError.SUB_FLOW_CANCELLED,
                "Cause": "the child flow was cancelled",
            },
            named("failed"): {
                "Type": "Fail",
                "Error": SUB_FLOW_FAILED,
                "Cause": "the child flow failed without an error name",
            },
        }
        states.update(reraise_items)
        if selector is not None:
            states[named("select")] = {"Type": "Pass", "Parameters": dict(selector), "End": True}
        for state_key in states:
            if state_key in self.used:
                raise CompileError(f"two compiled states are both named {state_key!r}")
        self.used.update(states)
        return {"StartAt": named("child"), "States": states}
