"""The states that call nothing: pass, choice, wait, succeed and fail.

Each compiles to the ASL state of the same kind with its data-flow fields, plus small
Pass states where the copy keeps its data under ``$.d`` (a map iteration).
"""

from __future__ import annotations

from typing import Any

from rustyflower.adapters.aws.compiler.base import CompilerBase
from rustyflower.adapters.aws.compiler.layout import ENV_ROOT, Copy, StateItems
from rustyflower.adapters.aws.errors import CompileError
from rustyflower.adapters.aws.jsonpaths import compose, move_rule, reach, reach_path
from rustyflower.adapters.aws.names import helper_of, state_name
from rustyflower.core.contract import ReservedError, error_matches, is_reserved
from rustyflower.core.model import ChoiceState, FailState, PassState, SucceedState, WaitState
from rustyflower.core.timeutil import format_timestamp, parse_timestamp


class SimpleStates(CompilerBase):
    """Fresh pass, choice, wait, succeed and fail states."""

    def pass_state(self, copy: Copy, name: str, state: PassState) -> StateItems:
        base = state_name(copy.prefix, name)
        root = copy.root
        main: dict[str, Any] = {"Type": "Pass"}
        if state.comment:
            main["Comment"] = state.comment
        input_path = reach(root, state.input_path)
        if input_path != "$":
            main["InputPath"] = input_path
        if state.parameters is not None:
            main["Parameters"] = state.parameters
        if state.result is not None:
            main["Result"] = state.result
        if state.result_path is None:
            main["ResultPath"] = None
        elif compose(root, state.result_path) != "$":
            main["ResultPath"] = compose(root, state.result_path)
        exit_fields, after = self.exit(copy, base, root, state.output_path)
        target = after[-1][1] if after else main
        target.update(exit_fields)
        return self.assemble(
            copy, name, base, main, after=after, transition=self.follow(copy, state)
        )

    def choice(self, copy: Copy, name: str, state: ChoiceState) -> StateItems:
        base = state_name(copy.prefix, name)
        main: dict[str, Any] = {"Type": "Choice"}
        if state.comment:
            main["Comment"] = state.comment
        extra: StateItems = []
        if copy.mode == "plain":
            if state.input_path != "$":
                main["InputPath"] = state.input_path
            if state.output_path != "$":
                main["OutputPath"] = state.output_path
            main["Choices"] = [
                {**branch.when.to_asl(), "Next": self.entry(copy, branch.next)}
                for branch in state.choices
            ]
            if state.default is not None:
                main["Default"] = self.entry(copy, state.default)
            elif copy.top:
                handler = next(
                    (
                        h
                        for h in self.definition.on_error
                        if error_matches(h.errors, ReservedError.NO_CHOICE_MATCHED)
                    ),
                    None,
                )
                if handler is not None:
                    caught = helper_of(base, "nomatch")
                    pass_state: dict[str, Any] = {
                        "Type": "Pass",
                        "Result": {
                            "Error": ReservedError.NO_CHOICE_MATCHED,
                            "Cause": f"no rule of choice {name!r} matched",
                        },
                        "Next": self.entry(copy, handler.next),
                    }
                    if handler.result_path is None:
                        pass_state["ResultPath"] = None
                    elif handler.result_path != "$":
                        pass_state["ResultPath"] = handler.result_path
                    main["Default"] = caught
                    extra.append((caught, pass_state))
            return [(base, main), *extra]
        data = reach(ENV_ROOT, state.input_path)
        reshape = state.input_path != "$" or state.output_path != "$"
        targets: dict[str, str] = {}

        def target(user_state: str) -> str:
            goal = self.entry(copy, user_state)
            if not reshape:
                return goal
            if user_state not in targets:
                out_name = helper_of(base, f"to{len(targets)}")
                targets[user_state] = out_name
                extra.append(
                    (
                        out_name,
                        {
                            "Type": "Pass",
                            "InputPath": reach(data, state.output_path),
                            "ResultPath": ENV_ROOT,
                            "Next": goal,
                        },
                    )
                )
            return targets[user_state]

        main["Choices"] = [
            {**move_rule(branch.when.to_asl(), data), "Next": target(branch.next)}
            for branch in state.choices
        ]
        if state.default is not None:
            main["Default"] = target(state.default)
        return [(base, main), *extra]

    def wait(self, copy: Copy, name: str, state: WaitState) -> StateItems:
        base = state_name(copy.prefix, name)
        main: dict[str, Any] = {"Type": "Wait"}
        if state.comment:
            main["Comment"] = state.comment
        data: str | None = "$"
        if copy.mode == "plain":
            if state.input_path != "$":
                main["InputPath"] = state.input_path
            if state.output_path != "$":
                main["OutputPath"] = state.output_path
        else:
            data = reach(ENV_ROOT, state.input_path)
        if state.seconds is not None:
            main["Seconds"] = state.seconds
        elif state.timestamp is not None:
            moment = parse_timestamp(state.timestamp)
            assert moment is not None  # the model checked it
            main["Timestamp"] = format_timestamp(moment)
        elif state.seconds_path is not None:
            main["SecondsPath"] = reach_path(data, state.seconds_path)
        else:
            main["TimestampPath"] = reach_path(data, state.timestamp_path)
        after: StateItems = []
        if copy.mode == "env":
            exit_fields, after = self.exit(
                copy, base, ENV_ROOT, state.input_path, state.output_path
            )
            main.update(exit_fields)
        return self.assemble(
            copy, name, base, main, after=after, transition=self.follow(copy, state)
        )

    def succeed(self, copy: Copy, name: str, state: SucceedState) -> StateItems:
        base = state_name(copy.prefix, name)
        main: dict[str, Any] = {}
        input_path = reach(copy.root, state.input_path)
        if input_path != "$":
            main["InputPath"] = input_path
        if state.output_path != "$":
            main["OutputPath"] = state.output_path
        if copy.mode == "env" or copy.end is None:
            return [(base, {"Type": "Succeed", **main})]
        return [(base, {"Type": "Pass", **main, "Next": copy.end})]

    def fail(self, copy: Copy, name: str, state: FailState) -> StateItems:
        base = state_name(copy.prefix, name)
        main: dict[str, Any] = {"Type": "Fail"}
        if state.comment:
            main["Comment"] = state.comment
        if state.error is not None:
            if is_reserved(state.error):
                raise CompileError(
                    f"state {name!r}: a fail state cannot raise {state.error!r} in ASL "
                    "(names starting with 'States.' are reserved for Step Functions)"
                )
            main["Error"] = state.error
        if state.error_path is not None:
            main["ErrorPath"] = compose(copy.root, state.error_path)
        if state.cause is not None:
            main["Cause"] = state.cause
        if state.cause_path is not None:
            main["CausePath"] = compose(copy.root, state.cause_path)
        return [(base, main)]
