"""Schedules, pure: the cron language and its fire times, the schedule spec and its rules,
the catch-up arithmetic. The runtimes (the Redis scheduler, the cloud schedules compiled
for Terraform) and the flow model all use these, so a schedule means one thing everywhere.

Nothing here imports the flow model at run time: the model validates its schedules with
these rules.
"""

from rustyflower.core.errors import InvalidScheduleError
from rustyflower.core.schedules.cron import (
    MACROS,
    cron_expression,
    fire_times,
    fires_between,
    latest_fire,
    time_zone,
)
from rustyflower.core.schedules.firing import (
    DEFAULT_MISFIRE_GRACE,
    MAX_CATCH_UP,
    DueFires,
    due_fires,
    next_fire,
)
from rustyflower.core.schedules.spec import (
    CatchUp,
    DeclaredSchedule,
    Overlap,
    ScheduleSpec,
    check_input,
    check_name,
    declared_schedule_problems,
    declared_schedules,
    next_fires,
    scheduled_instance_id,
)

__all__ = [
    "DEFAULT_MISFIRE_GRACE",
    "MACROS",
    "MAX_CATCH_UP",
    "CatchUp",
    "DeclaredSchedule",
    "DueFires",
    "InvalidScheduleError",
    "Overlap",
    "ScheduleSpec",
    "check_input",
    "check_name",
    "cron_expression",
    "declared_schedule_problems",
    "declared_schedules",
    "due_fires",
    "fire_times",
    "fires_between",
    "latest_fire",
    "next_fire",
    "next_fires",
    "scheduled_instance_id",
    "time_zone",
]
