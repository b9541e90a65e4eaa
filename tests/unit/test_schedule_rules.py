"""One set of schedule rules: the spec the runners keep, the model's Schedule, declared names."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from pydantic import ValidationError

from rustyflower.core.builder import Flow, Schedule
from rustyflower.core.errors import RustyFlowerError
from rustyflower.core.schedules import (
    InvalidScheduleError,
    ScheduleSpec,
    cron_expression,
    declared_schedules,
    fire_times,
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"cron": "not cron"}, "not a 5-field cron expression"),
        ({"cron": "0 9 * *"}, "not a 5-field cron expression"),
        ({"cron": "0 0 9 * * *"}, "not a 5-field cron expression"),
        ({"cron": "61 * * * *"}, "not a valid cron expression"),
        ({"cron": "0 0 30 2 *"}, "never fires"),
        ({"timezone": "Mars/Base"}, "unknown time zone 'Mars/Base'"),
        ({"timezone": "../etc/passwd"}, "unknown time zone"),
        ({"name": "has space"}, "schedule name 'has space' is not valid"),
        ({"name": "x" * 121}, "is not valid: 1 to 120"),
        ({"name": ""}, "is not valid"),
        ({"flow": ""}, "flow name is missing"),
        ({"overlap": "queue"}, "overlap is one of skip, allow, buffer_one"),
        ({"catch_up": "some"}, "catch_up is one of none, latest, all"),
        ({"input": {"when": object()}}, "input must be JSON"),
        ({"input": float("nan")}, "input must be JSON"),
    ],
)
def test_invalid_specs_raise_clear_value_errors(changes: dict[str, Any], message: str) -> None:
    fields = {"name": "ok", "flow": "f", "version": None, "cron": "0 9 * * 1-5", **changes}
    with pytest.raises(InvalidScheduleError, match=message) as raised:
        ScheduleSpec(**fields)
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value, RustyFlowerError)


def test_valid_specs_accept_ranges_names_and_macros() -> None:
    ScheduleSpec("report:nightly@eu-1.x", "f", "2", "0 9 * * mon-fri", "America/New_York")
    daily = ScheduleSpec("d", "f", None, "@daily", "Asia/Tokyo")
    assert next(daily.fires_after(at("2024-01-01T00:00:00Z"))) == at("2024-01-01T15:00:00Z")
    assert cron_expression("  @Hourly ") == "0 * * * *"
    assert cron_expression("0  9 *\t* 1-5") == "0 9 * * 1-5"


@pytest.mark.parametrize("cron", ["R 2 * * *", "0 R * * *", "r(0-29) 2 * * *", "H 2 * * *"])
def test_random_and_hashed_fields_are_refused(cron: str) -> None:
    # croniter draws an R field anew for every iterator: every tick would see other fire
    # times, and two schedulers would disagree on the instance id of the same fire
    with pytest.raises(InvalidScheduleError, match=r"random \(R\) and hashed \(H\)"):
        ScheduleSpec("r", "f", None, cron)
    with pytest.raises(InvalidScheduleError):
        next(fire_times(cron, "UTC", at("2024-01-01T00:00:00Z")))


# --- the model's Schedule and the runner's spec agree -------------------------------------------

CRONS = [
    "0 9 * * 1-5",
    "@daily",
    "*/15 * * * *",
    "0 0 L * *",
    "0 0 * * 5#2",
    "not cron",
    "0 0 9 * * *",
    "0 0 9 * * * 2024",
    "61 * * * *",
    "0 0 30 2 *",
    "R 2 * * *",
    "@reboot",
]
ZONES = ["UTC", "Europe/Berlin", "Mars/Base", "", "utc", "../etc/passwd"]
INPUTS: list[Any] = [None, {"region": "eu"}, [1, 2.5, "x"], float("nan"), {"x": float("inf")}]


def refusal(build: Any) -> str | None:
    """The message ``build()`` is refused with, None when it is accepted."""
    try:
        build()
    except InvalidScheduleError as error:
        return str(error).removeprefix("schedule 's': ")
    except ValidationError as error:
        (detail,) = error.errors(include_url=False)
        return str(detail["msg"]).removeprefix("Value error, ")
    return None


@pytest.mark.parametrize(
    "fields",
    [{"cron": cron} for cron in CRONS]
    + [{"cron": "@daily", "timezone": zone} for zone in ZONES]
    + [{"cron": "@daily", "input": value} for value in INPUTS],
)
def test_the_flow_model_and_the_runner_accept_and_refuse_the_same_schedules(
    fields: dict[str, Any],
) -> None:
    declared = refusal(lambda: Schedule(**fields))
    kept = refusal(lambda: ScheduleSpec(name="s", flow="f", version=None, **fields))
    assert declared == kept


# --- schedules a flow declares ------------------------------------------------------------------


def test_declared_schedules_are_named_after_the_flow_and_start_its_version() -> None:
    definition = (
        Flow(
            "report",
            version="3",
            schedules=[
                Schedule(name="nightly", cron="0 2 * * *", timezone="Europe/Berlin", input=[1]),
                Schedule(cron="0 * * * *", enabled=False, overlap="buffer_one", catch_up="all"),
            ],
        )
        .pass_("Done")
        .build()
    )
    nightly, hourly = declared_schedules(definition)
    assert (nightly.index, nightly.key, nightly.enabled) == (0, "nightly", True)
    assert nightly.spec == ScheduleSpec(
        "report:nightly", "report", "3", "0 2 * * *", "Europe/Berlin", input=[1]
    )
    assert (hourly.index, hourly.key, hourly.enabled) == (1, "1", False)
    assert hourly.spec.name == "report:1" and hourly.spec.paused
    assert (hourly.spec.overlap, hourly.spec.catch_up) == ("buffer_one", "all")
