"""A named schedule and the one set of rules that says whether it is valid.

Every runtime that starts flows on a schedule reads the same two things from here: a
``ScheduleSpec`` (a schedule added by hand, or declared by a flow definition) and the
names and instance ids its runs get. The flow model's ``Schedule`` validates its fields
with these same rules, and ``FlowDefinition`` checks the names ``declared_schedules``
gives, so a definition that validates can always be registered, and its schedules
compiled for the cloud, under the same names.

* A schedule's name is 1 to 120 letters, digits or ``_ . : @ -``. A schedule a flow
  declares is named ``f"{flow}:{schedule.name or its index}"`` and starts that
  definition's version.
* The run of a fire has the instance id ``f"{schedule name}@{fire time in UTC, ISO 8601
  with Z}"`` (for example ``nightly@2024-03-31T00:00:00Z``) on every runtime, so a fire
  is never started twice, not even across a failover.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, get_args

from rustyflower.core.errors import InvalidScheduleError
from rustyflower.core.schedules.cron import cron_expression, fire_times, time_zone
from rustyflower.core.timeutil import format_timestamp

if TYPE_CHECKING:  # the model validates with these rules: imported here only for types
    from rustyflower.core.model import FlowDefinition

Overlap = Literal["skip", "allow", "buffer_one"]
"""What a fire does while the previous run of its schedule still runs."""
CatchUp = Literal["none", "latest", "all"]
"""What happens to fires that passed while no scheduler ran."""

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.:@-]{1,120}")


def check_name(name: object) -> str:
    """``name`` when it is a valid schedule name; InvalidScheduleError otherwise."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidScheduleError(
            f"schedule name {name!r} is not valid: 1 to 120 letters, digits or _ . : @ -"
        )
    return name


def check_input(value: Any) -> Any:
    """``value`` when it is plain JSON (no NaN or infinity); InvalidScheduleError otherwise."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InvalidScheduleError(f"the input must be JSON ({error})") from None
    return value


@dataclass(frozen=True)
class ScheduleSpec:
    """One named schedule: start ``flow`` (``version``; None = the latest at fire time)."""

    name: str
    flow: str
    version: str | None
    cron: str
    timezone: str = "UTC"
    input: Any = None
    overlap: Overlap = "skip"
    catch_up: CatchUp = "latest"
    paused: bool = False

    def __post_init__(self) -> None:
        check_name(self.name)
        if not isinstance(self.flow, str) or not self.flow.strip():
            raise InvalidScheduleError(f"schedule {self.name!r}: the flow name is missing")
        if self.version is not None and (not isinstance(self.version, str) or not self.version):
            raise InvalidScheduleError(
                f"schedule {self.name!r}: version is a non-empty string, or None for the latest"
            )
        try:
            cron_expression(self.cron)
            time_zone(self.timezone)
            check_input(self.input)
        except InvalidScheduleError as error:
            raise InvalidScheduleError(f"schedule {self.name!r}: {error}") from None
        if self.overlap not in get_args(Overlap):
            raise InvalidScheduleError(
                f"schedule {self.name!r}: overlap is one of {', '.join(get_args(Overlap))}, "
                f"not {self.overlap!r}"
            )
        if self.catch_up not in get_args(CatchUp):
            raise InvalidScheduleError(
                f"schedule {self.name!r}: catch_up is one of {', '.join(get_args(CatchUp))}, "
                f"not {self.catch_up!r}"
            )
        if not isinstance(self.paused, bool):
            raise InvalidScheduleError(f"schedule {self.name!r}: paused is true or false")

    def fires_after(self, after: datetime) -> Iterator[datetime]:
        """Every fire time (UTC) strictly after ``after``."""
        return fire_times(self.cron, self.timezone, after)

    def document(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "flow": self.flow,
            "version": self.version,
            "cron": self.cron,
            "timezone": self.timezone,
            "input": self.input,
            "overlap": self.overlap,
            "catch_up": self.catch_up,
            "paused": self.paused,
        }


def next_fires(spec: ScheduleSpec, after: datetime, count: int = 1) -> list[datetime]:
    """The next ``count`` fire times of ``spec`` after ``after`` (UTC)."""
    result: list[datetime] = []
    for fire in spec.fires_after(after):
        if len(result) >= count:
            break
        result.append(fire)
    return result


def scheduled_instance_id(schedule: str, fire: datetime) -> str:
    """The instance id of the run of ``schedule`` for the fire at ``fire``."""
    return f"{schedule}@{format_timestamp(fire)}"


# --- schedules a flow declares --------------------------------------------------------------


@dataclass(frozen=True)
class DeclaredSchedule:
    """A schedule a flow definition declares, as every runtime names and runs it."""

    index: int
    """Its place in the definition's ``schedules``."""
    key: str
    """``schedule.name``, or its index when it has none: the part of the name after 'flow:'."""
    spec: ScheduleSpec
    """Named ``f"{flow}:{key}"``, starting the definition's version; paused when disabled."""
    enabled: bool


def declared_schedules(definition: FlowDefinition) -> list[DeclaredSchedule]:
    """The schedules ``definition`` declares; InvalidScheduleError names the first problem.

    A ``FlowDefinition`` that validated has none (it reports them all, see
    ``declared_schedule_problems``).
    """
    declared, problems = _declare(definition)
    if problems:
        raise InvalidScheduleError(problems[0][1])
    return declared


def declared_schedule_problems(definition: FlowDefinition) -> list[tuple[int, str]]:
    """(index in ``schedules``, message) for every declared schedule that cannot be named."""
    return _declare(definition)[1]


def _declare(
    definition: FlowDefinition,
) -> tuple[list[DeclaredSchedule], list[tuple[int, str]]]:
    declared: list[DeclaredSchedule] = []
    problems: list[tuple[int, str]] = []
    seen: set[str] = set()
    for index, schedule in enumerate(definition.schedules):
        key = schedule.name or str(index)
        name = f"{definition.name}:{key}"
        if name in seen:
            problems.append((index, f"flow {definition.name!r} declares schedule {name!r} twice"))
            continue
        seen.add(name)
        try:
            spec = ScheduleSpec(
                name=name,
                flow=definition.name,
                version=definition.version,
                cron=schedule.cron,
                timezone=schedule.timezone,
                input=schedule.input,
                overlap=schedule.overlap,
                catch_up=schedule.catch_up,
                paused=not schedule.enabled,
            )
        except InvalidScheduleError as error:
            problems.append((index, str(error)))
            continue
        declared.append(DeclaredSchedule(index, key, spec, schedule.enabled))
    return declared, problems
