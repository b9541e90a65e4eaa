"""Resume entries: where a continuation enters the machine.

Every state a snapshot's token can stand at gets an entry the router jumps to
(``X~resume``, and ``X~delay`` for a scheduled retry) that continues it from the resume
node: a wait with its absolute end, a call re-issued with its attempt and tag, a parallel
or map that skips the branches and items the snapshot finished.
"""

from __future__ import annotations

from typing import Any

from rustyflower.adapters.aws.compiler.call_states import CallStates
from rustyflower.adapters.aws.compiler.layout import (
    RESUME_REJECTED,
    RESUME_ROOT,
    Copy,
    StateItems,
    chain,
    child_scope,
    resume_roles,
)
from rustyflower.adapters.aws.jsonpaths import move_template, reach
from rustyflower.adapters.aws.names import (
    ROUTE_DONE,
    ROUTE_START,
    branch_copy,
    branch_helper,
    delay_route,
    helper_of,
    iterator_copy,
    resume_route,
    state_name,
)
from rustyflower.core.model import (
    MapState,
    ParallelState,
    SubFlowState,
    TaskState,
    WaitForEventState,
    WaitState,
)


class ResumeEntries(CallStates):
    """Routing to, and compiling, the resume entries of a resumable copy."""

    @staticmethod
    def unroutable() -> dict[str, Any]:
        return {
            "Type": "Fail",
            "Error": RESUME_REJECTED,
            "Cause": "the resume document names a position this machine does not have",
        }

    def route_rules(self, copy: Copy) -> list[dict[str, Any]]:
        rules = []
        for name, state in copy.branch.states.items():
            for role in resume_roles(state):
                target = state_name(copy.prefix, name, role)
                rules.append(
                    {"Variable": "$.rf.node.route", "StringEquals": target, "Next": target}
                )
        return rules

    # --- resume entries -------------------------------------------------------------------

    def resume_entry(self, copy: Copy, name: str, state: Any, role: str) -> StateItems:
        if role == "delay":
            return self.delay_entry(copy, name, state)
        if isinstance(state, TaskState):
            return self.task(copy, name, state, resumed=True)
        if isinstance(state, WaitState):
            return self.wait_entry(copy, name, state)
        if isinstance(state, WaitForEventState):
            return self.event_wait(copy, name, state, resumed=True)
        if isinstance(state, SubFlowState):
            return self.sub_flow(copy, name, state, resumed=True)
        if isinstance(state, ParallelState):
            return self.parallel_entry(copy, name, state)
        if isinstance(state, MapState):
            return self.map_entry(copy, name, state)
        raise AssertionError(role)  # pragma: no cover

    def delay_entry(self, copy: Copy, name: str, state: Any) -> StateItems:
        """Wait for a retry the snapshot had scheduled, then run the state again."""
        base = delay_route(copy.prefix, name)
        main: dict[str, Any] = {"Type": "Wait", "TimestampPath": "$.rf.node.until"}
        if isinstance(state, TaskState):
            main["Next"] = resume_route(copy.prefix, name)
            return [(base, main)]
        if isinstance(state, SubFlowState) and not self.reentered(copy, name):
            # the next attempt's child under the engine's id (the fresh state would count
            # its attempts from 1 again), started by the resume entry, which goes on with
            # the snapshot's retry counters
            child = helper_of(base, "child")
            main["Next"] = child
            return [(base, main), (child, self.next_child(state, resume_route(copy.prefix, name)))]
        fields, extra = self.back_to(copy, base, self.entry(copy, name))
        main.update(fields)
        return [(base, main), *extra]

    def wait_entry(self, copy: Copy, name: str, state: WaitState) -> StateItems:
        base = resume_route(copy.prefix, name)
        main: dict[str, Any] = {"Type": "Wait", "TimestampPath": "$.rf.node.until"}
        exit_fields, after = self.exit(copy, base, RESUME_ROOT, state.input_path, state.output_path)
        main.update(exit_fields)
        return chain([(base, main), *after], self.follow(copy, state))

    def parallel_entry(self, copy: Copy, name: str, state: ParallelState) -> StateItems:
        base = resume_route(copy.prefix, name)
        main: dict[str, Any] = {"Type": "Parallel", "Parameters": {"rf.$": "$.rf"}}
        branches = []
        for index, branch in enumerate(state.branches):
            prefix = branch_copy(copy.prefix, name, index, resumed=True)
            child = Copy(
                prefix=prefix,
                branch=branch,
                mode=copy.mode,
                dynamic=copy.dynamic,
                scope=None if copy.dynamic else child_scope(copy, name, index, dynamic_index=False),
                top=False,
                resumable=True,
                end=None,
                repeats=self.reruns_branches(copy, name, state),
            )
            enter = branch_helper(prefix, "enter")
            route = branch_helper(prefix, "route")
            done = branch_helper(prefix, "done")
            scope = child_scope(copy, name, index, dynamic_index=False)
            head_items: StateItems = [
                (
                    enter,
                    {
                        "Type": "Pass",
                        "Parameters": {
                            "rf": {"scope": scope, "node.$": f"$.rf.node.branches[{index}]"}
                        },
                        "Next": route,
                    },
                ),
                (
                    route,
                    {
                        "Type": "Choice",
                        "Choices": [
                            {
                                "Variable": "$.rf.node.route",
                                "StringEquals": ROUTE_DONE,
                                "Next": done,
                            },
                            *self.route_rules(child),
                        ],
                        "Default": branch_helper(prefix, "unroutable"),
                    },
                ),
                (done, {"Type": "Pass", "OutputPath": RESUME_ROOT, "End": True}),
                (branch_helper(prefix, "unroutable"), self.unroutable()),
            ]
            branches.append(self.branch(child, (enter, head_items)))
        main["Branches"] = branches
        fields, after = self.result_fields(copy, base, RESUME_ROOT, state, None)
        main.update(fields)
        catch, extra = self.error_router(copy, name, base, state)
        if catch:
            main["Catch"] = catch
        return self.assemble(
            copy, name, base, main, after=after, transition=self.follow(copy, state), extra=extra
        )

    def map_entry(self, copy: Copy, name: str, state: MapState) -> StateItems:
        base = resume_route(copy.prefix, name)
        main: dict[str, Any] = {"Type": "Map", "ItemsPath": "$.rf.node.items"}
        selector: dict[str, Any] = {
            "rf": {
                "scope": child_scope(copy, name, "$$.Map.Item.Index", dynamic_index=True),
                "node.$": "$$.Map.Item.Value",
            }
        }
        if state.item_selector is None:
            selector["d.$"] = "$$.Map.Item.Value.item"
        else:
            selector["d"] = move_template(
                state.item_selector,
                reach(RESUME_ROOT, state.input_path),
                item_value="$$.Map.Item.Value.item",
            )
        main["ItemSelector"] = selector
        if state.max_concurrency:
            main["MaxConcurrency"] = state.max_concurrency
        prefix = iterator_copy(copy.prefix, name, resumed=True)
        child = Copy(
            prefix=prefix,
            branch=state.iterator,
            mode="env",
            dynamic=True,
            scope=None,
            top=False,
            resumable=True,
            end=None,
            repeats=self.reruns_branches(copy, name, state),
        )
        route = branch_helper(prefix, "route")
        done = branch_helper(prefix, "done")
        head_items: StateItems = [
            (
                route,
                {
                    "Type": "Choice",
                    "Choices": [
                        {"Variable": "$.rf.node.route", "StringEquals": ROUTE_DONE, "Next": done},
                        {
                            "Variable": "$.rf.node.route",
                            "StringEquals": ROUTE_START,
                            "Next": self.entry(child, state.iterator.start_at),
                        },
                        *self.route_rules(child),
                    ],
                    "Default": branch_helper(prefix, "unroutable"),
                },
            ),
            (done, {"Type": "Pass", "OutputPath": RESUME_ROOT, "End": True}),
            (branch_helper(prefix, "unroutable"), self.unroutable()),
        ]
        processor = self.branch(child, (route, head_items))
        main["ItemProcessor"] = {"ProcessorConfig": {"Mode": "INLINE"}, **processor}
        fields, after = self.result_fields(copy, base, RESUME_ROOT, state, None)
        main.update(fields)
        catch, extra = self.error_router(copy, name, base, state)
        if catch:
            main["Catch"] = catch
        return self.assemble(
            copy, name, base, main, after=after, transition=self.follow(copy, state), extra=extra
        )
