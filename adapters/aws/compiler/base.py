"""The compiler's common ground: branches, transitions and the data-flow fields.

:class:`CompilerBase` compiles one copy of a branch (:meth:`~CompilerBase.branch`) by
asking each state for its compiled states (:meth:`~CompilerBase.state`, and
:meth:`~CompilerBase.resume_entry` in a resumable copy); the concerns that answer live
in their own modules (adapters/aws/compiler/__init__.py lists them). The data-flow
helpers here turn a state's ``input_path``/``parameters``/``result_selector``/
``result_path``/``output_path`` into ASL fields, wherever the copy keeps its data.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from rustyflower.adapters.aws.compiler.layout import (
    ENV_ROOT,
    RESUME_ROOT,
    Copy,
    StateItems,
    chain,
    needs_scope,
    reachable,
    resume_roles,
)
from rustyflower.adapters.aws.compiler.policies import order_policies
from rustyflower.adapters.aws.contract import render_scope
from rustyflower.adapters.aws.errors import CompileError
from rustyflower.adapters.aws.jsonpaths import NotComposable, compose, move_template, reach
from rustyflower.adapters.aws.names import branch_helper, helper_of, state_name
from rustyflower.adapters.aws.services import AwsServiceBindings
from rustyflower.core.errors import ExpressionError
from rustyflower.core.model import (
    Catch,
    FlowDefinition,
    MapState,
    ParallelState,
    SubFlowState,
    TaskState,
    WaitForEventState,
)
from rustyflower.core.model.reentry import reentered_states, reruns_its_branches
from rustyflower.core.snapshot.canonical import definition_digest


class CompilerBase(ABC):
    """One compilation of one flow: its definition, its ARNs, the ASL names used so far."""

    def __init__(
        self,
        definition: FlowDefinition,
        activity_arn: str,
        flow_arns: Mapping[str, str],
        token_arn: str | None,
        services: AwsServiceBindings | None = None,
    ) -> None:
        if not activity_arn:
            raise CompileError(f"flow {definition.name!r}: activity_function_arn is required")
        self.definition = definition
        self.activity_arn = activity_arn
        self.flow_arns = flow_arns
        self.token_arn = token_arn
        self.services = services
        self.used: set[str] = set()
        self.digest = definition_digest(definition.document())
        self._reentered: dict[int, frozenset[str]] = {}

    # --- the hooks of the concerns --------------------------------------------------------

    @abstractmethod
    def state(self, copy: Copy, name: str, state: Any) -> StateItems:
        """The compiled states of user state ``name`` (fresh)."""

    @abstractmethod
    def resume_entry(self, copy: Copy, name: str, state: Any, role: str) -> StateItems:
        """The compiled states of the resume entry ``role`` of user state ``name``."""

    # --- branches ---------------------------------------------------------------------------

    def branch(self, copy: Copy, head: tuple[str, StateItems] | None = None) -> dict[str, Any]:
        """Compile one copy of a branch: ``head`` is its entry (router) and its states."""
        states: dict[str, dict[str, Any]] = {}

        def add(items: StateItems) -> None:
            for name, state in items:
                if name in self.used or name in states:
                    raise CompileError(
                        f"flow {self.definition.name!r}: two compiled states are both named "
                        f"{name!r}; rename a state"
                    )
                states[name] = state

        start = self.entry(copy, copy.branch.start_at)
        if head is not None:
            start, head_items = head
            add(head_items)
        for name, state in copy.branch.states.items():
            try:
                add(self.state(copy, name, state))
                if copy.resumable:
                    for role in resume_roles(state):
                        add(self.resume_entry(copy, name, state, role))
            except (NotComposable, ExpressionError) as problem:
                raise CompileError(f"state {name!r}: {problem}") from None
        if copy.uses_end[0]:
            add([(branch_helper(copy.prefix, "end"), {"Type": "Succeed", "OutputPath": ENV_ROOT})])
        keep = reachable(start, states)
        kept = {name: state for name, state in states.items() if name in keep}
        self.used.update(kept)
        return {"StartAt": start, "States": kept}

    def entry(self, copy: Copy, name: str) -> str:
        """The first compiled state of user state ``name`` (what transitions go to)."""
        state = copy.branch.states[name]
        if self.prechecks(copy, state):
            return state_name(copy.prefix, name, "in")
        return state_name(copy.prefix, name)

    @staticmethod
    def prechecks(copy: Copy, state: Any) -> bool:
        """In ``env`` mode the input_path of these states is checked by a Pass first (a
        null one, or ``$``, cannot fail)."""
        if copy.mode != "env" or getattr(state, "input_path", "$") in (None, "$"):
            return False
        if isinstance(state, ParallelState):
            return any(needs_scope(branch) for branch in state.branches)
        return isinstance(state, TaskState | WaitForEventState | SubFlowState)

    def goto(self, copy: Copy, target: str | None) -> dict[str, Any]:
        """The transition to user state ``target``, or the end of the branch."""
        if target is not None:
            return {"Next": self.entry(copy, target)}
        if copy.mode == "env":
            copy.uses_end[0] = True
            return {"Next": branch_helper(copy.prefix, "end")}
        if copy.end is not None:
            return {"Next": copy.end}
        return {"End": True}

    def follow(self, copy: Copy, state: Any) -> dict[str, Any]:
        return self.goto(copy, None if state.end else state.next)

    def reentered(self, copy: Copy, name: str) -> bool:
        """Whether state ``name`` of the copy can be entered again in the same scope (it or
        an enclosing state lies on a loop): the engine then keys its calls by call number."""
        if copy.repeats:
            return True
        found = self._reentered.get(id(copy.branch))
        if found is None:
            found = self._reentered[id(copy.branch)] = reentered_states(copy.branch)
        return name in found

    def reruns_branches(self, copy: Copy, name: str, state: ParallelState | MapState) -> bool:
        """Whether the branches of Parallel or Map ``name`` can run again in the same scopes:
        it can be entered again, or it is retried."""
        return self.reentered(copy, name) or reruns_its_branches(state)

    def scope_field(self, copy: Copy) -> dict[str, Any]:
        return {"scope.$": "$.rf.scope"} if copy.mode == "env" else {"scope": copy.scope}

    @staticmethod
    def scope_text_field(copy: Copy) -> dict[str, Any]:
        """``path``: the engine's scope text of the copy (``"Fork[0]/Items[3]/"``).

        Known when compiling outside map iterations. Inside one it is built from the scope
        value the data carries (``$.rf.scope``, one level per ``/`` of the copy's prefix),
        with its owner names passed as arguments: a state name may hold ``'``, ``{`` or
        ``}``, which a string literal of an intrinsic function would have to escape.
        """
        if not copy.dynamic:
            return {"path": render_scope(copy.scope)}
        if copy.mode != "env":  # pragma: no cover - a scoped iterator is compiled in env mode
            raise CompileError(f"branch {copy.prefix!r}: its scope is not in its data")
        depth = copy.prefix.count("/")
        levels = ["$.rf.scope" + ".up" * (depth - 1 - level) for level in range(depth)]
        arguments = ", ".join(f"{level}.owner, {level}.index" for level in levels)
        return {"path.$": f"States.Format('{'{}[{}]/' * depth}', {arguments})"}

    # --- data flow helpers --------------------------------------------------------------------

    @staticmethod
    def input_field(
        key: str, template: Mapping[str, Any] | None, base: str | None
    ) -> dict[str, Any]:
        """``key`` holding the effective input: the user's Parameters read under ``base``
        (None: the empty object a null input_path makes)."""
        if template is None:
            return {key: {}} if base is None else {f"{key}.$": base}
        return {key: move_template(template, base)}

    def exit(
        self, copy: Copy, base: str, root: str, *paths: str | None
    ) -> tuple[dict[str, Any], StateItems]:
        """Leave a state whose data sits at ``root``: apply ``paths`` (its output_path, or
        input_path then output_path) and put the result in the copy's layout.

        Returns fields for the state itself (an OutputPath) and the states to add after it.
        A null path makes the data the empty object: ASL's own null OutputPath/InputPath.
        """
        selected = reach(root, *paths)
        if copy.mode == "plain":
            return ({"OutputPath": selected} if selected != "$" else {}), []
        if selected == ENV_ROOT:
            return {}, []
        out = {"Type": "Pass", "InputPath": selected, "ResultPath": ENV_ROOT}
        return {}, [(helper_of(base, "out"), out)]

    def result_fields(
        self,
        copy: Copy,
        base: str,
        root: str,
        state: Any,
        key: str | None,
        *,
        select: bool = True,
    ) -> tuple[dict[str, Any], StateItems]:
        """ResultSelector/ResultPath/OutputPath of a state whose useful result sits at ``key``.

        ``key`` is where the engine's result is inside ASL's (``$.Payload`` of a Lambda
        invocation, ``$[0]`` of a one-branch Parallel), or ``None`` when it is the result.
        ``select=False``: the user's result_selector was applied already.
        """
        selector = state.result_selector if select else None
        result_path = state.result_path
        output_path = state.output_path
        fields: dict[str, Any] = {}
        if selector is not None:
            fields["ResultSelector"] = move_template(selector, key) if key else selector
        if result_path is None:
            fields["ResultPath"] = None
            exit_fields, after = self.exit(copy, base, root, output_path)
            return fields | exit_fields, after
        target = compose(root, result_path)
        if selector is not None or key is None:
            if target != "$":
                fields["ResultPath"] = target
            exit_fields, after = self.exit(copy, base, root, output_path)
            return fields | exit_fields, after
        # ResultSelector cannot yield a bare value: keep {"value": result}, then unwrap it
        fields["ResultSelector"] = {"value.$": key}
        if target != "$":
            fields["ResultPath"] = target
        if result_path == "$":
            exit_fields, after = self.exit(copy, base, root, "$.value", output_path)
            return fields | exit_fields, after
        unwrap: dict[str, Any] = {
            "Type": "Pass",
            "InputPath": compose(target, "$.value"),
            "ResultPath": target,
        }
        exit_fields, after = self.exit(copy, base, root, output_path)
        unwrap.update(exit_fields)
        return fields, [(helper_of(base, "unwrap"), unwrap), *after]

    def catches(
        self,
        copy: Copy,
        base: str,
        root: str,
        handlers: Sequence[Catch],
        first: Sequence[tuple[list[str], str | None, str]] = (),
    ) -> tuple[list[dict[str, Any]], StateItems]:
        """Catch entries (and the Pass states that put a resumed state's data back in place).

        ``first`` are extra entries before the handlers: (errors, result_path, target).
        """
        specs = [(errors, rp, target) for errors, rp, target in first]
        specs += [(list(h.errors), h.result_path, h.next) for h in handlers]
        entries: list[dict[str, Any]] = []
        extra: StateItems = []
        for index, (errors, result_path, target) in enumerate(specs):
            goal = self.entry(copy, target)
            if root == RESUME_ROOT:
                fix_name = helper_of(base, f"c{index}")
                fix: dict[str, Any] = {"Type": "Pass"}
                if copy.mode == "plain":
                    fix["OutputPath"] = RESUME_ROOT
                else:
                    fix["InputPath"] = RESUME_ROOT
                    fix["ResultPath"] = ENV_ROOT
                fix["Next"] = goal
                extra.append((fix_name, fix))
                goal = fix_name
            entry: dict[str, Any] = {"ErrorEquals": errors, "Next": goal}
            if result_path is None:
                entry["ResultPath"] = None
            elif compose(root, result_path) != "$":
                entry["ResultPath"] = compose(root, result_path)
            entries.append(entry)
        return order_policies(entries), extra

    def handlers(self, copy: Copy, state: Any) -> list[Catch]:
        found: list[Catch] = list(getattr(state, "catch", []))
        if copy.top:
            found += self.definition.on_error
        return found

    def assemble(
        self,
        copy: Copy,
        name: str,
        base: str,
        main: dict[str, Any],
        *,
        after: StateItems,
        transition: dict[str, Any],
        extra: StateItems | None = None,
    ) -> StateItems:
        """The main state, the states after it in order, and side states (catch fixes)."""
        items: StateItems = []
        state: Any = copy.branch.states[name]
        if self.prechecks(copy, state) and base == state_name(copy.prefix, name):
            items.append(
                (
                    state_name(copy.prefix, name, "in"),
                    {
                        "Type": "Pass",
                        "InputPath": reach(ENV_ROOT, state.input_path),
                        "ResultPath": None,
                    },
                )
            )
        items.append((base, main))
        items.extend(after)
        return [*chain(items, transition), *(extra or [])]

    def back_to(self, copy: Copy, base: str, goal: str) -> tuple[dict[str, Any], StateItems]:
        """Leave a resume entry with the node's data unchanged, towards ``goal``."""
        if copy.mode == "plain":
            return {"OutputPath": RESUME_ROOT, "Next": goal}, []
        again = {"Type": "Pass", "InputPath": RESUME_ROOT, "ResultPath": ENV_ROOT, "Next": goal}
        name = helper_of(base, "back")
        return {"Next": name}, [(name, again)]
