"""The states that join branches: parallel and map, fresh.

Their branches compile as copies of their own (``Fork[1]/...``, ``Items[*]/...``); a
branch whose states need their engine position at run time gets its scope with its data.
"""

from __future__ import annotations

from typing import Any

from rustyflower.adapters.aws.compiler.base import CompilerBase
from rustyflower.adapters.aws.compiler.layout import (
    ENV_ROOT,
    Copy,
    StateItems,
    child_scope,
    needs_scope,
)
from rustyflower.adapters.aws.compiler.policies import retry_document
from rustyflower.adapters.aws.jsonpaths import move_template, reach, reach_path
from rustyflower.adapters.aws.names import branch_copy, branch_helper, iterator_copy, state_name
from rustyflower.core.model import MapState, ParallelState


class JoinStates(CompilerBase):
    """Fresh parallel and map states."""

    def parallel(self, copy: Copy, name: str, state: ParallelState) -> StateItems:
        base = state_name(copy.prefix, name)
        root = copy.root
        main: dict[str, Any] = {"Type": "Parallel"}
        if state.comment:
            main["Comment"] = state.comment
        env_branches = copy.mode == "env" and any(needs_scope(b) for b in state.branches)
        if copy.mode == "plain":
            if state.input_path != "$":
                main["InputPath"] = state.input_path
            if state.parameters is not None:
                main["Parameters"] = state.parameters
        elif env_branches:
            parameters = {"rf": {"scope.$": "$.rf.scope"}}
            parameters.update(
                self.input_field("d", state.parameters, reach(ENV_ROOT, state.input_path))
            )
            main["Parameters"] = parameters
        else:
            main["InputPath"] = reach(ENV_ROOT, state.input_path)
            if state.parameters is not None:
                main["Parameters"] = state.parameters
        branches = []
        for index, branch in enumerate(state.branches):
            prefix = branch_copy(copy.prefix, name, index, resumed=False)
            child = Copy(
                prefix=prefix,
                branch=branch,
                mode="env" if env_branches else "plain",
                dynamic=copy.dynamic,
                scope=None if copy.dynamic else child_scope(copy, name, index, dynamic_index=False),
                top=False,
                resumable=False,
                end=None,
                repeats=self.reruns_branches(copy, name, state),
            )
            head = None
            if env_branches:
                enter = branch_helper(prefix, "enter")
                head = (
                    enter,
                    [
                        (
                            enter,
                            {
                                "Type": "Pass",
                                "Parameters": {
                                    "rf": {
                                        "scope": child_scope(copy, name, index, dynamic_index=False)
                                    },
                                    "d.$": ENV_ROOT,
                                },
                                "Next": self.entry(child, branch.start_at),
                            },
                        )
                    ],
                )
            branches.append(self.branch(child, head))
        main["Branches"] = branches
        fields, after = self.result_fields(copy, base, root, state, None)
        main.update(fields)
        if state.retry:
            main["Retry"] = retry_document(state.retry)
        catch, extra = self.catches(copy, base, root, self.handlers(copy, state))
        if catch:
            main["Catch"] = catch
        return self.assemble(
            copy, name, base, main, after=after, transition=self.follow(copy, state), extra=extra
        )

    def map_state(self, copy: Copy, name: str, state: MapState) -> StateItems:
        base = state_name(copy.prefix, name)
        root = copy.root
        main: dict[str, Any] = {"Type": "Map"}
        if state.comment:
            main["Comment"] = state.comment
        selector_base: str | None = "$"
        if copy.mode == "plain":
            if state.input_path != "$":
                main["InputPath"] = state.input_path
            if state.items_path != "$":
                main["ItemsPath"] = state.items_path
        else:
            main["ItemsPath"] = reach_path(ENV_ROOT, state.input_path, state.items_path)
            selector_base = reach(ENV_ROOT, state.input_path)
        scoped = needs_scope(state.iterator)
        if scoped:
            selector: dict[str, Any] = {
                "rf": {"scope": child_scope(copy, name, "$$.Map.Item.Index", dynamic_index=True)}
            }
            if state.item_selector is None:
                selector["d.$"] = "$$.Map.Item.Value"
            else:
                selector["d"] = move_template(state.item_selector, selector_base)
            main["ItemSelector"] = selector
        elif state.item_selector is not None:
            main["ItemSelector"] = move_template(state.item_selector, selector_base)
        if state.max_concurrency:
            main["MaxConcurrency"] = state.max_concurrency
        child = Copy(
            prefix=iterator_copy(copy.prefix, name, resumed=False),
            branch=state.iterator,
            mode="env" if scoped else "plain",
            dynamic=True,
            scope=None,
            top=False,
            resumable=False,
            end=None,
            repeats=self.reruns_branches(copy, name, state),
        )
        processor = self.branch(child)
        main["ItemProcessor"] = {"ProcessorConfig": {"Mode": "INLINE"}, **processor}
        fields, after = self.result_fields(copy, base, root, state, None)
        main.update(fields)
        if state.retry:
            main["Retry"] = retry_document(state.retry)
        catch, extra = self.catches(copy, base, root, self.handlers(copy, state))
        if catch:
            main["Catch"] = catch
        return self.assemble(
            copy, name, base, main, after=after, transition=self.follow(copy, state), extra=extra
        )
