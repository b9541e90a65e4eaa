"""Service tasks compiled to Step Functions' own integrations (adapters/aws/services.py).

A service task becomes a one-branch Parallel, as a sub-flow does, so that its Retry and
Catch see the portable error names and its result is the portable result:

* the Parallel's Parameters build ``{"input": <the request>, "call": {scope, state}}``
  (the user's input_path and parameters, as for any task; ``call`` places it for the
  failback reader);
* inside, the integration's Task (``X~call``) reads the request, shapes its answer with
  the kind's ResultSelector and, when the state has one, the user's result_selector runs
  next (``X~select``); the Parallel then takes its one result with ``$[0]``;
* the Task catches what the integration raises (``States.TaskFailed``: everything but a
  timeout) and fails the branch again under the portable name (``X~err``, ``X~why``:
  Choice states over the error name, then the cause, from the kind's error table).

Fresh, the Parallel retries with the state's own policies; resumed from a snapshot
(``X~resume``) it runs the snapshot's retry plan by hand (the error router), with the
call's remaining timeout.
"""

from __future__ import annotations

from typing import Any

from rustyflower.adapters.aws.compiler.error_router import ErrorRouter
from rustyflower.adapters.aws.compiler.layout import (
    RESUME_ROOT,
    Copy,
    StateItems,
    retriers_of,
)
from rustyflower.adapters.aws.compiler.policies import retry_document
from rustyflower.adapters.aws.errors import CompileError
from rustyflower.adapters.aws.jsonpaths import reach
from rustyflower.adapters.aws.names import helper_of, state_name
from rustyflower.adapters.aws.services import (
    CALL_ROLE,
    DETAIL_ROLE,
    DETAIL_TEXT,
    ERROR_TABLES,
    REFUSED_ROLE,
    RESOURCES,
    native_parameters,
    result_selector,
)
from rustyflower.core.contract import ReservedError, ServiceError, ServiceKind
from rustyflower.core.model import TaskState

_ERROR = "$.error"


class ServiceStates(ErrorRouter):
    """Service tasks that Step Functions carries out itself."""

    def service_task(self, copy: Copy, name: str, state: TaskState, *, resumed: bool) -> StateItems:
        base = state_name(copy.prefix, name, "resume" if resumed else None)
        root = RESUME_ROOT if resumed else copy.root
        main: dict[str, Any] = {"Type": "Parallel"}
        if state.comment:
            main["Comment"] = state.comment
        input_base: str | None = "$"
        if resumed or copy.mode == "env":
            input_base = reach(root, state.input_path)
        elif state.input_path != "$":
            main["InputPath"] = state.input_path
        parameters = self.input_field("input", state.parameters, input_base)
        if resumed:
            parameters["call"] = {"scope.$": "$.rf.scope", "state": name}
            if state.timeout_seconds is not None:
                parameters["timeout.$"] = "$.rf.node.call.timeout"
        else:
            parameters["call"] = {**self.scope_field(copy), "state": name}
        main["Parameters"] = parameters
        main["Branches"] = [self.service_branch(base, state, resumed=resumed)]
        fields, after = self.result_fields(copy, base, root, state, "$[0]", select=False)
        main.update(fields)
        if resumed:
            catch, extra = self.error_router(copy, name, base, state)
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

    def service_branch(self, base: str, state: TaskState, *, resumed: bool) -> dict[str, Any]:
        """The integration's call, its result made portable, its errors named portably."""
        kind = state.service
        assert kind is not None

        def named(role: str) -> str:
            return helper_of(base, role)

        selector, wrapped = result_selector(state)
        call: dict[str, Any] = {
            "Type": "Task",
            "Resource": RESOURCES[kind],
            "Parameters": native_parameters(state, self.services, "$.input"),
            "ResultSelector": selector,
            "Catch": [
                {
                    "ErrorEquals": [ReservedError.TASK_FAILED],
                    "ResultPath": _ERROR,
                    "Next": named("err"),
                }
            ],
        }
        if state.timeout_seconds is not None:
            if resumed:
                call["TimeoutSecondsPath"] = "$.timeout"
            else:
                call["TimeoutSeconds"] = state.timeout_seconds
        if wrapped:
            call["OutputPath"] = "$.value"
        if state.result_selector is None:
            call["End"] = True
        else:
            call["Next"] = named("select")
        by_name: list[dict[str, Any]] = []
        by_cause: list[dict[str, Any]] = []
        failures: dict[str, dict[str, Any]] = {}
        for rule in ERROR_TABLES[kind]:
            target = named(f"is{rule.portable}")
            failures[target] = {
                "Type": "Fail",
                "Error": rule.portable,
                "CausePath": "$.error.Cause",
            }
            by_name += [
                {"Variable": f"{_ERROR}.Error", "StringEquals": error, "Next": target}
                for error in rule.names
            ]
            by_cause += [
                {"Variable": f"{_ERROR}.Cause", "StringMatches": pattern, "Next": target}
                for pattern in rule.causes
            ]
        other = named(f"is{ServiceError.FAILED}")
        failures[other] = {
            "Type": "Fail",
            "Error": ServiceError.FAILED,
            "CausePath": "$.error.Cause",
        }
        states: dict[str, dict[str, Any]] = {}
        start = named(CALL_ROLE)
        if kind == ServiceKind.EVENT_PUBLISH:
            # EventBridge accepts a detail that is not an object and drops the event; the
            # portable meaning is ServiceInvalidRequest: the JSON text of an object is
            # the only one that starts with a brace
            start = named(DETAIL_ROLE)
            states[start] = {
                "Type": "Pass",
                "Parameters": {"text.$": "States.JsonToString($.input.detail)"},
                "ResultPath": DETAIL_TEXT.rsplit(".", 1)[0],
                "Next": named("object"),
            }
            states[named("object")] = {
                "Type": "Choice",
                "Choices": [
                    {"Variable": DETAIL_TEXT, "StringMatches": "{*", "Next": named(CALL_ROLE)}
                ],
                "Default": named(REFUSED_ROLE),
            }
            states[named(REFUSED_ROLE)] = {
                "Type": "Fail",
                "Error": ServiceError.INVALID_REQUEST,
                "Cause": "an event's detail is an object",
            }
        states[named(CALL_ROLE)] = call
        why_next = named("why") if by_cause else other
        if by_name:
            states[named("err")] = {"Type": "Choice", "Choices": by_name, "Default": why_next}
        else:
            states[named("err")] = {"Type": "Pass", "Next": why_next}
        if by_cause:
            # a cause that is not text cannot be matched: then it is nothing more specific
            states[named("why")] = {
                "Type": "Choice",
                "Choices": [
                    {"Variable": f"{_ERROR}.Cause", "IsString": True, "Next": named("why1")}
                ],
                "Default": named("bare"),
            }
            states[named("bare")] = {"Type": "Fail", "Error": ServiceError.FAILED}
            states[named("why1")] = {"Type": "Choice", "Choices": by_cause, "Default": other}
        states.update(failures)
        if state.result_selector is not None:
            states[named("select")] = {
                "Type": "Pass",
                "Parameters": dict(state.result_selector),
                "End": True,
            }
        for state_key in states:
            if state_key in self.used:
                raise CompileError(f"two compiled states are both named {state_key!r}")
        self.used.update(states)
        return {"StartAt": start, "States": states}
