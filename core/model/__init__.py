"""The portable flow model: definitions, state kinds, retry and catch policies."""

from rustyflower.core.model.definition import (
    FlowDefinition,
    parse_definition,
    validate_definition,
    version_key,
)
from rustyflower.core.model.errors_handling import Catch, Retry
from rustyflower.core.model.schedule import Schedule
from rustyflower.core.model.states import (
    Branch,
    ChoiceBranch,
    ChoiceState,
    FailState,
    MapState,
    ParallelState,
    PassState,
    State,
    SubFlowState,
    SucceedState,
    TaskState,
    WaitForEventState,
    WaitState,
    iter_states,
)
from rustyflower.core.model.triggers import Trigger

__all__ = [
    "Branch",
    "Catch",
    "ChoiceBranch",
    "ChoiceState",
    "FailState",
    "FlowDefinition",
    "MapState",
    "ParallelState",
    "PassState",
    "Retry",
    "Schedule",
    "State",
    "SubFlowState",
    "SucceedState",
    "TaskState",
    "Trigger",
    "WaitForEventState",
    "WaitState",
    "iter_states",
    "parse_definition",
    "validate_definition",
    "version_key",
]

from rustyflower.core.model.formats import definition_schema, dump_definition, load_definition

__all__ += ["definition_schema", "dump_definition", "load_definition"]
