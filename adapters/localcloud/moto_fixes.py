"""What moto 5.2's Step Functions executor needs to run compiled machines as AWS does.

Every patch moto needs lives here, once: the local AWS (``rustyflower cloud aws``) and
the tests' moto harnesses (tests/aws) apply them through :func:`step_functions_fixes`.

* ``states:startExecution.sync`` (sub-flows): moto passes ASL's ``StateMachineArn``,
  ``Name``, ``Input`` to boto3 as they are and hands boto3's answer back unchanged;
  Step Functions (and LocalStack, where moto's executor comes from) turns them into
  boto3's ``stateMachineArn`` and the answer back into ``ExecutionArn``/``Output``;
* a ``States.*`` error leaving a Parallel branch or a Map iteration: moto re-raises it as
  a *custom* name, which refuses ``States.*`` (a States.Timeout could not leave a
  Parallel); Step Functions passes it on as it is;
* a Wait on a ``Timestamp``/``TimestampPath`` (every resumed wait and retry delay after a
  failover): moto waits ``int(seconds left)`` read against the naive *local* clock, so
  it ends up to a second early (hours off outside UTC); Step Functions waits until the
  timestamp;
* executions starting side by side: moto's ``Preprocessor`` keeps its query-language
  scopes in a list shared by every instance (a class attribute), so two executions
  parsing their definitions at once corrupt each other's (``IndexError`` in the
  executor's thread, and the execution never ends); each instance gets its own list;
* the Lambda integration (``lambda:invoke``): moto without Docker only echoes the
  payload; the caller's ``invoke`` answers instead (``lambdas.LambdaRouter``);
* a retried Parallel: moto evaluates its ``Parameters`` once and gives every attempt the
  first attempt's input, so ``$$.State.RetryCount`` there is always 0; the context object
  counts the state's retries, and a sub-flow's wrapper names each attempt's child by it
  (``parent/position@attempt``): the Parameters are evaluated again for each attempt.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from typing import Any
from unittest import mock

from moto.stepfunctions.parser.api import HistoryEventType
from moto.stepfunctions.parser.asl.component.common.catch.catch_outcome import CatchOutcome
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import (
    CustomErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
    StatesErrorName,
)
from moto.stepfunctions.parser.asl.component.common.retry.retry_outcome import RetryOutcome
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
    iteration_worker,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_parallel import branches_decl
from moto.stepfunctions.parser.asl.component.state.exec.state_parallel.state_parallel import (
    StateParallel,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_sfn,
)
from moto.stepfunctions.parser.asl.component.state.wait.wait_function import timestamp
from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

__all__ = [
    "LambdaInvoke",
    "any_error_name",
    "own_scopes",
    "parallel_attempts",
    "sfn_parameters",
    "sfn_response",
    "step_functions_fixes",
    "timestamp_wait_seconds",
]

LambdaInvoke = Callable[[dict[str, Any], str, Any], Any]
"""moto's ``_invoke_lambda_function(parameters, region, state_credentials)``: Lambda's
Invoke answer (``StatusCode``, ``Payload``, ``FunctionError`` when the handler raised)."""

_SFN_SERVICE = state_task_service_sfn.StateTaskServiceSfn
_ORIGINAL_SFN_PARAMETERS = _SFN_SERVICE._normalise_parameters


def sfn_parameters(
    self: Any,
    parameters: dict[str, Any],
    boto_service_name: str | None = None,
    service_action_name: str | None = None,
) -> None:
    """ASL's ``StateMachineArn``/``Name``/``Input`` as boto3's ``stateMachineArn``/..."""
    _ORIGINAL_SFN_PARAMETERS(self, parameters, boto_service_name, service_action_name)
    for key in list(parameters):
        parameters[key[:1].lower() + key[1:]] = parameters.pop(key)


def sfn_response(
    self: Any,
    response: Any,
    boto_service_name: str | None = None,
    service_action_name: str | None = None,
) -> None:
    """boto3's ``executionArn``/``output``/... back as ASL's ``ExecutionArn``/``Output``."""
    if isinstance(response, dict):
        for key in list(response):
            response[key[:1].upper() + key[1:]] = response.pop(key)


def any_error_name(error_name: str | None) -> Any:
    """A branch's or an item's error passed on as it is, ``States.*`` names included."""
    if error_name is not None and error_name.startswith("States."):
        try:
            return StatesErrorName.from_name(error_name)
        except ValueError:
            pass
    return CustomErrorName(error_name)


def timestamp_wait_seconds(self: Any, env: Any) -> int:
    """A Wait until a timestamp, to the timestamp: the fraction of a second left is waited
    out first (on the execution's own event, so stopping it still ends the wait), then
    moto waits the whole seconds left."""
    self.string.eval(env=env)
    text = env.stack.pop()
    moment = self._from_timestamp_string(timestamp=text)
    if moment is None:
        raise FailureEventException(self._create_failure_event(env, text))
    left = (moment.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds()
    if left <= 0:
        return 0
    whole = int(left)
    if left > whole:
        env.program_state_event.wait(left - whole)
    return whole


def parallel_attempts(self: Any, env: Any) -> None:
    """``StateParallel._eval_state`` with the Parameters evaluated for each attempt (moto's
    own evaluates them once, before its retry loop, which is otherwise unchanged here)."""
    env.states.context_object.context_object_data["State"]["RetryCount"] = 0
    effective_input = env.stack.pop()  # after InputPath
    while env.is_running():
        try:
            env.stack.append(copy.deepcopy(effective_input))
            if self.parargs is not None:
                self.parargs.eval(env=env)
            # the branches get a copy of their input, never a value they share
            env.stack.append(copy.deepcopy(env.stack.pop()))
            self._evaluate_with_timeout(env)
            break
        except FailureEventException as failure_event_ex:
            failure_event = self._from_error(env=env, ex=failure_event_ex)
            error_output = self._construct_error_output_value(failure_event=failure_event)
            env.states.set_error_output(error_output)
            env.states.set_result(error_output)
            if self.retry is not None:
                outcome = self._handle_retry(env=env, failure_event=failure_event)
                if outcome == RetryOutcome.CanRetry:
                    continue
            env.event_manager.add_event(
                context=env.event_history_context,
                event_type=HistoryEventType.ParallelStateFailed,
            )
            if self.catch is not None:
                self._handle_catch(env=env, failure_event=failure_event)
                if env.stack[-1] == CatchOutcome.Caught:
                    break
            self._handle_uncaught(env=env, failure_event=failure_event)


_ORIGINAL_PREPROCESSOR_INIT = Preprocessor.__init__


def own_scopes(self: Any, *args: Any, **kwargs: Any) -> None:
    """A ``Preprocessor`` with query-language scopes of its own (not the class's list)."""
    _ORIGINAL_PREPROCESSOR_INIT(self, *args, **kwargs)
    self._query_language_per_scope = []


@contextmanager
def step_functions_fixes(invoke: LambdaInvoke, *, exact_timestamps: bool = True) -> Iterator[None]:
    """moto's executor patched while the block runs: Lambda invokes go to ``invoke``;
    sub-flows, ``States.*`` errors out of Parallel and Map, executions starting at once
    and (``exact_timestamps``) Waits until a timestamp behave as in Step Functions."""
    patches: list[tuple[Any, str, Any]] = [
        (lambda_eval_utils, "_invoke_lambda_function", invoke),
        (_SFN_SERVICE, "_normalise_parameters", sfn_parameters),
        (_SFN_SERVICE, "_normalise_response", sfn_response),
        (branches_decl, "CustomErrorName", any_error_name),
        (iteration_worker, "CustomErrorName", any_error_name),
        (Preprocessor, "__init__", own_scopes),
        (StateParallel, "_eval_state", parallel_attempts),
    ]
    if exact_timestamps:
        patches.append((timestamp.Timestamp, "_get_wait_seconds", timestamp_wait_seconds))
    with ExitStack() as stack:
        for target, attribute, replacement in patches:
            stack.enter_context(mock.patch.object(target, attribute, replacement))
        yield
