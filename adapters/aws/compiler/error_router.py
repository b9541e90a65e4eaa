"""The retry/error router of resume entries, and raising an error again by its name.

A resume entry continues a state from a snapshot, whose retry counters may be partly used
up; ASL's own ``Retry`` would start them again at zero, so a resume entry catches every
error and routes it through the snapshot's retry plan by hand (:meth:`error_router`).
Errors that leave a resume entry or a child flow are raised again under their own name
(:meth:`reraise`), ``States.*`` ones the way Step Functions raises them.
"""

from __future__ import annotations

from typing import Any

from rustyflower.adapters.aws.compiler.base import CompilerBase
from rustyflower.adapters.aws.compiler.layout import (
    ENV_ROOT,
    ERROR_AT,
    INSTANCE_ID,
    LAMBDA_WAIT_FOR_TOKEN,
    RESERVED_WILDCARD,
    RESUME_ROOT,
    UNRAISABLE,
    Copy,
    StateItems,
    retriers_of,
)
from rustyflower.adapters.aws.compiler.policies import error_rule, order_policies
from rustyflower.adapters.aws.jsonpaths import compose
from rustyflower.adapters.aws.names import helper_of
from rustyflower.core.contract import ReservedError


class ErrorRouter(CompilerBase):
    """Catch-and-route states for resume entries; re-raising errors by name."""

    def error_router(
        self,
        copy: Copy,
        name: str,
        base: str,
        state: Any,
        again: tuple[dict[str, Any], StateItems] | None = None,
    ) -> tuple[list[dict[str, Any]], StateItems]:
        """Catch entries of a resume entry that apply the retry policies by hand.

        A resume entry must not be retried by ASL: its counters would start again at zero
        (the snapshot may have used some retries up) and a join would continue the
        snapshot's branches again. Its policies run as a loop over the node instead:
        ``used[i]`` counts the retries of policy ``i``, ``delays[i][n]`` is the engine's
        delay before retry ``n``. ``again`` is the state (and its helpers) that makes the
        next attempt; by default the fresh state, whose own ASL Retry then takes over.
        """
        policies = retriers_of(self.definition, state)
        handlers = self.handlers(copy, state)
        first = [
            {
                "ErrorEquals": list(policy.errors),
                "Next": helper_of(base, f"retry{index}"),
                "ResultPath": ERROR_AT,
            }
            for index, policy in enumerate(policies)
        ]
        native, extra = self.catches(copy, base, RESUME_ROOT, handlers)
        entries = order_policies(first + native)
        if not policies:
            return entries, extra
        fresh_name = helper_of(base, "fresh")
        fresh_fields, fresh_extra = self.back_to(copy, fresh_name, self.entry(copy, name))
        extra.append((fresh_name, {"Type": "Pass", **fresh_fields}))
        extra.extend(fresh_extra)
        if again is None:
            again_name = fresh_name
        else:
            again_name = helper_of(base, "again")
            again_state, again_extra = again
            extra.append((again_name, again_state))
            extra.extend(again_extra)
        raise_name, raise_items = self.reraise(base)
        extra.extend(raise_items)
        placed: list[str] = []
        for index, handler in enumerate(handlers):
            place_name = helper_of(base, f"h{index}")
            placed.append(place_name)
            goal = self.entry(copy, handler.next)
            place: dict[str, Any] = {"Type": "Pass", "InputPath": ERROR_AT}
            if handler.result_path is None:
                place["ResultPath"] = None
            else:
                place["ResultPath"] = compose(RESUME_ROOT, handler.result_path)
            if copy.mode == "plain":
                place["OutputPath"] = RESUME_ROOT
                place["Next"] = goal
                extra.append((place_name, place))
            else:
                moved = helper_of(base, f"h{index}b")
                place["Next"] = moved
                extra.append((place_name, place))
                extra.append(
                    (
                        moved,
                        {
                            "Type": "Pass",
                            "InputPath": RESUME_ROOT,
                            "ResultPath": ENV_ROOT,
                            "Next": goal,
                        },
                    )
                )
        pause = helper_of(base, "pause")
        extra.append((pause, {"Type": "Wait", "SecondsPath": "$.rf.step.wait", "Next": again_name}))
        for index, policy in enumerate(policies):
            used = f"$.rf.node.used[{index}]"
            decide = helper_of(base, f"retry{index}")
            count = helper_of(base, f"count{index}")
            bump = helper_of(base, f"bump{index}")
            used_up = helper_of(base, f"usedup{index}")
            extra.append(
                (
                    decide,
                    {
                        "Type": "Choice",
                        "Choices": [
                            {
                                "Variable": used,
                                "NumericLessThanPath": f"$.rf.node.limit[{index}]",
                                "Next": count,
                            },
                            {
                                "Variable": used,
                                "NumericLessThan": policy.max_attempts,
                                "Next": fresh_name,
                            },
                        ],
                        "Default": used_up,
                    },
                )
            )
            extra.append(
                (
                    count,
                    {
                        "Type": "Pass",
                        "Parameters": {
                            "used.$": f"States.MathAdd({used}, 1)",
                            "wait.$": f"States.ArrayGetItem($.rf.node.delays[{index}], {used})",
                        },
                        "ResultPath": "$.rf.step",
                        "Next": bump,
                    },
                )
            )
            extra.append(
                (
                    bump,
                    {
                        "Type": "Pass",
                        "InputPath": "$.rf.step.used",
                        "ResultPath": used,
                        "Next": pause,
                    },
                )
            )
            rules = [
                {**error_rule(handler.errors, f"{ERROR_AT}.Error"), "Next": placed[h_index]}
                for h_index, handler in enumerate(handlers)
            ]
            if rules:
                extra.append((used_up, {"Type": "Choice", "Choices": rules, "Default": raise_name}))
            else:
                extra.append((used_up, {"Type": "Pass", "Next": raise_name}))
        return entries, extra

    def reraise(self, base: str, error_at: str = ERROR_AT) -> tuple[str, StateItems]:
        """States that raise the error at ``error_at`` (``{Error, Cause}``) again, by name.

        A Fail state cannot raise a ``States.*`` name, so those are raised the way Step
        Functions raises them: a path that selects nothing, a timeout.
        """

        def named(role: str) -> str:
            return helper_of(base, role)

        error = f"{error_at}.Error"
        ways: list[tuple[str, str, dict[str, Any]]] = [
            (
                ReservedError.RUNTIME,
                "runtime",
                {"Type": "Pass", "InputPath": f"{error_at}.rf_absent", "End": True},
            ),
            (
                ReservedError.PARAMETER_PATH_FAILURE,
                "parameters",
                {
                    "Type": "Pass",
                    "Parameters": {"rf_absent.$": f"{error_at}.rf_absent"},
                    "End": True,
                },
            ),
            (
                ReservedError.RESULT_PATH_MATCH_FAILURE,
                "resultpath",
                {"Type": "Pass", "ResultPath": f"{error}.rf_absent", "End": True},
            ),
            (
                ReservedError.NO_CHOICE_MATCHED,
                "nochoice",
                {
                    "Type": "Choice",
                    "Choices": [
                        {"Variable": error, "StringEquals": "rf:never", "Next": named("raise")}
                    ],
                },
            ),
        ]
        if self.token_arn is not None:
            ways.append(
                (
                    ReservedError.TIMEOUT,
                    "timeout",
                    {
                        "Type": "Task",
                        "Resource": LAMBDA_WAIT_FOR_TOKEN,
                        "Parameters": {
                            "FunctionName": self.token_arn,
                            "Payload": {
                                "kind": "deadline",
                                "instance_id.$": INSTANCE_ID,
                                "task_token.$": "$$.Task.Token",
                            },
                        },
                        "TimeoutSeconds": 1,
                        "End": True,
                    },
                )
            )
        rules = [
            {"Variable": error, "StringEquals": error_name, "Next": named(role)}
            for error_name, role, _ in ways
        ]
        rules.append(
            {"Variable": error, "StringMatches": RESERVED_WILDCARD, "Next": named("unraisable")}
        )
        items: StateItems = [
            (named("raise"), {"Type": "Choice", "Choices": rules, "Default": named("rethrow")}),
            (
                named("rethrow"),
                {"Type": "Fail", "ErrorPath": error, "CausePath": f"{error_at}.Cause"},
            ),
            (named("unraisable"), {"Type": "Fail", "Error": UNRAISABLE, "CausePath": error}),
        ]
        items += [(named(role), state) for _, role, state in ways]
        return named("raise"), items
