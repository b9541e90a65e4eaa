"""Compile a :class:`FlowDefinition` to Amazon States Language (JSONPath mode).

One state machine serves fresh starts and continuations. Its execution input is
``{"rf": {...}, "input": <flow input>}`` (see :mod:`adapters.aws.resume`): ``rf.resume``
is ``null`` for a fresh start, or the *resume node* of a snapshot, and the machine starts
with a router that either enters the flow's start state with ``input`` or jumps to the
snapshot's positions. docs/aws.md describes the layout and every difference from the
engine; the short version:

* each user state compiles to a state of the same kind with its data-flow fields as they
  are (``InputPath``, ``Parameters``, ``ResultSelector``, ``ResultPath``, ``OutputPath``),
  plus small Pass states where ASL needs help (unwrapping a Lambda ``Payload``);
* inside a map iteration the engine's position holds the item's index, which ASL only
  knows in ``ItemSelector``: there the user's data travels as ``{"rf": {"scope": ...},
  "d": <data>}`` and the user's paths are moved under ``$.d``;
* every state that a snapshot can stand at (a task, a wait, an event wait, a sub-flow, a
  parallel or map join) also gets a *resume entry* (``X~resume``, ``X~delay``) that
  continues it from the snapshot's resume node (``$.rf.node``);
* a parallel or map state gets a *resume copy* of its branches, whose router skips the
  branches and items the snapshot finished and continues the others where they stood.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rustyflower.adapters.aws.errors import CompileError
from rustyflower.adapters.aws.jsonpaths import NotComposable, compose, move_rule, move_template
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
from rustyflower.core.contract import (
    RESERVED_PREFIX,
    ReservedError,
    RunnerError,
    error_matches,
    is_reserved,
)
from rustyflower.core.errors import ExpressionError
from rustyflower.core.model import (
    Branch,
    Catch,
    ChoiceState,
    FailState,
    FlowDefinition,
    MapState,
    ParallelState,
    PassState,
    Retry,
    SubFlowState,
    SucceedState,
    TaskState,
    WaitForEventState,
    WaitState,
)
from rustyflower.core.snapshot.canonical import definition_digest
from rustyflower.core.timeutil import format_timestamp, parse_timestamp

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
LAMBDA_WAIT_FOR_TOKEN = "arn:aws:states:::lambda:invoke.waitForTaskToken"
START_EXECUTION_SYNC = "arn:aws:states:::states:startExecution.sync:2"

RESUME_FORMAT = 1
"""Version of the execution input layout (``rf.format``) and of the resume nodes."""

SUB_FLOW_FAILED = "RF.SubFlowFailed"
"""A child failed with an error ASL cannot raise again (a ``States.*`` name, or none)."""
FINISHED = "RF.Finished"
"""Raised by the flow's branch of the deadline race to end it with the flow's output."""
RESUME_REJECTED = "RF.ResumeRejected"
UNRAISABLE = "RF.Unraisable"
"""A resumed state's error that ASL has no way to raise again under its own name."""
DIGEST_MISMATCH = "RF.DigestMismatch"
RESERVED_WILDCARD = RESERVED_PREFIX + "*"
"""A ``StringMatches`` pattern that holds for every reserved (``States.*``) error name."""

INSTANCE_ID = "$$.Execution.Input.rf.instance_id"
EPOCH = "$$.Execution.Input.rf.epoch"
NATIVE_TAG = "States.Format('{}@{}', $$.Execution.Name, $$.State.EnteredTime)"
ENV_ROOT = "$.d"
RESUME_ROOT = "$.rf.node.data"
NODE = "$.rf.node"
ERROR_AT = "$.rf.error"

_CHILD_ID = (
    "States.Format('{}/{}', $$.Execution.Input.rf.instance_id, States.Hash(States.Format("
    "'{}|{}|{}', States.JsonToString($.call), $$.Execution.Name, $$.State.EnteredTime), "
    "'SHA-256'))"
)
_CHILD_NAME = (
    f"States.Format('rf-{{}}', States.Hash(States.Format('{{}}|{{}}', {_CHILD_ID}, {EPOCH}), "
    "'SHA-256'))"
)

