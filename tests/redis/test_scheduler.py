"""The cron scheduler against real servers: the store, firing, catch-up, overlap, leadership.

The pure rules and arithmetic (cron, daylight saving time, catch-up) are tested without a
server in tests/unit/test_schedule_*.py.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from rustyflower.adapters.redis.conductor import Conductor
from rustyflower.adapters.redis.keys import Keyspace
from rustyflower.adapters.redis.schedule_store import (
    ScheduleExistsError,
    ScheduleStore,
    UnknownScheduleError,
)
from rustyflower.adapters.redis.scheduler import Scheduler
from rustyflower.adapters.redis.store import RedisStore
from rustyflower.core.builder import Flow, Schedule
from rustyflower.core.errors import RustyFlowerError
from rustyflower.core.schedules import ScheduleSpec
from tests.redis.conftest import Runtime
from tests.redis.servers import free_port

pytestmark = pytest.mark.emulator

T0 = datetime(2024, 1, 15, 10, 0, 30, tzinfo=UTC)  # a Monday, 30 s after 10:00


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def z(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def instant_flow(name: str = "tick", version: str = "1"):
    """Finishes as it starts (only a Pass state): never overlaps."""
    return Flow(name, version=version).pass_("Done").build()


def waiting_flow(name: str = "waits"):
    """Stays running until it receives the event 'go'."""
    return Flow(name).wait_for_event("Wait", "go").build()


def every_15(name: str, flow: str, **options) -> ScheduleSpec:
    return ScheduleSpec(name=name, flow=flow, version=None, cron="*/15 * * * *", **options)


@dataclass
class Bench:
    runtime: Runtime
    clock: FakeClock
    schedules: ScheduleStore
    scheduler: Scheduler

    def tick_at(self, moment: datetime) -> list[str]:
        self.clock.now = moment
        return self.scheduler.tick()

    def state(self, name: str) -> dict:
        view = next(v for v in self.schedules.list() if v.spec.name == name)
        return view.as_dict()

    def other_scheduler(self, holder: str, **options) -> Scheduler:
        """A second scheduler process: its own connection, store and conductor."""
        client = redis.Redis.from_url(self.runtime.server.url)
        store = RedisStore(client, self.runtime.keys)
        schedules = ScheduleStore(client, self.runtime.keys, clock=self.clock)
        options.setdefault("clock", self.clock)
        return Scheduler(store, Conductor(store), schedules, holder=holder, **options)


@pytest.fixture
def bench(runtime: Runtime) -> Iterator[Bench]:
    clock = FakeClock(T0)
    schedules = ScheduleStore(runtime.client, runtime.keys, clock=clock)
    scheduler = Scheduler(runtime.store, runtime.conductor, schedules, holder="one", clock=clock)
    yield Bench(runtime, clock, schedules, scheduler)


def running(runtime: Runtime) -> list[str]:
    return sorted(info.instance_id for info in runtime.store.list_instances(status="running"))


# --- the store --------------------------------------------------------------------------------


def test_add_get_list_pause_resume_remove_and_their_errors(bench: Bench) -> None:
    schedules = bench.schedules
    spec = ScheduleSpec(
        "hourly", "tick", None, "0 * * * *", "Europe/Berlin", input={"a": 1}, overlap="allow"
    )
    schedules.add(spec)
    assert schedules.get("hourly") == spec
    with pytest.raises(ScheduleExistsError, match="'hourly' exists already") as exists:
        schedules.add(spec)
    assert isinstance(exists.value, ValueError)

    (view,) = schedules.list()
    assert view.spec == spec and view.last_fire is None and view.last_instance_id is None
    assert view.next_fire == at("2024-01-15T11:00:00Z")

    schedules.pause("hourly")
    schedules.pause("hourly")  # idempotent
    assert schedules.get("hourly").paused
    assert schedules.list()[0].next_fire is None
    schedules.resume("hourly")
    assert not schedules.get("hourly").paused
    assert schedules.list()[0].next_fire == at("2024-01-15T11:00:00Z")

    changed = ScheduleSpec("hourly", "tick", "3", "30 * * * *", "UTC", catch_up="all")
    schedules.add(changed, replace=True)
    assert schedules.get("hourly") == changed
    assert schedules.list()[0].next_fire == at("2024-01-15T10:30:00Z")

    schedules.add(ScheduleSpec("daily", "tick", None, "0 6 * * *"))
    assert [v.spec.name for v in schedules.list()] == ["daily", "hourly"]
    for action in (schedules.get, schedules.pause, schedules.resume, schedules.remove):
        with pytest.raises(UnknownScheduleError, match=r"'nope' \(known: daily, hourly\)") as e:
            action("nope")
        assert isinstance(e.value, LookupError) and isinstance(e.value, RustyFlowerError)
    schedules.remove("hourly")
    schedules.remove("daily")
    assert schedules.list() == []
    with pytest.raises(UnknownScheduleError, match="no schedules yet"):
        schedules.get("hourly")


def test_replacing_a_schedule_keeps_its_history_and_a_new_namesake_starts_afresh(
    bench: Bench,
) -> None:
    bench.runtime.store.register(instant_flow())
    bench.schedules.add(every_15("s", "tick"))
    (started,) = bench.tick_at(at("2024-01-15T10:15:00Z"))
    bench.schedules.add(every_15("s", "tick", input={"new": True}), replace=True)
    view = bench.state("s")
    assert view["last_instance_id"] == started and view["started"] == 1

    bench.schedules.remove("s")
    bench.clock.now = at("2024-01-15T12:01:00Z")
    bench.schedules.add(every_15("s", "tick", catch_up="all"))
    view = bench.state("s")
    assert view["last_instance_id"] is None and view["started"] == 0
    assert bench.tick_at(at("2024-01-15T12:02:00Z")) == []  # nothing before its creation


def test_sync_flow_creates_updates_and_removes_declared_schedules(bench: Bench) -> None:
    first = (
        Flow(
            "report",
            version="1",
            schedules=[
                Schedule(
                    name="nightly", cron="0 2 * * *", timezone="Europe/Berlin", input={"r": 1}
                ),
                Schedule(cron="0 * * * *", enabled=False, overlap="buffer_one", catch_up="all"),
                Schedule(name="weekly", cron="0 6 * * 1"),
            ],
        )
        .pass_("Done")
        .build()
    )
    schedules = bench.schedules
    schedules.add(ScheduleSpec("report:manual", "report", None, "0 12 * * *"))
    assert schedules.sync_flow(first) == ["report:nightly", "report:1", "report:weekly"]
    nightly = schedules.get("report:nightly")
    assert (nightly.flow, nightly.version, nightly.timezone) == ("report", "1", "Europe/Berlin")
    assert nightly.input == {"r": 1} and nightly.catch_up == "latest" and not nightly.paused
    hourly = schedules.get("report:1")
    assert hourly.paused and hourly.overlap == "buffer_one" and hourly.catch_up == "all"

    schedules.pause("report:weekly")  # an operator's pause survives a re-sync
    second = (
        Flow(
            "report",
            version="2",
            schedules=[
                Schedule(name="nightly", cron="0 3 * * *", timezone="Europe/Berlin"),
                Schedule(name="weekly", cron="0 6 * * 1"),
            ],
        )
        .pass_("Done")
        .build()
    )
    assert schedules.sync_flow(second) == ["report:nightly", "report:weekly"]
    names = [view.spec.name for view in schedules.list()]
    assert names == ["report:manual", "report:nightly", "report:weekly"]  # report:1 is gone
    assert schedules.get("report:nightly").cron == "0 3 * * *"
    assert schedules.get("report:nightly").version == "2"
    assert schedules.get("report:weekly").paused
    declared = {v.spec.name: v.declared_by for v in schedules.list()}
    assert declared == {
        "report:manual": None,
        "report:nightly": "report",
        "report:weekly": "report",
    }


# --- firing ---------------------------------------------------------------------------------


def test_a_scheduled_run_is_listed_with_its_deterministic_id_and_input(bench: Bench) -> None:
    store = bench.runtime.store
    store.register(instant_flow())
    bench.schedules.add(every_15("tick:every15", "tick", input={"region": "eu"}))
    assert bench.tick_at(at("2024-01-15T10:14:59Z")) == []
    assert bench.tick_at(at("2024-01-15T10:15:00Z")) == ["tick:every15@2024-01-15T10:15:00Z"]
    assert bench.tick_at(at("2024-01-15T10:15:01Z")) == []  # once per fire
    (info,) = store.list_instances(flow="tick")
    assert info.instance_id == "tick:every15@2024-01-15T10:15:00Z"
    assert (info.flow, info.version, info.status) == ("tick", "1", "succeeded")
    assert store.load(info.instance_id).state.input == {"region": "eu"}
    view = bench.state("tick:every15")
    assert view["last_fire"] == "2024-01-15T10:15:00Z"
    assert view["last_instance_id"] == info.instance_id
    assert view["next_fire"] == "2024-01-15T10:30:00Z"
    assert view["started"] == 1


def test_the_berlin_schedule_starts_runs_at_the_right_utc_times_across_dst(bench: Bench) -> None:
    bench.runtime.store.register(instant_flow())
    bench.clock.now = at("2024-03-29T12:00:00Z")
    bench.schedules.add(ScheduleSpec("morning", "tick", None, "0 9 * * *", "Europe/Berlin"))
    assert bench.tick_at(at("2024-03-30T07:59:59Z")) == []
    assert bench.tick_at(at("2024-03-30T08:00:00Z")) == ["morning@2024-03-30T08:00:00Z"]
    assert bench.tick_at(at("2024-03-31T06:59:59Z")) == []
    assert bench.tick_at(at("2024-03-31T07:00:00Z")) == ["morning@2024-03-31T07:00:00Z"]


def test_version_none_starts_the_latest_registered_at_fire_time(bench: Bench) -> None:
    store = bench.runtime.store
    store.register(instant_flow(version="1"))
    bench.schedules.add(every_15("v", "tick"))
    (first,) = bench.tick_at(at("2024-01-15T10:15:00Z"))
    store.register(instant_flow(version="2"))
    (second,) = bench.tick_at(at("2024-01-15T10:30:00Z"))
    assert [store.info(i).version for i in (first, second)] == ["1", "2"]


def test_a_missing_flow_is_logged_and_skipped_and_the_others_still_fire(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    bench.runtime.store.register(instant_flow())
    bench.schedules.add(every_15("broken", "nosuchflow"))
    bench.schedules.add(every_15("fine", "tick"))
    with caplog.at_level(logging.ERROR, "rustyflower.scheduler"):
        started = bench.tick_at(at("2024-01-15T10:15:00Z"))
    assert started == ["fine@2024-01-15T10:15:00Z"]
    assert "unknown flow 'nosuchflow'" in caplog.text
    broken = bench.state("broken")
    assert broken["failed"] == 1 and "unknown flow 'nosuchflow'" in broken["last_error"]
    assert broken["next_fire"] == "2024-01-15T10:30:00Z"  # the fire is not retried forever
    bench.runtime.store.register(instant_flow("nosuchflow"))
    started = bench.tick_at(at("2024-01-15T10:30:00Z"))
    assert "broken@2024-01-15T10:30:00Z" in started
    assert bench.state("broken")["last_error"] is None


# --- catch-up after downtime ----------------------------------------------------------------

DOWNTIME_FIRES = [
    f"2024-01-15T{hour:02d}:{minute:02d}:00Z"
    for hour in (10, 11, 12, 13)
    for minute in (0, 15, 30, 45)
    if "10:30" <= f"{hour:02d}:{minute:02d}" <= "13:15"
]


@pytest.mark.parametrize(
    ("catch_up", "expected", "missed"),
    [
        ("none", [], 12),
        ("latest", ["2024-01-15T13:15:00Z"], 11),
        ("all", DOWNTIME_FIRES, 0),
    ],
)
def test_catch_up_after_three_hours_of_downtime(
    bench: Bench, catch_up: str, expected: list[str], missed: int
) -> None:
    assert len(DOWNTIME_FIRES) == 12
    bench.runtime.store.register(instant_flow())
    bench.schedules.add(every_15("c", "tick", catch_up=catch_up))
    assert bench.tick_at(at("2024-01-15T10:15:00Z")) == ["c@2024-01-15T10:15:00Z"]
    # no scheduler runs from 10:15 until 13:20: fires 10:30 ... 13:15 pass unseen
    started = bench.tick_at(at("2024-01-15T13:20:00Z"))
    assert started == [f"c@{fire}" for fire in expected]
    assert bench.state("c")["missed"] == missed
    assert bench.tick_at(at("2024-01-15T13:25:00Z")) == []
    assert bench.tick_at(at("2024-01-15T13:30:00Z")) == ["c@2024-01-15T13:30:00Z"]
    assert len(bench.runtime.store.list_instances(flow="tick")) == 2 + len(expected)


def test_catch_up_none_still_starts_a_fire_that_is_only_seconds_late(bench: Bench) -> None:
    bench.runtime.store.register(instant_flow())
    bench.schedules.add(every_15("n", "tick", catch_up="none"))
    started = bench.tick_at(at("2024-01-15T13:15:20Z"))  # 13:15 is 20 s old: on time
    assert started == ["n@2024-01-15T13:15:00Z"]
    assert bench.state("n")["missed"] == 12


def test_catch_up_all_starts_at_most_100_per_tick_and_says_so(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    bench.runtime.store.register(instant_flow())
    bench.schedules.add(ScheduleSpec("m", "tick", None, "* * * * *", catch_up="all"))
    bench.clock.now = T0 + timedelta(hours=3)  # 180 minutely fires are due
    with caplog.at_level(logging.WARNING, "rustyflower.scheduler"):
        first = bench.scheduler.tick()
    assert len(first) == 100 and "more than 100 fires are due" in caplog.text
    assert first[0] == "m@2024-01-15T10:01:00Z" and first[-1] == "m@2024-01-15T11:40:00Z"
    second = bench.scheduler.tick()
    assert len(second) == 80 and second[-1] == "m@2024-01-15T13:00:00Z"
    assert bench.scheduler.tick() == []
    assert len(bench.runtime.store.list_instances(flow="tick", limit=500)) == 180


def test_resuming_does_not_replay_fires_missed_while_paused(bench: Bench) -> None:
    bench.runtime.store.register(instant_flow())
    bench.schedules.add(every_15("p", "tick", catch_up="all"))
    assert bench.tick_at(at("2024-01-15T10:15:00Z")) == ["p@2024-01-15T10:15:00Z"]
    bench.clock.now = at("2024-01-15T10:20:00Z")
    bench.schedules.pause("p")
    assert bench.tick_at(at("2024-01-15T10:30:00Z")) == []
    assert bench.tick_at(at("2024-01-15T12:00:00Z")) == []
    bench.clock.now = at("2024-01-15T12:07:00Z")
    bench.schedules.resume("p")
    assert bench.state("p")["next_fire"] == "2024-01-15T12:15:00Z"
    assert bench.tick_at(at("2024-01-15T12:10:00Z")) == []
    assert bench.tick_at(at("2024-01-15T12:15:00Z")) == ["p@2024-01-15T12:15:00Z"]


def test_a_schedule_added_paused_fires_only_after_resume(bench: Bench) -> None:
    bench.runtime.store.register(instant_flow())
    bench.schedules.add(every_15("q", "tick", paused=True, catch_up="all"))
    assert bench.tick_at(at("2024-01-15T11:00:00Z")) == []
    bench.schedules.add(every_15("q", "tick", catch_up="all"), replace=True)  # resume by replace
    assert bench.tick_at(at("2024-01-15T11:05:00Z")) == []
    assert bench.tick_at(at("2024-01-15T11:15:00Z")) == ["q@2024-01-15T11:15:00Z"]


# --- overlap --------------------------------------------------------------------------------


def test_overlap_skip_skips_fires_while_the_previous_run_runs(bench: Bench) -> None:
    runtime = bench.runtime
    runtime.store.register(waiting_flow())
    bench.schedules.add(every_15("s", "waits", overlap="skip"))
    (first,) = bench.tick_at(at("2024-01-15T10:15:00Z"))
    assert bench.tick_at(at("2024-01-15T10:30:00Z")) == []
    view = bench.state("s")
    assert view["skipped"] == 1 and view["last_instance_id"] == first
    runtime.conductor.signal(first, "go")
    assert runtime.store.info(first).status == "succeeded"
    assert bench.tick_at(at("2024-01-15T10:45:00Z")) == ["s@2024-01-15T10:45:00Z"]
    assert running(runtime) == ["s@2024-01-15T10:45:00Z"]


def test_overlap_allow_starts_while_the_previous_run_runs(bench: Bench) -> None:
    bench.runtime.store.register(waiting_flow())
    bench.schedules.add(every_15("a", "waits", overlap="allow"))
    bench.tick_at(at("2024-01-15T10:15:00Z"))
    bench.tick_at(at("2024-01-15T10:30:00Z"))
    assert running(bench.runtime) == ["a@2024-01-15T10:15:00Z", "a@2024-01-15T10:30:00Z"]


def test_overlap_buffer_one_starts_one_pending_fire_when_the_previous_run_ends(
    bench: Bench,
) -> None:
    runtime = bench.runtime
    runtime.store.register(waiting_flow())
    bench.schedules.add(every_15("b", "waits", overlap="buffer_one"))
    (first,) = bench.tick_at(at("2024-01-15T10:15:00Z"))
    assert bench.tick_at(at("2024-01-15T10:30:00Z")) == []  # buffered
    assert bench.state("b")["buffered_fire"] == "2024-01-15T10:30:00Z"
    assert bench.tick_at(at("2024-01-15T10:45:00Z")) == []  # one is buffered: skipped
    assert bench.tick_at(at("2024-01-15T10:50:00Z")) == []  # still running
    view = bench.state("b")
    assert view["skipped"] == 1 and view["buffered_fire"] == "2024-01-15T10:30:00Z"

    runtime.conductor.signal(first, "go")
    assert bench.tick_at(at("2024-01-15T10:52:00Z")) == ["b@2024-01-15T10:30:00Z"]
    assert bench.state("b")["buffered_fire"] is None
    assert bench.tick_at(at("2024-01-15T11:00:00Z")) == []  # buffered behind 10:30's run
    runtime.conductor.signal("b@2024-01-15T10:30:00Z", "go")
    assert bench.tick_at(at("2024-01-15T11:01:00Z")) == ["b@2024-01-15T11:00:00Z"]
    assert running(runtime) == ["b@2024-01-15T11:00:00Z"]


def test_catch_up_all_runs_through_the_overlap_policy(bench: Bench) -> None:
    bench.runtime.store.register(waiting_flow())
    bench.schedules.add(every_15("x", "waits", catch_up="all", overlap="skip"))
    started = bench.tick_at(at("2024-01-15T11:20:00Z"))  # 10:15 ... 11:15 are due
    assert started == ["x@2024-01-15T10:15:00Z"]
    assert bench.state("x")["skipped"] == 4


# --- leadership and double starts -----------------------------------------------------------


def test_only_the_leader_starts_runs(bench: Bench) -> None:
    bench.runtime.store.register(instant_flow())
    bench.schedules.add(every_15("l", "tick"))
    other = bench.other_scheduler("two")
    bench.clock.now = at("2024-01-15T10:15:00Z")
    assert bench.scheduler.tick() == ["l@2024-01-15T10:15:00Z"]
    assert other.tick() == [] and not other.is_leader()
    bench.clock.now = at("2024-01-15T10:30:00Z")
    assert other.tick() == []
    assert bench.scheduler.is_leader()
    assert bench.scheduler.tick() == ["l@2024-01-15T10:30:00Z"]
    lease = bench.runtime.client.get(bench.runtime.keys.scheduler_lease())
    assert lease == b"one"


def test_another_scheduler_takes_over_within_the_lease_when_the_leader_stops(
    bench: Bench,
) -> None:
    bench.runtime.store.register(instant_flow())
    bench.schedules.add(every_15("t", "tick"))
    leader = bench.other_scheduler("first", lease_seconds=0.3)
    follower = bench.other_scheduler("second", lease_seconds=0.3)
    assert leader.tick() == [] and leader.is_leader()
    stopped = time.monotonic()  # the leader stops renewing here (it hangs or dies)
    assert follower.tick() == [] and not follower.is_leader()
    bench.clock.now = at("2024-01-15T10:15:00Z")
    started: list[str] = []
    while not follower.is_leader() and time.monotonic() - stopped < 2:
        started = follower.tick()
        time.sleep(0.02)
    took_over = time.monotonic() - stopped
    assert follower.is_leader() and 0.25 < took_over < 0.3 + 0.3
    assert started == ["t@2024-01-15T10:15:00Z"]
    assert not leader.is_leader()  # its own view of the lease ran out too
    assert leader.tick() == [] and not leader.is_leader()


def test_release_hands_over_at_once(bench: Bench) -> None:
    first = bench.other_scheduler("first")
    second = bench.other_scheduler("second")
    assert first.tick() == [] and first.is_leader()
    assert second.tick() == [] and not second.is_leader()
    first.release()
    assert not first.is_leader()
    second.tick()
    assert second.is_leader()


def test_two_schedulers_at_the_same_fire_time_never_create_two_instances(bench: Bench) -> None:
    runtime = bench.runtime
    runtime.store.register(instant_flow())
    bench.schedules.add(every_15("d", "tick", catch_up="all"))
    state_key = runtime.keys.schedule_state()
    before = runtime.client.hgetall(state_key)
    assert bench.tick_at(at("2024-01-15T10:45:00Z")) == [
        "d@2024-01-15T10:15:00Z",
        "d@2024-01-15T10:30:00Z",
        "d@2024-01-15T10:45:00Z",
    ]
    # split brain: the lease ran out mid-tick, and a second scheduler read the state the
    # first one had not written yet; it decides to start the very same fires
    runtime.client.delete(state_key)
    if before:
        runtime.client.hset(state_key, mapping=before)
    runtime.client.delete(runtime.keys.scheduler_lease())
    other = bench.other_scheduler("two")
    assert other.tick() == []  # each fire's instance exists: adopted, not started again
    ids = [info.instance_id for info in runtime.store.list_instances(flow="tick")]
    assert sorted(ids) == [
        "d@2024-01-15T10:15:00Z",
        "d@2024-01-15T10:30:00Z",
        "d@2024-01-15T10:45:00Z",
    ]
    assert bench.state("d")["last_instance_id"] == "d@2024-01-15T10:45:00Z"


def test_concurrent_ticks_of_many_believed_leaders_start_each_fire_once(bench: Bench) -> None:
    runtime = bench.runtime
    runtime.store.register(instant_flow())
    for index in range(3):
        bench.schedules.add(every_15(f"c{index}", "tick", catch_up="all", overlap="allow"))
    bench.clock.now = at("2024-01-15T12:00:00Z")  # 8 fires due per schedule
    # the same holder name makes every one of them believe it leads: the worst case
    schedulers = [bench.other_scheduler("same") for _ in range(4)]
    barrier = threading.Barrier(len(schedulers))
    errors: list[BaseException] = []

    def tick(scheduler: Scheduler) -> None:
        try:
            barrier.wait()
            scheduler.tick()
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=tick, args=(s,)) for s in schedulers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    ids = [info.instance_id for info in runtime.store.list_instances(flow="tick")]
    assert len(ids) == len(set(ids)) == 24
    assert {i.split("@")[0] for i in ids} == {"c0", "c1", "c2"}


# --- the loop -------------------------------------------------------------------------------


def test_run_ticks_until_stopped_and_releases_the_lease(bench: Bench) -> None:
    runtime = bench.runtime
    runtime.store.register(instant_flow())
    bench.schedules.add(every_15("r", "tick"))
    bench.clock.now = at("2024-01-15T10:15:00Z")
    stop = threading.Event()
    thread = threading.Thread(target=bench.scheduler.run, args=(stop, 0.01))
    thread.start()
    deadline = time.monotonic() + 10
    while not runtime.store.exists("r@2024-01-15T10:15:00Z") and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    assert runtime.store.exists("r@2024-01-15T10:15:00Z")
    assert runtime.client.get(runtime.keys.scheduler_lease()) is None
    assert not bench.scheduler.is_leader()


def test_run_survives_redis_being_unreachable(caplog: pytest.LogCaptureFixture) -> None:
    # no client-side retries (redis-py 8 retries 10 times by default, ~4 s per call)
    client = redis.Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    keys = Keyspace(prefix="down")
    store = RedisStore(client, keys)
    clock = FakeClock(T0)
    scheduler = Scheduler(
        store, Conductor(store), ScheduleStore(client, keys, clock=clock), holder="h", clock=clock
    )
    with pytest.raises(redis.ConnectionError):
        scheduler.tick()  # a tick lets Redis errors through: the loop handles them
    stop = threading.Event()
    with caplog.at_level(logging.WARNING, "rustyflower.scheduler"):
        thread = threading.Thread(target=scheduler.run, args=(stop, 0.01))
        thread.start()
        time.sleep(0.3)
        assert thread.is_alive()
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert "Redis unavailable" in caplog.text
    assert not scheduler.is_leader()


def test_next_fire_after_downtime_shows_what_the_scheduler_will_do(bench: Bench) -> None:
    for catch_up in ("none", "latest", "all"):
        bench.schedules.add(every_15(catch_up, "tick", catch_up=catch_up))
    bench.clock.now = at("2024-01-15T13:20:00Z")  # no scheduler ran since 10:00:30
    next_fire = {view.spec.name: z(view.next_fire) for view in bench.schedules.list()}
    assert next_fire == {
        "none": "2024-01-15T13:30:00Z",  # the missed ones are dropped
        "latest": "2024-01-15T13:15:00Z",  # due now
        "all": "2024-01-15T10:15:00Z",  # due now, the first of many
    }


def test_a_damaged_record_does_not_stop_the_others(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = bench.runtime
    runtime.store.register(instant_flow())
    bench.schedules.add(every_15("good", "tick"))
    bench.schedules.add(every_15("stateless", "tick"))
    runtime.client.hset(runtime.keys.schedules(), "bad", "{not json")
    runtime.client.hset(runtime.keys.schedule_state(), "stateless", "{not json")
    with caplog.at_level(logging.WARNING, "rustyflower.scheduler"):
        started = bench.tick_at(at("2024-01-15T10:15:00Z"))
    assert started == ["good@2024-01-15T10:15:00Z"]  # a damaged state resumes from now
    assert "schedule bad: a stored schedule is unreadable" in caplog.text
    assert [view.spec.name for view in bench.schedules.list()] == ["good", "stateless"]
    started = bench.tick_at(at("2024-01-15T10:30:00Z"))
    assert started == ["good@2024-01-15T10:30:00Z", "stateless@2024-01-15T10:30:00Z"]
