"""The conformance corpus on the in-process virtual runtime (docs/architecture.md, "Conformance").

For every case of ``flows/*.yaml``:

* uninterrupted, the run ends as the case expects (status, output or error and cause,
  and the virtual elapsed time where the case gives one);
* cut at every transition (the snapshot encoded, signed, decoded and continued before
  every event), the run ends exactly as the uninterrupted one: same result, same
  timing, same final snapshot bytes;
* failed over after transition k, for every k (a brand-new runtime continues from the
  decoded snapshot alone), the run ends with the expected status and output, and runs
  the same activity calls (same idempotency keys) as the uninterrupted run;
* failed over after every transition, the same.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from rustyflower.core.activities import iter_tasks
from rustyflower.core.contract import parse_work_id
from rustyflower.core.model.states import STATE_TYPES, Branch, MapState, ParallelState
from rustyflower.core.snapshot import SnapshotKeys, generate_signing_key
from rustyflower.core.snapshot.document import encode_snapshot
from rustyflower.testing import FlowLibrary, RunResult, ScriptedEvent, World, run_flow
from tests.conformance.activities import VIRTUAL_DURATIONS, registry
from tests.conformance.corpus import Case, load_cases, load_corpus

KEYS = SnapshotKeys.signing_only(generate_signing_key("conformance"))
CASES = load_cases()
ids = [case.id for case in CASES]

UNINTERRUPTED = "uninterrupted"
CUT = "cut"
FAILOVER = "failover"
ALL_RUNS = frozenset({UNINTERRUPTED, CUT, FAILOVER})

KNOWN_ENGINE_BUGS: dict[str, tuple[frozenset[str], str]] = {
    # "file" or "file::case": (runs it breaks, "engine bug: ..."), for example
    # "on_error": (ALL_RUNS, "engine bug: on_error targets counted unreachable"),
}
"""Cases that fail because of a known engine bug: file stem or case id -> (runs, reason)."""


def params(run: str) -> list[Any]:
    """The cases as pytest params, known engine bugs marked as strict xfails for ``run``."""
    found = []
    for case in CASES:
        marks = []
        for key in (case.file, case.id):
            runs, reason = KNOWN_ENGINE_BUGS.get(key, (frozenset(), ""))
            if run in runs:
                marks.append(pytest.mark.xfail(strict=True, reason=reason))
        found.append(pytest.param(case, id=case.id, marks=marks))
    return found


def world_for(case: Case) -> World:
    return World(
        registry=registry,
        durations=VIRTUAL_DURATIONS,
        flows=FlowLibrary(case.subflows),
        events=tuple(
            ScriptedEvent(spec.event, spec.data, spec.after_seconds) for spec in case.events
        ),
        keys=KEYS,
    )


def run_case(case: Case, **options: Any) -> RunResult:
    if case.flow is None:
        pytest.fail(f"{case.id}: the core model refuses the flow: {case.problem}")
    return run_flow(
        case.flow,
        case.input,
        world_for(case),
        instance_id=f"{case.file}.{case.name}",
        **options,
    )


@cache
def baseline(case_id: str) -> RunResult:
    """The uninterrupted run of a case (shared by the tests that compare against it)."""
    case = next(case for case in CASES if case.id == case_id)
    return run_case(case)


# --- comparing results ----------------------------------------------------------------------


def json_equal(left: Any, right: Any) -> bool:
    """Equality of JSON values: 1 equals 1.0, but true is not 1 and a list is not a tuple."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(json_equal, left, right))
    return type(left) is type(right) and left == right


def problems(case: Case, result: RunResult, *, elapsed: bool = True) -> list[str]:
    """How ``result`` differs from what the case expects (empty when it meets it)."""
    expect = case.expect
    found: list[str] = []
    if result.status != expect.status:
        found.append(
            f"status {result.status!r} (error {result.error!r}, cause {result.cause!r}), "
            f"expected {expect.status!r}"
        )
        return found
    if expect.checks_output and not json_equal(result.output, expect.output):
        found.append(f"output {result.output!r}, expected {expect.output!r}")
    if expect.status != "succeeded" and result.error != expect.error:
        found.append(f"error {result.error!r}, expected {expect.error!r}")
    if expect.checks_cause and result.cause != expect.cause:
        found.append(f"cause {result.cause!r}, expected {expect.cause!r}")
    if (
        elapsed
        and expect.elapsed_seconds is not None
        and abs(result.elapsed_seconds - expect.elapsed_seconds) > 1e-6
    ):
        found.append(
            f"elapsed {result.elapsed_seconds}s of virtual time, expected {expect.elapsed_seconds}s"
        )
    return found


