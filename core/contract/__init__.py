"""The contract between runtimes: the strings every runtime must spell the same way.

The engine, the Redis runner, the in-process runner, the Azure orchestrator and the
compiled Step Functions machine exchange error names, control events and work ids. Each
is written here once; every other module imports it (tests/unit/test_contract.py keeps
stray copies out of the shipped code).

* :mod:`.errors`: the reserved ``States.*`` error names, the names RustyFlower's runners
  raise, and how a retrier's or catcher's ``errors`` list matches an error;
* :mod:`.controls`: the control events raised to a running instance and the kind of a
  finished orchestration's result;
* :mod:`.services`: the built-in service tasks' kinds and the reserved activity names
  their calls are issued under (their portable error names are in :mod:`.errors`);
* :mod:`.work_ids`: the engine's ids of pending work (calls, waits, timers), their parser,
  and the ids derived from them (idempotency keys, child instance ids).
"""

from rustyflower.core.contract.controls import CONTROL_EVENTS, RESULT_KIND, ControlEvent
from rustyflower.core.contract.errors import (
    RESERVED_PREFIX,
    RUNNER_ERRORS,
    SERVICE_ERRORS,
    UNCATCHABLE_BY_WILDCARDS,
    ReservedError,
    RunnerError,
    ServiceError,
    error_matches,
    is_reserved,
)
from rustyflower.core.contract.services import (
    SERVICE_KINDS,
    SERVICE_PREFIX,
    ServiceKind,
    ServiceName,
    is_reserved_activity,
    service_activity,
    service_kind,
)
from rustyflower.core.contract.work_ids import (
    CHILD_ATTEMPT_SEPARATOR,
    FLOW_TIMER_POSITION,
    TIMER_PURPOSES,
    Purpose,
    WorkId,
    child_instance_id,
    format_timer_id,
    format_work_id,
    idempotency_key,
    parse_work_id,
    work_number,
)

__all__ = [
    "CHILD_ATTEMPT_SEPARATOR",
    "CONTROL_EVENTS",
    "FLOW_TIMER_POSITION",
    "RESERVED_PREFIX",
    "RESULT_KIND",
    "RUNNER_ERRORS",
    "SERVICE_ERRORS",
    "SERVICE_KINDS",
    "SERVICE_PREFIX",
    "TIMER_PURPOSES",
    "UNCATCHABLE_BY_WILDCARDS",
    "ControlEvent",
    "Purpose",
    "ReservedError",
    "RunnerError",
    "ServiceError",
    "ServiceKind",
    "ServiceName",
    "WorkId",
    "child_instance_id",
    "error_matches",
    "format_timer_id",
    "format_work_id",
    "idempotency_key",
    "is_reserved",
    "is_reserved_activity",
    "parse_work_id",
    "service_activity",
    "service_kind",
    "work_number",
]
