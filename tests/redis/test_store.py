"""Store basics against a real server: registration, idempotent start, compare-and-set."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rustyflower.adapters.redis.conductor import Conductor, PendingEvent
from rustyflower.adapters.redis.store import Placement, UnknownFlowError, VersionConflictError
from rustyflower.core.builder import Flow, Steps
from rustyflower.core.engine import ActivityCompleted, advance, start
from tests.redis.conftest import Runtime

pytestmark = pytest.mark.emulator


def two_steps(version: str = "1"):
    return Flow("two", version=version).task("A", "a").task("B", "b").build()


def test_register_is_idempotent_and_versions_live_side_by_side(runtime: Runtime) -> None:
    assert runtime.store.register(two_steps("1")) is True
    assert runtime.store.register(two_steps("1")) is False
    assert runtime.store.register(two_steps("2")) is True
    assert runtime.store.definition("two").version == "2"
    assert runtime.store.definition("two", "1").version == "1"
    changed = Flow("two", version="1").task("A", "a").build()
    with pytest.raises(VersionConflictError, match="new version"):
        runtime.store.register(changed)
    with pytest.raises(UnknownFlowError, match="registered: two"):
        runtime.store.definition("nope")
    with pytest.raises(UnknownFlowError, match=r"no version '9' \(registered: 1, 2\)"):
        runtime.store.definition("two", "9")


def test_start_with_an_existing_id_returns_it_and_runs_nothing_twice(runtime: Runtime) -> None:
    runtime.store.register(two_steps())
    first = runtime.conductor.start("two", {"n": 1}, instance_id="same")
    again = runtime.conductor.start("two", {"n": 2}, instance_id="same")
    assert again.seq == first.seq and again.state.input == {"n": 1}
    stream = runtime.keys.stream(0, "normal")
    assert runtime.client.xlen(stream) == 1  # one RunActivity, not two


def test_compare_and_set_applies_a_transition_once(runtime: Runtime) -> None:
    runtime.store.register(two_steps())
    snapshot = runtime.conductor.start("two", {}, instance_id="race")
    call = next(iter(snapshot.state.pending.values())).command
    transition = advance(snapshot, ActivityCompleted(call.call_id, 1), datetime.now(UTC))
    assert runtime.store.commit(snapshot, transition, Placement()) == "ok"
    other = runtime.fresh_store()
    assert other.commit(snapshot, transition, Placement()) == "conflict"
    assert [h["kind"] for h in runtime.store.history("race")].count("TaskSucceeded") == 1


def test_creating_twice_reports_exists(runtime: Runtime) -> None:
    definition = two_steps()
    transition = start(definition, {}, "dup", datetime.now(UTC))
    assert runtime.store.commit(None, transition, Placement()) == "ok"
    assert runtime.store.commit(None, transition, Placement()) == "exists"


def test_a_new_instance_gets_its_fields_and_its_history_in_order(runtime: Runtime) -> None:
    """The commit script sets a new instance's fields with one HSET and appends its history
    with one RPUSH per 1000 entries: the same hash and list as one command each."""
    definition = two_steps()
    runtime.store.register(definition)
    transition = start(definition, {}, "fields", datetime.now(UTC))
    notes = [{"kind": "Note", "position": "", "detail": {"n": n}} for n in range(2500)]
    placement = Placement(priority="high", concurrency_key="k1")
    assert runtime.store.commit(None, transition, placement, notes=notes) == "ok"
    stored = runtime.client.hgetall(runtime.keys.instance("fields"))
    assert {k.decode(): v.decode() for k, v in stored.items() if k != b"snap"} == {
        "seq": "1",
        "epoch": "0",
        "status": "running",
        "held": "0",
        "updated_at": transition.snapshot.updated_at,
        "flow": "two",
        "version": "1",
        "priority": "high",
        "ckey": "k1",
        "created_at": transition.snapshot.updated_at,
    }
    history = runtime.store.history("fields")
    entries = len(transition.snapshot.state.history)
    assert len(history) == entries + 2500
    assert [h["kind"] for h in history[:entries]] == [
        e.kind for e in transition.snapshot.state.history
    ]
    assert [h["detail"]["n"] for h in history[entries:]] == list(range(2500))
    assert runtime.store.placement("fields") == placement


def test_start_many_starts_each_instance_once_in_few_round_trips(runtime: Runtime) -> None:
    runtime.store.register(two_steps())
    started = runtime.conductor.start_many("two", [{"n": i} for i in range(250)], chunk=100)
    assert len({s.instance_id for s in started}) == 250
    assert [s.state.input for s in started] == [{"n": i} for i in range(250)]
    infos = runtime.store.list_instances(flow="two", limit=1000)
    assert len(infos) == 250 and {i.status for i in infos} == {"running"}
    assert runtime.client.xlen(runtime.keys.stream(0, "normal")) == 250


def test_a_batch_never_chains_on_its_own_uncommitted_result(runtime: Runtime) -> None:
    """Regression: a second event of one instance in a batch used to be committed on top
    of the first one's uncommitted result; when the first lost a race, the second passed
    the seq check (same seq, other content) and the winner's transition was lost."""
    flow = Flow("m").map("M", Steps().task("T", "t"), max_concurrency=3).build()
    runtime.store.register(flow)
    started = runtime.conductor.start("m", [1, 2, 3], instance_id="lost-update")
    calls = sorted(p.command.call_id for p in started.state.pending.values())
    other_store = runtime.fresh_store()
    other = Conductor(other_store)
    other_store.load("lost-update")  # the other worker caches the value before the race
    runtime.conductor.apply("lost-update", ActivityCompleted(calls[0], 10))  # wins the race
    other.apply_many(
        [
            PendingEvent("lost-update", ActivityCompleted(calls[1], 20)),
            PendingEvent("lost-update", ActivityCompleted(calls[2], 30)),
        ]
    )
    final = runtime.store.load("lost-update", fresh=True)
    assert final.status == "succeeded"
    assert final.state.output == [10, 20, 30]
