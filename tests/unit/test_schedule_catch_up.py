"""Catch-up as arithmetic: which fires a tick acts on, and what ``next_fire`` promises."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rustyflower.core.schedules import (
    DueFires,
    ScheduleSpec,
    due_fires,
    next_fire,
)
from rustyflower.core.schedules.firing import MISSED_COUNT_LIMIT

T0 = datetime(2024, 1, 15, 10, 0, 30, tzinfo=UTC)  # a Monday, 30 s after 10:00
TICK = timedelta(microseconds=1)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def every_15(catch_up: str = "latest", **options: object) -> ScheduleSpec:
    return ScheduleSpec("e", "f", None, "*/15 * * * *", catch_up=catch_up, **options)


def quarter_hours(first: str, last: str) -> list[datetime]:
    found, moment = [], at(first)
    while moment <= at(last):
        found.append(moment)
        moment += timedelta(minutes=15)
    return found


@pytest.mark.parametrize(
    ("catch_up", "expected"),
    [
        # 10:30 ... 13:15 passed while no scheduler ran; 13:15 is 5 minutes old at 13:20
        ("none", DueFires([], at("2024-01-15T13:19:00Z") - TICK, missed=12)),
        ("latest", DueFires([at("2024-01-15T13:15:00Z")], at("2024-01-15T13:15:00Z"), 11)),
        (
            "all",
            DueFires(
                quarter_hours("2024-01-15T10:30:00Z", "2024-01-15T13:15:00Z"),
                at("2024-01-15T13:15:00Z"),
            ),
        ),
    ],
)
def test_three_hours_of_downtime_under_each_policy(catch_up: str, expected: DueFires) -> None:
    cursor = at("2024-01-15T10:15:00Z")  # the last fire seen before the downtime
    assert due_fires(every_15(catch_up), cursor, at("2024-01-15T13:20:00Z")) == expected


def test_a_fire_within_the_grace_is_on_time_even_for_catch_up_none() -> None:
    due = due_fires(every_15("none"), T0, at("2024-01-15T13:15:20Z"))
    assert due == DueFires([at("2024-01-15T13:15:00Z")], at("2024-01-15T13:15:00Z"), 12)
    late = due_fires(every_15("none"), T0, at("2024-01-15T13:15:20Z"), misfire_grace=10)
    assert late.fires == [] and late.missed == 13


def test_catch_up_all_is_capped_per_tick_and_goes_on_from_the_cursor() -> None:
    minutely = ScheduleSpec("m", "f", None, "* * * * *", catch_up="all")
    now = T0 + timedelta(hours=3)
    first = due_fires(minutely, T0, now)
    assert len(first.fires) == 100 and first.more_due
    assert (first.fires[0], first.cursor) == (at("2024-01-15T10:01:00Z"), first.fires[-1])
    second = due_fires(minutely, first.cursor, now)
    assert len(second.fires) == 80 and not second.more_due
    assert second.cursor == at("2024-01-15T13:00:00Z")
    assert due_fires(minutely, second.cursor, now) == DueFires([], second.cursor)
    assert len(due_fires(minutely, T0, now, max_catch_up=500).fires) == 180


def test_counting_missed_fires_stops_at_the_limit() -> None:
    minutely = ScheduleSpec("m", "f", None, "* * * * *", catch_up="latest")
    due = due_fires(minutely, T0, T0 + timedelta(days=8))
    assert (due.missed, due.more_missed) == (MISSED_COUNT_LIMIT, True)
    assert due.fires == [at("2024-01-23T10:00:00Z")]


def test_nothing_due_leaves_the_cursor_where_it_was() -> None:
    for catch_up in ("none", "latest", "all"):
        assert due_fires(every_15(catch_up), T0, at("2024-01-15T10:14:59Z")) == DueFires([], T0)


def test_next_fire_after_downtime_shows_what_a_tick_will_do() -> None:
    now = at("2024-01-15T13:20:00Z")  # no scheduler ran since 10:00:30
    assert next_fire(every_15("none"), T0, now) == at("2024-01-15T13:30:00Z")
    assert next_fire(every_15("latest"), T0, now) == at("2024-01-15T13:15:00Z")
    assert next_fire(every_15("all"), T0, now) == at("2024-01-15T10:15:00Z")
    assert next_fire(every_15(paused=True), T0, now) is None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["*/15 * * * *", "0 * * * *", "30 2 * * *", "0 9 * * 1-5"]),
    st.sampled_from(["UTC", "Europe/Berlin"]),
    st.sampled_from(["none", "latest", "all"]),
    st.integers(0, 3 * 24 * 60 * 60),
    st.integers(0, 120),
)
def test_next_fire_is_the_first_fire_a_tick_will_start(
    cron: str, zone: str, catch_up: str, downtime: int, grace: int
) -> None:
    spec = dataclasses.replace(every_15(catch_up), cron=cron, timezone=zone)
    cursor = at("2024-03-30T22:00:00Z")  # across the spring-forward change in Berlin
    now = cursor + timedelta(seconds=downtime)
    promised = next_fire(spec, cursor, now, misfire_grace=grace)
    assert promised is not None
    due = due_fires(spec, cursor, now, misfire_grace=grace)
    if promised <= now:  # due now: this tick starts it first
        assert due.fires[0] == promised
    else:  # nothing is due before it, and a tick at its time starts it
        assert due.fires == []
        later = due_fires(spec, due.cursor, promised, misfire_grace=grace)
        assert later.fires == [promised]
