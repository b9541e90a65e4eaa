"""Fire times: cron read as wall-clock time in a zone, through daylight saving time, in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rustyflower.core.schedules import (
    fire_times,
    fires_between,
    latest_fire,
    scheduled_instance_id,
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def z(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_a_daily_berlin_schedule_follows_daylight_saving_time() -> None:
    def fires(after: str, count: int) -> list[str]:
        return [z(f) for f in islice(fire_times("0 9 * * *", "Europe/Berlin", at(after)), count)]

    assert fires("2024-01-15T00:00:00Z", 1) == ["2024-01-15T08:00:00Z"]  # winter: UTC+1
    assert fires("2024-07-15T00:00:00Z", 1) == ["2024-07-15T07:00:00Z"]  # summer: UTC+2
    # spring forward on Sunday 2024-03-31, fall back on Sunday 2024-10-27
    assert fires("2024-03-30T00:00:00Z", 2) == ["2024-03-30T08:00:00Z", "2024-03-31T07:00:00Z"]
    assert fires("2024-10-26T00:00:00Z", 2) == ["2024-10-26T07:00:00Z", "2024-10-27T08:00:00Z"]


def test_wall_times_skipped_or_repeated_by_dst_fire_once_or_keep_the_rhythm() -> None:
    def fires(cron: str, after: str, count: int) -> list[str]:
        return [z(f) for f in islice(fire_times(cron, "Europe/Berlin", at(after)), count)]

    # 02:30 does not exist on 2024-03-31: it fires once, shifted to 03:30 summer time
    assert fires("30 2 * * *", "2024-03-30T12:00:00Z", 2) == [
        "2024-03-31T01:30:00Z",
        "2024-04-01T00:30:00Z",
    ]
    # 02:30 happens twice on 2024-10-27: a fixed-hour schedule fires at the first one only
    assert fires("30 2 * * *", "2024-10-26T12:00:00Z", 2) == [
        "2024-10-27T00:30:00Z",
        "2024-10-28T01:30:00Z",
    ]
    # an interval schedule keeps firing every 30 real minutes through both changes
    spring = fires("*/30 * * * *", "2024-03-30T23:45:00Z", 5)
    autumn = fires("*/30 * * * *", "2024-10-26T23:45:00Z", 7)
    for series in (spring, autumn):
        steps = {at(b) - at(a) for a, b in pairwise(series)}
        assert steps == {timedelta(minutes=30)}, series
    assert autumn[0] == "2024-10-27T00:00:00Z" and autumn[-1] == "2024-10-27T03:00:00Z"
    # starting inside the repeated hour loses nothing and repeats nothing
    assert fires("*/30 * * * *", "2024-10-27T00:10:00Z", 3) == [
        "2024-10-27T00:30:00Z",
        "2024-10-27T01:00:00Z",
        "2024-10-27T01:30:00Z",
    ]


def test_a_half_hour_shift_is_handled_like_a_whole_one() -> None:
    # Lord Howe Island moves its clocks by 30 minutes: 02:00 -> 02:30 on 2024-10-06,
    # back from 02:00 to 01:30 on 2024-04-07 (UTC+11 in summer, UTC+10:30 in winter)
    def fires(cron: str, after: str, count: int) -> list[str]:
        return [z(f) for f in islice(fire_times(cron, "Australia/Lord_Howe", at(after)), count)]

    assert fires("15 2 * * *", "2024-10-05T00:00:00Z", 2) == [
        "2024-10-05T15:45:00Z",  # 02:15 does not exist on 10-06: shifted to 02:45 +11:00
        "2024-10-06T15:15:00Z",  # 02:15 +11:00 on 10-07
    ]
    assert fires("45 1 * * *", "2024-04-06T00:00:00Z", 2) == [
        "2024-04-06T14:45:00Z",  # 01:45 +11:00 on 04-07, the first of its two
        "2024-04-07T15:15:00Z",  # 01:45 +10:30 on 04-08
    ]


def test_instance_ids_are_deterministic() -> None:
    fire = datetime(2024, 3, 31, 9, 0, tzinfo=UTC)
    assert scheduled_instance_id("report:nightly", fire) == "report:nightly@2024-03-31T09:00:00Z"


def test_fires_between_stops_at_the_limit_and_says_more_were_left() -> None:
    after, until = at("2024-01-15T10:00:00Z"), at("2024-01-15T11:00:00Z")
    fires, more = fires_between("*/15 * * * *", "UTC", after, until, 3)
    assert [z(f) for f in fires] == [
        "2024-01-15T10:15:00Z",
        "2024-01-15T10:30:00Z",
        "2024-01-15T10:45:00Z",
    ]
    assert more
    fires, more = fires_between("*/15 * * * *", "UTC", after, until, 4)
    assert len(fires) == 4 and z(fires[-1]) == "2024-01-15T11:00:00Z" and not more
    assert latest_fire("*/15 * * * *", "UTC", after, until) == until
    assert latest_fire("0 0 1 1 *", "UTC", after, until) is None
    # a yearly fire is found however far back it lies
    assert latest_fire("0 0 1 1 *", "UTC", at("2020-06-01T00:00:00Z"), until) == at(
        "2024-01-01T00:00:00Z"
    )


# --- properties -----------------------------------------------------------------------------

CRONS = (
    "*/15 * * * *",
    "0 * * * *",
    "0 9 * * *",
    "30 2 * * *",
    "15 1,2,3 * * 0",
    "0 9 * * 1-5",
    "0 0 L * *",
    "45 23 * * 5#2",
)
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata")
# around the 2024 changes of these zones, where the arithmetic is hard, and anywhere else
NEAR_CHANGES = [
    at(text)
    for text in (
        "2024-03-10T06:00:00Z",
        "2024-03-31T00:30:00Z",
        "2024-04-06T14:00:00Z",
        "2024-10-05T15:00:00Z",
        "2024-10-27T00:30:00Z",
        "2024-11-03T05:30:00Z",
    )
]
moments = st.one_of(
    st.builds(
        lambda base, minutes: base + timedelta(minutes=minutes),
        st.sampled_from(NEAR_CHANGES),
        st.integers(-300, 300),
    ),
    st.datetimes(datetime(2023, 1, 1), datetime(2026, 1, 1), timezones=st.just(UTC)),
)
PROPERTIES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTIES
@given(st.sampled_from(CRONS), st.sampled_from(ZONES), moments)
def test_fire_times_rise_strictly_and_resume_from_any_of_them(
    cron: str, zone: str, after: datetime
) -> None:
    fires = list(islice(fire_times(cron, zone, after), 6))
    assert len(fires) == 6
    assert all(fire.tzinfo is UTC for fire in fires)
    assert after < fires[0] and all(a < b for a, b in pairwise(fires))
    # starting again from any fire (a scheduler's cursor) loses nothing, repeats nothing
    for index, fire in enumerate(fires[:-1]):
        assert list(islice(fire_times(cron, zone, fire), 5 - index)) == fires[index + 1 :]


@PROPERTIES
@given(st.sampled_from(CRONS), st.sampled_from(ZONES), moments, st.integers(0, 3 * 24 * 60))
def test_between_and_latest_agree_with_the_fire_times(
    cron: str, zone: str, after: datetime, minutes: int
) -> None:
    until = after + timedelta(minutes=minutes)
    expected = []
    for fire in fire_times(cron, zone, after):
        if fire > until:
            break
        expected.append(fire)
    assert fires_between(cron, zone, after, until, 10_000) == (expected, False)
    assert latest_fire(cron, zone, after, until) == (expected[-1] if expected else None)