def assert_meets(case: Case, result: RunResult, *, elapsed: bool = True) -> None:
    found = problems(case, result, elapsed=elapsed)
    assert not found, f"{case.id}: " + "; ".join(found)


def work_done(result: RunResult) -> list[str]:
    """The distinct activity calls of a run: ``instance:position:attempt`` per call.

    A call re-run after a failover counts once. The call number is left out (a looping
    state's key carries it): after a failover, events due at the same instant may come in
    another order, and work started after them is numbered in that order.
    """
    calls = {
        f"{call.instance_id}:{parse_work_id(call.call_id).position}:{call.attempt}"
        for call in result.calls
    }
    return sorted(calls)


# --- the corpus itself ----------------------------------------------------------------------


def _state_kinds(branch: Branch) -> set[str]:
    kinds: set[str] = set()
    for state in branch.states.values():
        kinds.add(state.type)
        if isinstance(state, ParallelState):
            for nested in state.branches:
                kinds |= _state_kinds(nested)
        elif isinstance(state, MapState):
            kinds |= _state_kinds(state.iterator)
    return kinds


def test_corpus_is_complete_and_runnable() -> None:
    corpus = load_corpus()
    assert len(corpus) >= 14
    refused = {f.path.stem: f.problem for f in corpus if f.problem is not None}
    assert refused.keys() <= KNOWN_ENGINE_BUGS.keys(), refused
    assert KNOWN_ENGINE_BUGS.keys() <= {f.path.stem for f in corpus} | set(ids)
    definitions = [d for f in corpus if f.flow is not None for d in (f.flow, *f.subflows)]
    used = set().union(*(_state_kinds(d) for d in definitions))
    assert used == set(STATE_TYPES), f"state kinds never used: {set(STATE_TYPES) - used}"
    activities = {task.activity for d in definitions for task in iter_tasks(d)}
    assert activities <= set(registry.names()), activities - set(registry.names())
    assert len(set(ids)) == len(ids)
    assert {"slow", "slow_fail"} <= VIRTUAL_DURATIONS.keys()


# --- runs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", params(UNINTERRUPTED))
def test_uninterrupted(case: Case) -> None:
    result = baseline(case.id)
    assert_meets(case, result)
    assert result.stale_events == 0


@pytest.mark.parametrize("case", params(CUT))
def test_cut_and_resume_at_every_transition(case: Case) -> None:
    reference = baseline(case.id)
    result = run_case(case, cut="every")
    assert_meets(case, result)
    assert result.cuts == reference.transitions - 1
    assert result.transitions == reference.transitions
    assert result.elapsed_seconds == reference.elapsed_seconds
    assert [c.idempotency_key for c in result.calls] == [c.idempotency_key for c in reference.calls]
    assert encode_snapshot(result.snapshot, KEYS) == encode_snapshot(reference.snapshot, KEYS)


@pytest.mark.parametrize("case", params(FAILOVER))
def test_failover_at_each_cut_point(case: Case) -> None:
    reference = baseline(case.id)
    failures = []
    for k in range(1, reference.transitions):
        result = run_case(case, cut=lambda seq, k=k: seq == k, failover=True)
        found = problems(case, result, elapsed=False)
        if result.failovers < 1:
            found.append("no failover happened")
        if work_done(result) != work_done(reference):
            found.append(
                f"activity calls differ: {work_done(result)}, uninterrupted {work_done(reference)}"
            )
        if found:
            failures.append(f"failover after transition {k}: " + "; ".join(found))
    assert not failures, f"{case.id}:\n" + "\n".join(failures)


@pytest.mark.parametrize("case", params(FAILOVER))
def test_failover_at_every_transition(case: Case) -> None:
    reference = baseline(case.id)
    result = run_case(case, cut="every", failover=True)
    assert_meets(case, result, elapsed=False)
    assert result.failovers == result.cuts
    assert work_done(result) == work_done(reference)


@pytest.mark.parametrize("case", params(FAILOVER))
def test_events_addressed_to_their_wait(case: Case) -> None:
    """The same results when each event goes to the wait it answers (wait_id), not by name."""
    if case.flow is None:
        pytest.fail(f"{case.id}: the core model refuses the flow: {case.problem}")
    world = world_for(case)
    world.address_events = "wait_id"
    result = run_flow(case.flow, case.input, world, cut="every", failover=True)
    assert_meets(case, result, elapsed=False)