Mode = Literal["plain", "env"]
StateItems = list[tuple[str, dict[str, Any]]]


def compile_flow(
    definition: FlowDefinition,
    *,
    activity_function_arn: str,
    flow_arns: Mapping[str, str] | None = None,
    token_function_arn: str | None = None,
) -> dict[str, Any]:
    """The ASL document (a dict) of ``definition``.

    ``flow_arns`` maps the flows that ``sub_flow`` states call to their state machines:
    key ``"name@version"`` for a state that names a version, ``"name"`` for one that does
    not (the latest). ``token_function_arn`` is the Lambda that stores task tokens; flows
    with ``wait_for_event`` states or a ``timeout_seconds`` need it.
    """
    return _Compiler(definition, activity_function_arn, flow_arns or {}, token_function_arn).run()


def compile_to_json(
    definition: FlowDefinition,
    *,
    activity_function_arn: str,
    flow_arns: Mapping[str, str] | None = None,
    token_function_arn: str | None = None,
    indent: int | None = 2,
) -> str:
    """:func:`compile_flow` as JSON text (the ``definition`` of ``CreateStateMachine``)."""
    document = compile_flow(
        definition,
        activity_function_arn=activity_function_arn,
        flow_arns=flow_arns,
        token_function_arn=token_function_arn,
    )
    return json.dumps(document, indent=indent, ensure_ascii=False)


def machine_comment(definition: FlowDefinition) -> str:
    """The ``Comment`` of the compiled machine: it carries the definition's digest."""
    digest = definition_digest(definition.document())
    return f"RustyFlower flow {definition.name} version {definition.version} digest={digest}"


# --- structure ------------------------------------------------------------------------------


def needs_scope(branch: Branch) -> bool:
    """Whether a state of the branch (or below) needs its engine position at run time."""
    for state in branch.states.values():
        if isinstance(state, TaskState | SubFlowState | WaitForEventState):
            return True
        if isinstance(state, ParallelState) and any(needs_scope(b) for b in state.branches):
            return True
        if isinstance(state, MapState) and needs_scope(state.iterator):
            return True
    return False


def resume_roles(state: Any) -> tuple[str, ...]:
    """The resume entries a state gets: where a snapshot's token can stand at it."""
    if isinstance(state, TaskState | SubFlowState | ParallelState | MapState):
        return ("resume", "delay")
    if isinstance(state, WaitState | WaitForEventState):
        return ("resume",)
    return ()


def retriers_of(definition: FlowDefinition, state: Any) -> list[Retry]:
    """The retry policies that apply to ``state``: its own, else the flow's default_retry."""
    own: list[Retry] = list(getattr(state, "retry", []))
    if not own and isinstance(state, TaskState | SubFlowState):
        return list(definition.default_retry)
    return own


@dataclass
class _Copy:
    """One compiled copy of a branch: the flow itself, a branch, an iterator, a resume copy."""

    prefix: str
    branch: Branch
    mode: Mode
    dynamic: bool
    """Inside a map iteration: the scope is known at run time only (``$.rf.scope``)."""
    scope: Any
    """The scope value (for the payloads) when not ``dynamic``."""
    top: bool
    resumable: bool
    end: str | None
    """Where ``end: true`` goes: ``None`` for ASL's End, else a state name."""
    uses_end: list[bool] = field(default_factory=lambda: [False])

    @property
    def root(self) -> str:
        return "$" if self.mode == "plain" else ENV_ROOT


def _child_scope(copy: _Copy, owner: str, index: Any, *, dynamic_index: bool) -> dict[str, Any]:
    """The scope value of a branch or item of ``owner`` (an ASL template)."""
    scope: dict[str, Any] = {}
    if copy.dynamic:
        scope["up.$"] = "$.rf.scope"
    else:
        scope["up"] = copy.scope
    scope["owner"] = owner
    if dynamic_index:
        scope["index.$"] = index
    else:
        scope["index"] = index
    return scope


def _error_rule(errors: Sequence[str], variable: str) -> dict[str, Any]:
    """A choice rule that holds when the error named at ``variable`` matches ``errors``."""
    if ReservedError.ALL in errors:
        return {"Not": {"Variable": variable, "StringEquals": ReservedError.RUNTIME}}
    rules = [{"Variable": variable, "StringEquals": name} for name in errors]
    return rules[0] if len(rules) == 1 else {"Or": rules}


