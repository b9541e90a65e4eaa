"""Error names every runtime agrees on, and how ``errors`` lists match them.

Amazon States Language reserves the ``States.`` prefix (ASL spec, "Errors"; AWS Step
Functions Developer Guide, "Handling errors in Step Functions workflows", "Error
names"); a user's own error names (an activity's exception class, a ``fail`` state's
error) must not start with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

RESERVED_PREFIX: Final = "States."
"""Error names starting with this are Step Functions' (and a few of the engine's own)."""


class ReservedError:
    """The ``States.*`` error names RustyFlower raises, matches or compiles.

    Plain text constants (not an Enum): they travel in snapshots, events and ASL as the
    very strings a platform writes, and must compare and print as those.
    """

    ALL: Final = "States.ALL"
    """In a retrier's or catcher's ``errors``: every error (but the uncatchable ones, below)."""
    TASK_FAILED: Final = "States.TaskFailed"
    """A task failed; in ``errors``: every error but States.Timeout (and the uncatchable)."""
    TIMEOUT: Final = "States.Timeout"
    RUNTIME: Final = "States.Runtime"
    PARAMETER_PATH_FAILURE: Final = "States.ParameterPathFailure"
    RESULT_PATH_MATCH_FAILURE: Final = "States.ResultPathMatchFailure"
    NO_CHOICE_MATCHED: Final = "States.NoChoiceMatched"
    DATA_LIMIT_EXCEEDED: Final = "States.DataLimitExceeded"
    """Never raised by the engine; like States.Runtime, no wildcard catches it."""
    CANCELLED: Final = "States.Cancelled"
    """The engine's: the error of an instance that was cancelled."""
    FAILED: Final = "States.Failed"
    """The engine's: the error of a ``fail`` state that names none."""
    HTTP_STATUS_PREFIX: Final = "States.Http.StatusCode."
    """Step Functions' HTTP Task fails with this and the status (``...StatusCode.404``);
    the compiled service task names it portably (core.services.failure_for_status)."""


class RunnerError:
    """Error names RustyFlower's runtimes raise for a call they could not carry out."""

    SUB_FLOW_CANCELLED: Final = "SubFlowCancelled"
    """A child flow was cancelled (a child that failed reports its own error)."""
    UNKNOWN_FLOW: Final = "UnknownFlow"
    """A ``sub_flow`` state names a flow the runtime does not know."""
    UNKNOWN_ACTIVITY: Final = "UnknownActivity"
    INVALID_ACTIVITY_OUTPUT: Final = "InvalidActivityOutput"
    """An activity returned a value that is not JSON."""


RUNNER_ERRORS: Final = frozenset(
    {
        RunnerError.SUB_FLOW_CANCELLED,
        RunnerError.UNKNOWN_FLOW,
        RunnerError.UNKNOWN_ACTIVITY,
        RunnerError.INVALID_ACTIVITY_OUTPUT,
    }
)


class ServiceError:
    """The portable error names of the built-in service tasks (``core.services``).

    Every runtime raises the same name for the same kind of trouble, whatever its
    platform calls it (docs/services.md lists each platform's names behind each one):
    a ``catch`` or ``retry`` on ``ServiceThrottled`` works on-premises, in Step Functions
    and in Durable Functions alike.
    """

    NOT_FOUND: Final = "ServiceNotFound"
    """The queue, bus, store or object does not exist (HTTP 404, 410)."""
    ACCESS_DENIED: Final = "ServiceAccessDenied"
    """The runtime may not do this (credentials, permissions; HTTP 401, 403)."""
    THROTTLED: Final = "ServiceThrottled"
    """Too many requests: try again later (HTTP 429)."""
    UNAVAILABLE: Final = "ServiceUnavailable"
    """The service could not be reached or failed on its side (network, HTTP 5xx)."""
    INVALID_REQUEST: Final = "ServiceInvalidRequest"
    """The request is malformed or refused as such (a bad value, too large; other HTTP 4xx)."""
    FAILED: Final = "ServiceFailed"
    """Any other failure of the service."""


SERVICE_ERRORS: Final = frozenset(
    {
        ServiceError.NOT_FOUND,
        ServiceError.ACCESS_DENIED,
        ServiceError.THROTTLED,
        ServiceError.UNAVAILABLE,
        ServiceError.INVALID_REQUEST,
        ServiceError.FAILED,
    }
)


UNCATCHABLE_BY_WILDCARDS: Final = frozenset(
    {ReservedError.RUNTIME, ReservedError.DATA_LIMIT_EXCEEDED}
)
"""Errors that ``States.ALL`` and ``States.TaskFailed`` do not match (named, they do)."""


def is_reserved(error: str) -> bool:
    """Whether ``error`` is a ``States.*`` name (which a ``fail`` state of ASL cannot raise)."""
    return error.startswith(RESERVED_PREFIX)


def error_matches(error_names: Iterable[str], error: str) -> bool:
    """Whether a retrier or catcher whose ``errors`` are ``error_names`` applies to ``error``.

    As Step Functions matches ``ErrorEquals`` (Developer Guide, "Handling errors in Step
    Functions workflows", "Error names"): a name matches itself; ``States.ALL`` matches
    any error; in a retry or catch ``States.TaskFailed`` "acts as a wildcard that matches
    any known error name except for States.Timeout". Neither wildcard matches
    ``States.Runtime`` or ``States.DataLimitExceeded``: a retry or catch on a wildcard
    never handles those.
    """
    names = set(error_names)
    if error in names:
        return True
    if error in UNCATCHABLE_BY_WILDCARDS:
        return False
    if ReservedError.ALL in names:
        return True
    return ReservedError.TASK_FAILED in names and error != ReservedError.TIMEOUT
