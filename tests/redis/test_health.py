"""Worker threads survive any error of one round; a worker that cannot work exits non-zero.

Issue 10, item 3: a Redis error other than a disconnect (OOM, an unexpected reply) used to
kill every executor thread and the maintenance thread while the process lived on. Each
thread now reports its rounds (``adapters/redis/health.py``); the heartbeat key in Redis
shows them (``rustyflower workers``); a thread failing past ``failure_limit`` makes the
worker exit non-zero, and its scheduler gives up leadership.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from rustyflower.adapters.redis.conductor import Conductor
from rustyflower.adapters.redis.fleet import fleet_report
from rustyflower.adapters.redis.health import MAX_BACKOFF, Health
from rustyflower.adapters.redis.scheduler import Scheduler, ScheduleStore
from rustyflower.core.builder import Flow
from tests.redis import activities
from tests.redis.activities import check_instance, running_worker, wait_finished, wait_until
from tests.redis.conftest import Runtime

ROOT = Path(__file__).resolve().parents[2]
RUSTYFLOWER = str(Path(sys.executable).with_name("rustyflower"))


# --- the board, without a server ---------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_thread_is_unhealthy_only_after_failing_every_round_past_the_limit() -> None:
    clock = Clock()
    health = Health(failure_limit=10, clock=clock)
    health.register("t")
    health.begin_round("t")
    assert health.end_round("t") == 0.0
    health.begin_round("t")
    assert health.failed(RuntimeError("boom"), "t") == pytest.approx(0.1)
    assert health.end_round("t") == pytest.approx(0.1)  # a failed round stays failed
    clock.now += 9
    health.begin_round("t")
    assert health.failed("again", "t") == pytest.approx(0.2)
    assert health.problems() == []
    clock.now += 2
    (problem,) = health.problems()
    assert "thread t has failed every round for 11 s (limit 10 s)" in problem
    assert "last error: again" in problem
    health.begin_round("t")
    health.end_round("t")  # one good round: healthy again
    assert health.problems() == []
    entry = health.threads()["t"]
    assert (entry.rounds, entry.failures, entry.consecutive_failures) == (3, 2, 0)
    assert entry.last_error == "again" and entry.last_success == clock.now


def test_backoff_doubles_up_to_its_cap_and_a_recovered_call_keeps_the_round_good() -> None:
    health = Health(failure_limit=60)
    waits = [health.failed("x", "t") for _ in range(12)]
    assert waits[:4] == pytest.approx([0.1, 0.2, 0.4, 0.8]) and waits[-1] == MAX_BACKOFF
    health.begin_round("t")
    health.failed("passing", "t")
    health.recovered("t")
    assert health.end_round("t") == 0.0
    assert health.threads()["t"].failing_since is None


def test_a_thread_that_ended_is_a_problem_and_restarts_are_counted() -> None:
    health = Health(failure_limit=60)
    health.register("t")
    health.restarted("t", ValueError("escaped"))
    assert health.threads()["t"].restarts == 1
    health.ended("t")
    assert health.problems() == ["thread t is not running"]


# --- a real worker against a real server --------------------------------------------------------


@pytest.fixture
def rt(runtime: Runtime) -> Iterator[Runtime]:
    activities.configure(runtime.server.url, runtime.keys.prefix)
    yield runtime


def heartbeat(rt: Runtime, name: str) -> dict[str, Any] | None:
    raw = rt.client.get(rt.keys.worker_health(name))
    return json.loads(raw) if raw is not None else None


@contextlib.contextmanager
def replaced_by_a_string(rt: Runtime, keys: list[str]) -> Iterator[None]:
    """Work streams and the timer set hold a string: every command on them gets WRONGTYPE."""
    swap = rt.client.pipeline(transaction=True)  # no moment without the keys
    swap.delete(*keys)
    for key in keys:
        swap.set(key, "not what the worker expects")
    swap.execute()
    try:
        yield
    finally:
        rt.client.delete(*keys)
        rt.store.ensure_groups()


@pytest.mark.emulator
def test_threads_survive_unexpected_replies_and_the_work_goes_on(rt: Runtime) -> None:
    """Regression: a WRONGTYPE reply (any ResponseError) ended the executor threads and
    the maintenance thread for good; the next flows never ran."""
    flow = Flow("steady").task("A", "add", parameters={"a": 1, "b": 1}).wait("W", seconds=1).build()
    rt.store.register(flow)
    broken = [*rt.keys.streams(0), rt.keys.timers(0)]
    seen: list[dict[str, Any]] = []

    def failing_in_heartbeat() -> bool:
        report = heartbeat(rt, "survivor") or {"threads": {}}
        executor = report["threads"].get("rustyflower-executor-0", {})
        if executor.get("failing_since"):
            seen.append(executor)
        return bool(seen)

    with running_worker(rt.server.url, rt.keys, name="survivor", heartbeat_interval=0.2) as w:
        first = rt.conductor.start("steady", {}).instance_id
        assert wait_finished(rt.store, first) == "succeeded"
        with replaced_by_a_string(rt, broken):
            time.sleep(1.5)  # every executor and the timer step fail a few rounds
            with contextlib.suppress(AssertionError):
                wait_until(failing_in_heartbeat, 2, what="the heartbeat to show it")
        second = rt.conductor.start("steady", {}).instance_id
        assert wait_finished(rt.store, second) == "succeeded"
        check_instance(rt.store, second)
        assert all(thread.is_alive() for thread in w._threads)
        threads = w.health.threads()
        assert all(t.failures >= 2 for n, t in threads.items() if "executor" in n), threads
        assert threads["rustyflower-maintenance:timers"].failures >= 2
        assert seen and "WRONGTYPE" in seen[0]["last_error"]
        wait_until(w.healthy, 5, what="every thread to succeed again")
        wait_until(
            lambda: (heartbeat(rt, "survivor") or {}).get("healthy") is True, 5, what="heartbeat"
        )
    assert heartbeat(rt, "survivor") is None  # signed off when it stopped


@pytest.mark.emulator
def test_the_heartbeat_and_the_fleet_report_show_each_worker(rt: Runtime) -> None:
    with (
        running_worker(rt.server.url, rt.keys, name="one", heartbeat_interval=0.2),
        running_worker(rt.server.url, rt.keys, name="two", heartbeat_interval=0.2),
    ):
        wait_until(
            lambda: len(fleet_report(rt.client, rt.keys)["workers"]) == 2, 5, what="two heartbeats"
        )
        report = fleet_report(rt.client, rt.keys)
        one = report["workers"][0]
        assert one["name"] == "one" and one["healthy"] is True and one["problems"] == []
        assert "echo" in one["activities"] and one["pid"] == os.getpid()
        assert set(one["threads"]) >= {
            "rustyflower-executor-0",
            "rustyflower-executor-1",
            "rustyflower-maintenance",
            "rustyflower-maintenance:heartbeat",
            "rustyflower-maintenance:timers",
        }
        wait_until(
            lambda: heartbeat(rt, "one")["threads"]["rustyflower-maintenance:heartbeat"][  # type: ignore[index]
                "last_success"
            ],
            5,
            what="a heartbeat that reports the one before",
        )
        ttl = rt.client.pttl(rt.keys.worker_health("one"))
        assert 0 < ttl <= 10_000  # it expires if the worker stops renewing it
    assert fleet_report(rt.client, rt.keys)["workers"] == []


@contextlib.contextmanager
def out_of_memory(client: redis.Redis) -> Iterator[None]:
    """Every write is refused (maxmemory 1 byte, noeviction) until the block ends."""
    policy = client.config_get("maxmemory-policy")["maxmemory-policy"]
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)
    try:
        yield
    finally:
        client.config_set("maxmemory", 0)
        client.config_set("maxmemory-policy", policy)


def spawn(args: list[str], logs: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.PIPE, stderr=logs.open("wb"), start_new_session=True
    )


def finish(process: subprocess.Popen[bytes], timeout: float) -> int:
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)
        raise


@pytest.mark.emulator
@pytest.mark.slow
def test_a_worker_failing_past_its_limit_exits_non_zero(rt: Runtime, tmp_path: Path) -> None:
    args = [sys.executable, "-m", "tests.redis.worker_main", rt.server.url, rt.keys.prefix]
    args += ["--failure-limit", "1", "--heartbeat-interval", "0.2", "--name", "doomed"]
    process = spawn(args, tmp_path / "worker.log")
    assert process.stdout is not None and process.stdout.readline().strip() == b"ready"
    wait_until(lambda: heartbeat(rt, "doomed"), 5, what="the first heartbeat")
    with out_of_memory(rt.client):
        code = finish(process, 15)
    log = (tmp_path / "worker.log").read_text()
    assert code == 3, log
    unhealthy = [line for line in log.splitlines() if "worker exits unhealthy" in line]
    assert unhealthy, log
    assert "thread rustyflower-maintenance:" in unhealthy[0], unhealthy[0]
    assert "has failed every round" in unhealthy[0]
    assert "OutOfMemoryError" in unhealthy[0]


@pytest.mark.emulator
@pytest.mark.slow
def test_rustyflower_worker_exits_3_and_its_scheduler_lets_go(rt: Runtime, tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RUSTYFLOWER_")},
        "RUSTYFLOWER_REDIS_URL": rt.server.url,
        "RUSTYFLOWER_PREFIX": rt.keys.prefix,
    }
    args = [RUSTYFLOWER, "worker", "--activities", "tests.redis.activities", "--name", "cli-w"]
    args += ["--failure-limit", "1", "--scheduler"]
    process = subprocess.Popen(
        args,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "cli.log").open("wb"),
        start_new_session=True,
    )
    lease = ScheduleStore(rt.client, rt.keys).keys.scheduler_lease()
    wait_until(lambda: rt.client.get(lease) == b"cli-w", 15, what="the scheduler to lead")
    # a timer due during the outage: taking it is a write, refused in every round
    rt.store.register(Flow("oom").wait("W", seconds=1).task("A", "echo").build())
    rt.conductor.start("oom", {})
    with out_of_memory(rt.client):
        code = finish(process, 30)
    log = (tmp_path / "cli.log").read_text()
    assert code == 3, log
    assert "stopped because it is unhealthy" in log
    assert rt.client.get(lease) is None  # leadership given up on the way out


@pytest.mark.emulator
def test_an_unhealthy_process_gives_up_scheduler_leadership(rt: Runtime) -> None:
    schedules = ScheduleStore(rt.client, rt.keys)
    well = threading.Event()
    well.set()
    sick = Scheduler(rt.store, Conductor(rt.store), schedules, holder="sick", healthy=well.is_set)
    other = Scheduler(rt.store, Conductor(rt.store), schedules, holder="other")
    sick.tick()
    assert sick.is_leader() and not other.renew()
    well.clear()
    assert sick.tick() == [] and not sick.is_leader()
    assert rt.client.get(schedules.keys.scheduler_lease()) is None
    assert other.renew()
    sick.tick()
    assert not sick.is_leader()  # it does not take the lease back while unhealthy