def _order_policies(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ASL wants a States.ALL entry alone and last: keep what can still match after it."""
    for index, entry in enumerate(entries):
        if ReservedError.ALL in entry["ErrorEquals"]:
            later = [
                {**other, "ErrorEquals": [ReservedError.RUNTIME]}
                for other in entries[index + 1 :]
                if ReservedError.RUNTIME in other["ErrorEquals"]
            ]
            return entries[:index] + later[:1] + [entry]
    return entries


def _retry_document(policies: Sequence[Retry]) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for policy in policies:
        document: dict[str, Any] = {
            "ErrorEquals": list(policy.errors),
            "IntervalSeconds": policy.interval_seconds,
            "MaxAttempts": policy.max_attempts,
            "BackoffRate": float(policy.backoff_rate),
        }
        if policy.max_delay_seconds is not None:
            document["MaxDelaySeconds"] = policy.max_delay_seconds
        if policy.jitter == "full":
            document["JitterStrategy"] = "FULL"
        documents.append(document)
    return _order_policies(documents)


def _chain(items: StateItems, transition: dict[str, Any]) -> StateItems:
    """Link ``items`` in order; the last one gets ``transition`` (Next or End)."""
    for (_, state), (next_name, _) in itertools.pairwise(items):
        state["Next"] = next_name
    items[-1][1].update(transition)
    return items


def _reachable(start: str, states: Mapping[str, Mapping[str, Any]]) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen or name not in states:
            continue
        seen.add(name)
        state = states[name]
        targets = [state.get("Next"), state.get("Default")]
        targets += [rule.get("Next") for rule in state.get("Choices", [])]
        targets += [entry.get("Next") for entry in state.get("Catch", [])]
        todo.extend(target for target in targets if isinstance(target, str))
    return seen


class _Compiler:
    def __init__(
        self,
        definition: FlowDefinition,
        activity_arn: str,
        flow_arns: Mapping[str, str],
        token_arn: str | None,
    ) -> None:
        if not activity_arn:
            raise CompileError(f"flow {definition.name!r}: activity_function_arn is required")
        self.definition = definition
        self.activity_arn = activity_arn
        self.flow_arns = flow_arns
        self.token_arn = token_arn
        self.used: set[str] = set()
        self.digest = definition_digest(definition.document())

    # --- the machine ----------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        definition = self.definition
        timed = definition.timeout_seconds is not None
        if timed and self.token_arn is None:
            raise CompileError(
                f"flow {definition.name!r}: timeout_seconds needs token_function_arn (the "
                "flow's deadline is a task-token wait that times out)"
            )
        top = _Copy(
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

    def router(self, top: _Copy) -> tuple[str, StateItems]:
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

    @staticmethod
    def unroutable() -> dict[str, Any]:
        return {
            "Type": "Fail",
            "Error": RESUME_REJECTED,
            "Cause": "the resume document names a position this machine does not have",
        }

    def route_rules(self, copy: _Copy) -> list[dict[str, Any]]:
        rules = []
        for name, state in copy.branch.states.items():
            for role in resume_roles(state):
                target = state_name(copy.prefix, name, role)
                rules.append(
                    {"Variable": "$.rf.node.route", "StringEquals": target, "Next": target}
                )
        return rules

    # --- branches ---------------------------------------------------------------------------

    def branch(self, copy: _Copy, head: tuple[str, StateItems] | None = None) -> dict[str, Any]:
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
        keep = _reachable(start, states)
        kept = {name: state for name, state in states.items() if name in keep}
        self.used.update(kept)
        return {"StartAt": start, "States": kept}

    def entry(self, copy: _Copy, name: str) -> str:
        """The first compiled state of user state ``name`` (what transitions go to)."""
        state = copy.branch.states[name]
        if self.prechecks(copy, state):
            return state_name(copy.prefix, name, "in")
        return state_name(copy.prefix, name)

    @staticmethod
    def prechecks(copy: _Copy, state: Any) -> bool:
        """In ``env`` mode the input_path of these states is checked by a Pass first."""
        if copy.mode != "env" or getattr(state, "input_path", None) is None:
            return False
        if isinstance(state, ParallelState):
            return any(needs_scope(branch) for branch in state.branches)
        return isinstance(state, TaskState | WaitForEventState | SubFlowState)

    def goto(self, copy: _Copy, target: str | None) -> dict[str, Any]:
        """The transition to user state ``target``, or the end of the branch."""
        if target is not None:
            return {"Next": self.entry(copy, target)}
        if copy.mode == "env":
            copy.uses_end[0] = True
            return {"Next": branch_helper(copy.prefix, "end")}
        if copy.end is not None:
            return {"Next": copy.end}
        return {"End": True}

    def follow(self, copy: _Copy, state: Any) -> dict[str, Any]:
        return self.goto(copy, None if state.end else state.next)

    def scope_field(self, copy: _Copy) -> dict[str, Any]:
        return {"scope.$": "$.rf.scope"} if copy.mode == "env" else {"scope": copy.scope}

    # --- data flow helpers --------------------------------------------------------------------

    @staticmethod
    def input_field(key: str, template: Mapping[str, Any] | None, base: str) -> dict[str, Any]:
        """``key`` holding the effective input: the user's Parameters read under ``base``."""
        if template is None:
            return {f"{key}.$": base}
        return {key: move_template(template, base)}

    def exit(
        self, copy: _Copy, base: str, root: str, path: str | None
    ) -> tuple[dict[str, Any], StateItems]:
        """Leave a state whose data sits at ``root``: select ``path`` into the copy's layout.

        Returns fields for the state itself (an OutputPath) and the states to add after it.
        """
        if copy.mode == "plain":
            selected = compose(root, path)
            return ({"OutputPath": selected} if selected != "$" else {}), []
        if root == ENV_ROOT and path in (None, "$"):
            return {}, []
        selected = compose(root, path)
        out = {"Type": "Pass", "InputPath": selected, "ResultPath": ENV_ROOT}
        return {}, [(helper_of(base, "out"), out)]

    def result_fields(
        self,
        copy: _Copy,
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
            exit_fields, after = self.exit(copy, base, root, compose("$.value", output_path))
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
        copy: _Copy,
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
        return _order_policies(entries), extra

    def handlers(self, copy: _Copy, state: Any) -> list[Catch]:
        found: list[Catch] = list(getattr(state, "catch", []))
        if copy.top:
            found += self.definition.on_error
        return found

    def assemble(
        self,
        copy: _Copy,
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
                        "InputPath": compose(ENV_ROOT, state.input_path),
                        "ResultPath": None,
                    },
                )
            )
        items.append((base, main))
        items.extend(after)
        return [*_chain(items, transition), *(extra or [])]

    # --- user states ------------------------------------------------------------------------

    def state(self, copy: _Copy, name: str, state: Any) -> StateItems:
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

    def pass_state(self, copy: _Copy, name: str, state: PassState) -> StateItems:
        base = state_name(copy.prefix, name)
        root = copy.root
        main: dict[str, Any] = {"Type": "Pass"}
        if state.comment:
            main["Comment"] = state.comment
        input_path = compose(root, state.input_path)
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

    def choice(self, copy: _Copy, name: str, state: ChoiceState) -> StateItems:
        base = state_name(copy.prefix, name)
        main: dict[str, Any] = {"Type": "Choice"}
        if state.comment:
            main["Comment"] = state.comment
        extra: StateItems = []
        if copy.mode == "plain":
            if state.input_path is not None:
                main["InputPath"] = state.input_path
            if state.output_path is not None:
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
        data = compose(ENV_ROOT, state.input_path)
        reshape = state.input_path is not None or state.output_path is not None
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
                            "InputPath": compose(data, state.output_path),
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

    def wait(self, copy: _Copy, name: str, state: WaitState) -> StateItems:
        base = state_name(copy.prefix, name)
        main: dict[str, Any] = {"Type": "Wait"}
        if state.comment:
            main["Comment"] = state.comment
        if copy.mode == "plain":
            if state.input_path is not None:
                main["InputPath"] = state.input_path
            if state.output_path is not None:
                main["OutputPath"] = state.output_path
            data = "$"
        else:
            data = compose(ENV_ROOT, state.input_path)
        if state.seconds is not None:
            main["Seconds"] = state.seconds
        elif state.timestamp is not None:
            moment = parse_timestamp(state.timestamp)
            assert moment is not None  # the model checked it
            main["Timestamp"] = format_timestamp(moment)
        elif state.seconds_path is not None:
            main["SecondsPath"] = compose(data, state.seconds_path)
        else:
            main["TimestampPath"] = compose(data, state.timestamp_path)
        after: StateItems = []
        if copy.mode == "env":
            exit_fields, after = self.exit(
                copy, base, ENV_ROOT, compose(state.input_path, state.output_path)
            )
            main.update(exit_fields)
        return self.assemble(
            copy, name, base, main, after=after, transition=self.follow(copy, state)
        )

    def succeed(self, copy: _Copy, name: str, state: SucceedState) -> StateItems:
        base = state_name(copy.prefix, name)
        main: dict[str, Any] = {}
        input_path = compose(copy.root, state.input_path)
        if input_path != "$":
            main["InputPath"] = input_path
        if state.output_path is not None:
            main["OutputPath"] = state.output_path
        if copy.mode == "env" or copy.end is None:
            return [(base, {"Type": "Succeed", **main})]
        return [(base, {"Type": "Pass", **main, "Next": copy.end})]

    def fail(self, copy: _Copy, name: str, state: FailState) -> StateItems:
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

    def task(self, copy: _Copy, name: str, state: TaskState, *, resumed: bool) -> StateItems:
        base = state_name(copy.prefix, name, "resume" if resumed else None)
        root = RESUME_ROOT if resumed else copy.root
        main: dict[str, Any] = {"Type": "Task", "Resource": LAMBDA_INVOKE}
        if state.comment:
            main["Comment"] = state.comment
        if resumed or copy.mode == "env":
            input_base = compose(root, state.input_path)
        else:
            input_base = "$"
            if state.input_path is not None:
                main["InputPath"] = state.input_path
        payload: dict[str, Any] = {"activity": state.activity, "instance_id.$": INSTANCE_ID}
        payload.update(self.input_field("input", state.parameters, input_base))
        if resumed:
            payload["attempt.$"] = "$.rf.node.call.attempt"
            payload["call"] = {
                "scope.$": "$.rf.scope",
                "state": name,
                "tag.$": "$.rf.node.call.tag",
            }
        else:
            payload["attempt.$"] = "States.MathAdd($$.State.RetryCount, 1)"
            payload["call"] = {**self.scope_field(copy), "state": name, "tag.$": NATIVE_TAG}
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
                main["Retry"] = _retry_document(retry)
            catch, extra = self.catches(copy, base, root, self.handlers(copy, state))
        if catch:
            main["Catch"] = catch
        return self.assemble(
            copy, name, base, main, after=after, transition=self.follow(copy, state), extra=extra
        )

    def event_wait(
        self, copy: _Copy, name: str, state: WaitForEventState, *, resumed: bool
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
        if not resumed and copy.mode == "plain" and state.input_path is not None:
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

    def parallel(self, copy: _Copy, name: str, state: ParallelState) -> StateItems:
        base = state_name(copy.prefix, name)
        root = copy.root
        main: dict[str, Any] = {"Type": "Parallel"}
        if state.comment:
            main["Comment"] = state.comment
        env_branches = copy.mode == "env" and any(needs_scope(b) for b in state.branches)
        if copy.mode == "plain":
            if state.input_path is not None:
                main["InputPath"] = state.input_path
            if state.parameters is not None:
                main["Parameters"] = state.parameters
        elif env_branches:
            parameters = {"rf": {"scope.$": "$.rf.scope"}}
            parameters.update(
                self.input_field("d", state.parameters, compose(ENV_ROOT, state.input_path))
            )
            main["Parameters"] = parameters
        else:
            main["InputPath"] = compose(ENV_ROOT, state.input_path)
            if state.parameters is not None:
                main["Parameters"] = state.parameters
        branches = []
        for index, branch in enumerate(state.branches):
            prefix = branch_copy(copy.prefix, name, index, resumed=False)
            child = _Copy(
                prefix=prefix,
                branch=branch,
                mode="env" if env_branches else "plain",
                dynamic=copy.dynamic,
                scope=None
                if copy.dynamic
                else _child_scope(copy, name, index, dynamic_index=False),
                top=False,
                resumable=False,
                end=None,
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
                                        "scope": _child_scope(
                                            copy, name, index, dynamic_index=False
                                        )
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
            main["Retry"] = _retry_document(state.retry)
        catch, extra = self.catches(copy, base, root, self.handlers(copy, state))
        if catch:
            main["Catch"] = catch
        return self.assemble(
            copy, name, base, main, after=after, transition=self.follow(copy, state), extra=extra
        )

    def map_state(self, copy: _Copy, name: str, state: MapState) -> StateItems:
        base = state_name(copy.prefix, name)
        root = copy.root
        main: dict[str, Any] = {"Type": "Map"}
        if state.comment:
            main["Comment"] = state.comment
        if copy.mode == "plain":
            if state.input_path is not None:
                main["InputPath"] = state.input_path
            if state.items_path != "$":
                main["ItemsPath"] = state.items_path
            selector_base = "$"
        else:
            main["ItemsPath"] = compose(ENV_ROOT, state.input_path, state.items_path)
            selector_base = compose(ENV_ROOT, state.input_path)
        scoped = needs_scope(state.iterator)
        if scoped:
            selector: dict[str, Any] = {
                "rf": {"scope": _child_scope(copy, name, "$$.Map.Item.Index", dynamic_index=True)}
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
        child = _Copy(
            prefix=iterator_copy(copy.prefix, name, resumed=False),
            branch=state.iterator,
            mode="env" if scoped else "plain",
            dynamic=True,
            scope=None,
            top=False,
            resumable=False,
            end=None,
        )
        processor = self.branch(child)
        main["ItemProcessor"] = {"ProcessorConfig": {"Mode": "INLINE"}, **processor}
        fields, after = self.result_fields(copy, base, root, state, None)
        main.update(fields)
        if state.retry:
            main["Retry"] = _retry_document(state.retry)
        catch, extra = self.catches(copy, base, root, self.handlers(copy, state))
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

    def sub_flow(self, copy: _Copy, name: str, state: SubFlowState, *, resumed: bool) -> StateItems:
        arn = self.flow_arn(name, state)
        base = state_name(copy.prefix, name, "resume" if resumed else None)
        root = RESUME_ROOT if resumed else copy.root
        main: dict[str, Any] = {"Type": "Parallel"}
        if state.comment:
            main["Comment"] = state.comment
        child_task: dict[str, Any] = {"Type": "Task", "Resource": START_EXECUTION_SYNC}
        if resumed:
            main["Parameters"] = {
                "child": {"name.$": "$.rf.node.child_name", "input.$": "$.rf.node.child_input"}
            }
            child_task["Parameters"] = {
                "StateMachineArn": arn,
                "Name.$": "$.child.name",
                "Input.$": "$.child.input",
            }
        else:
            if copy.mode == "plain":
                if state.input_path is not None:
                    main["InputPath"] = state.input_path
                input_base = "$"
            else:
                input_base = compose(ENV_ROOT, state.input_path)
            parameters = self.input_field("input", state.parameters, input_base)
            parameters["call"] = {**self.scope_field(copy), "state": name}
            main["Parameters"] = parameters
            child_task["Parameters"] = {
                "StateMachineArn": arn,
                "Name.$": _CHILD_NAME,
                "Input": {
                    "rf": {
                        "format": RESUME_FORMAT,
                        "instance_id.$": _CHILD_ID,
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
            catch, extra = self.error_router(copy, name, base, state)
        else:
            retry = retriers_of(self.definition, state)
            if retry:
                main["Retry"] = _retry_document(retry)
            catch, extra = self.catches(copy, base, root, self.handlers(copy, state))
        if catch:
            main["Catch"] = catch
        return self.assemble(
            copy, name, base, main, after=after, transition=self.follow(copy, state), extra=extra
        )

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

    # --- resume entries -------------------------------------------------------------------

    def resume_entry(self, copy: _Copy, name: str, state: Any, role: str) -> StateItems:
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

    def back_to(self, copy: _Copy, base: str, goal: str) -> tuple[dict[str, Any], StateItems]:
        """Leave a resume entry with the node's data unchanged, towards ``goal``."""
        if copy.mode == "plain":
            return {"OutputPath": RESUME_ROOT, "Next": goal}, []
        again = {"Type": "Pass", "InputPath": RESUME_ROOT, "ResultPath": ENV_ROOT, "Next": goal}
        name = helper_of(base, "back")
        return {"Next": name}, [(name, again)]

    def delay_entry(self, copy: _Copy, name: str, state: Any) -> StateItems:
        """Wait for a retry the snapshot had scheduled, then run the state again."""
        base = delay_route(copy.prefix, name)
        main: dict[str, Any] = {"Type": "Wait", "TimestampPath": "$.rf.node.until"}
        if isinstance(state, TaskState):
            main["Next"] = resume_route(copy.prefix, name)
            return [(base, main)]
        fields, extra = self.back_to(copy, base, self.entry(copy, name))
        main.update(fields)
        return [(base, main), *extra]

    def wait_entry(self, copy: _Copy, name: str, state: WaitState) -> StateItems:
        base = resume_route(copy.prefix, name)
        main: dict[str, Any] = {"Type": "Wait", "TimestampPath": "$.rf.node.until"}
        exit_fields, after = self.exit(
            copy, base, RESUME_ROOT, compose(state.input_path, state.output_path)
        )
        main.update(exit_fields)
        return _chain([(base, main), *after], self.follow(copy, state))

    def error_router(
        self,
        copy: _Copy,
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
        entries = _order_policies(first + native)
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
                {**_error_rule(handler.errors, f"{ERROR_AT}.Error"), "Next": placed[h_index]}
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

    def parallel_entry(self, copy: _Copy, name: str, state: ParallelState) -> StateItems:
        base = resume_route(copy.prefix, name)
        main: dict[str, Any] = {"Type": "Parallel", "Parameters": {"rf.$": "$.rf"}}
        branches = []
        for index, branch in enumerate(state.branches):
            prefix = branch_copy(copy.prefix, name, index, resumed=True)
            child = _Copy(
                prefix=prefix,
                branch=branch,
                mode=copy.mode,
                dynamic=copy.dynamic,
                scope=None
                if copy.dynamic
                else _child_scope(copy, name, index, dynamic_index=False),
                top=False,
                resumable=True,
                end=None,
            )
            enter = branch_helper(prefix, "enter")
            route = branch_helper(prefix, "route")
            done = branch_helper(prefix, "done")
            scope = _child_scope(copy, name, index, dynamic_index=False)
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

    def map_entry(self, copy: _Copy, name: str, state: MapState) -> StateItems:
        base = resume_route(copy.prefix, name)
        main: dict[str, Any] = {"Type": "Map", "ItemsPath": "$.rf.node.items"}
        selector: dict[str, Any] = {
            "rf": {
                "scope": _child_scope(copy, name, "$$.Map.Item.Index", dynamic_index=True),
                "node.$": "$$.Map.Item.Value",
            }
        }
        if state.item_selector is None:
            selector["d.$"] = "$$.Map.Item.Value.item"
        else:
            selector["d"] = move_template(
                state.item_selector,
                compose(RESUME_ROOT, state.input_path),
                item_value="$$.Map.Item.Value.item",
            )
        main["ItemSelector"] = selector
        if state.max_concurrency:
            main["MaxConcurrency"] = state.max_concurrency
        prefix = iterator_copy(copy.prefix, name, resumed=True)
        child = _Copy(
            prefix=prefix,
            branch=state.iterator,
            mode="env",
            dynamic=True,
            scope=None,
            top=False,
            resumable=True,
            end=None,
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


def iter_states(document: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every (name, state) of a compiled machine, nested branches and iterators included."""
    for name, state in document.get("States", {}).items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from iter_states(branch)
        for key in ("ItemProcessor", "Iterator"):
            if key in state:
                yield from iter_states(state[key])
