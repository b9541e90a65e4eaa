"""The conformance corpus on moto's Step Functions, through the real Lambda handlers.

Issue 4, "How to test it for real here": every corpus case is compiled (its sub-flows
too), deployed on moto with the executor switched on and run with the **real**
``lambda_aws`` handlers behind the Lambda integration (``moto_harness``): the activity
handler runs ``tests.conformance.activities`` with Powertools idempotency on moto's
DynamoDB, the token handler stores task tokens in the tokens table, and the case's
scripted events are sent through ``adapters.aws.tokens.signal`` (``SendTaskSuccess``).
Activities last their ``VIRTUAL_DURATIONS`` and waits, retry intervals and timeouts are
real, so the runs are real-time: they run side by side (``moto_harness.Fleet``), once per
session (one pytest-xdist worker runs them, the others read the outcomes).

* ``test_uninterrupted``: a fresh execution of every case ends with the ``expect`` of
  its YAML (status, output, error, cause when given);
* ``test_continues_after_cut``: for every case and every transition k, the snapshot
  after k (virtual runtime, its clock set so that the cut is *now*) continues as an
  execution (``execution_input(snapshot, now=<its updated_at>, children=<child flows in
  flight>)``) and ends the same way;
* an event wait answered through the signal path (``adapters.aws.tokens.signal``, and
  ``signal_aws``, what ``rustyflower signal`` runs for an instance living in AWS), fresh
  and continued (the token registered again under the engine's wait id);
* idempotent failover: the same snapshot and epoch started twice is one execution
  (StartExecution under ``execution_name``, ``ExecutionAlreadyExists`` handled by name;
  and the continue function's ``continue_snapshot``: started, then existing).

Every run that cannot end as expected is listed below with its reason: ``MOTO_BUGS``
(moto's interpreter, not Step Functions; strict xfails), ``DOCUMENTED`` (a difference
of docs/aws.md, strict xfails) and cases without a cut point (nothing to continue: not
parametrized, ``NO_CUT_POINT``, checked by ``test_every_case_and_cut_is_run_or_listed``).
No run is skipped: a case that would wait longer than ``REAL_TIME_BUDGET`` fails
``test_every_run_fits_the_real_time_budget`` instead (shorten it, or decide here).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

import rustyflower.adapters.aws.tokens
from lambda_aws.continuation import continue_snapshot
from lambda_aws.settings import LambdaSettings
from rustyflower.adapters.aws import execution_input, execution_name, fresh_input
from rustyflower.core.engine import AwaitEvent
from rustyflower.core.errors import NoWaiterError
from rustyflower.core.snapshot.document import encode_snapshot
from rustyflower.core.snapshot.handover import HandoverRequest
from rustyflower.core.timeutil import parse_timestamp
from tests.aws.moto_bugs import MOTO_BUGS
from tests.aws.moto_harness import (
    FUNCTION_ENV,
    REGION,
    TOKENS_TABLE,
    MotoWorld,
    RunKey,
    base_instance,
    cut_at,
    cut_seconds,
    moto_world,
    next_start,
    once_per_session,
    outcome_of,
    problems,
    run_batch,
    sleep_until,
)
from tests.conformance.corpus import Case, load_cases
from tests.conformance.test_conformance import KEYS, baseline

pytestmark = [
    pytest.mark.emulator,
    pytest.mark.slow,  # real time: waits, retry intervals and activity durations pass
]

CASES: dict[str, Case] = {case.id: case for case in load_cases()}

REAL_TIME_BUDGET = 90.0
"""Real seconds one run may last (moto really waits, and CI runs every run)."""

DOCUMENTED: dict[str, str] = {
    # case id or "case@k": "docs/aws.md, Differences item N: ..."; none of the corpus
    # runs meets one today (the differences are pinned by the tests docs/aws.md names)
}


def _cuts(case: Case) -> dict[int, float]:
    """seq -> virtual seconds at the cut, for every running snapshot of ``case``."""
    return cut_seconds(case, base_instance(case)) if case.flow is not None else {}


RUN_SECONDS: dict[str, float] = {}
"""Virtual seconds from the start (or the cut) to the end of each run: its real time here."""


def _marks(key: RunKey, case: Case, seconds_left: float) -> list[Any]:
    RUN_SECONDS[key.text] = seconds_left
    if case.flow is None:
        return []  # the test fails: the core model refuses the flow
    for table, what in ((MOTO_BUGS, "moto bug"), (DOCUMENTED, "documented difference")):
        if key.text in table:
            return [pytest.mark.xfail(strict=True, reason=f"{what}: {table[key.text]}")]
    return []


def _uninterrupted() -> list[Any]:
    params = []
    for case in CASES.values():
        key = RunKey(case.id)
        total = baseline(case.id).elapsed_seconds if case.flow is not None else 0.0
        params.append(pytest.param(key, id=key.text, marks=_marks(key, case, total)))
    return params


def _every_cut() -> tuple[list[Any], set[str]]:
    """The (case, cut) runs, and the cases with no cut point (their first transition ends
    them, so no running snapshot exists to continue: the uninterrupted run covers them)."""
    params = []
    no_cut = set()
    for case in CASES.values():
        cuts = _cuts(case)
        if case.flow is not None and not cuts:
            no_cut.add(case.id)
            continue
        total = baseline(case.id).elapsed_seconds if case.flow is not None else 0.0
        for seq, at in sorted(cuts.items()):
            key = RunKey(case.id, seq)
            params.append(pytest.param(key, id=key.text, marks=_marks(key, case, total - at)))
        if case.flow is None:
            params.append(pytest.param(RunKey(case.id, -1), id=f"{case.id}@refused"))
    return params, no_cut


UNINTERRUPTED = _uninterrupted()
EVERY_CUT, NO_CUT_POINT = _every_cut()
BATCHED = ("test_uninterrupted", "test_continues_after_cut")


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world() -> Iterator[MotoWorld]:
    with moto_world() as opened:
        yield opened


def _requested(session: pytest.Session) -> list[RunKey]:
    """The batched runs this session runs (after -k/-m/--lf selection), skips left out."""
    keys = []
    for item in session.items:
        if not isinstance(item, pytest.Function) or item.module is None:
            continue
        if item.module.__name__ != __name__ or item.originalname not in BATCHED:
            continue
        if item.get_closest_marker("skip") is not None:
            continue
        key = item.callspec.params["key"]
        if CASES[key.case_id].flow is not None:
            keys.append(key)
    return keys


@pytest.fixture(scope="module")
def outcomes(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, Any]]:
    """The outcome of every requested corpus run, all run side by side once."""
    keys = _requested(request.session)

    def compute() -> dict[str, dict[str, Any]]:
        return run_batch(request.getfixturevalue("world"), CASES, keys)

    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return compute()
    digest = hashlib.sha256("\n".join(sorted(k.text for k in keys)).encode()).hexdigest()
    shared = tmp_path_factory.getbasetemp().parent / "moto-conformance"
    answer: dict[str, dict[str, Any]] = once_per_session(shared, digest[:16], compute)
    return answer


def _check(key: RunKey, outcomes: dict[str, dict[str, Any]]) -> None:
    case = CASES[key.case_id]
    if case.flow is None:
        pytest.fail(f"{case.id}: the core model refuses the flow: {case.problem}")
    outcome = outcome_of(outcomes[key.text])
    found = problems(case, outcome)
    assert not found, (
        f"{key.text} ({outcome.execution_arn}: {outcome.seconds:.1f} s, started "
        f"{outcome.late:.2f} s late; events sent {list(outcome.sent)}, dropped "
        f"{list(outcome.dropped)}): " + "; ".join(found)
    )


# --- the corpus -------------------------------------------------------------------------------


@pytest.mark.parametrize("key", UNINTERRUPTED)
def test_uninterrupted(outcomes: dict[str, dict[str, Any]], key: RunKey) -> None:
    _check(key, outcomes)


@pytest.mark.parametrize("key", EVERY_CUT)
def test_continues_after_cut(outcomes: dict[str, dict[str, Any]], key: RunKey) -> None:
    _check(key, outcomes)


def test_every_case_and_cut_is_run_or_listed() -> None:
    """No run is left out silently: each is run, or its reason is in a table."""
    listed = set(MOTO_BUGS) | set(DOCUMENTED)
    known = {p.values[0].text for p in UNINTERRUPTED + EVERY_CUT}
    assert listed <= known, f"tables name runs that do not exist: {listed - known}"
    assert {p.values[0].case_id for p in UNINTERRUPTED} == set(CASES)
    cut_cases = {p.values[0].case_id for p in EVERY_CUT}
    assert cut_cases | NO_CUT_POINT == set(CASES)
    assert not cut_cases & NO_CUT_POINT
    for case_id in NO_CUT_POINT:
        transitions = baseline(case_id).transitions
        assert transitions == 1, f"{case_id}: listed without a cut point, has {transitions}"


def test_every_run_fits_the_real_time_budget() -> None:
    over = {run: seconds for run, seconds in RUN_SECONDS.items() if seconds > REAL_TIME_BUDGET}
    assert not over, f"runs longer than {REAL_TIME_BUDGET:.0f} s of real time: {over}"


# --- an event wait answered through the signal path -------------------------------------------


APPROVAL = CASES["approval::approved"]
DECISION = {"approved": True, "by": "signal"}
APPROVED = {"result": "approved", "by": "signal", "order": 42, "status": "pending"}


def _signal(world: MotoWorld, instance_id: str) -> rustyflower.adapters.aws.tokens.Delivered:
    return rustyflower.adapters.aws.tokens.signal(
        instance_id,
        "approval",
        DECISION,
        store=world.store,
        stepfunctions=world.stepfunctions,
    )


def test_a_fresh_event_wait_is_answered_through_the_signal_path(world: MotoWorld) -> None:
    assert APPROVAL.flow is not None
    machine = world.deploy(APPROVAL.flow)
    instance_id = "signal.fresh"
    execution = world.start(
        machine, fresh_input(instance_id, {"order": 42}), execution_name(instance_id, 0)
    )
    waiter = world.wait_for_waiter(instance_id, "approval")
    assert waiter.position == "AwaitApproval"
    assert waiter.wait_id.startswith(f"AwaitApproval~{execution_name(instance_id, 0)}@")
    delivered = _signal(world, instance_id)
    assert delivered.wait_id == waiter.wait_id
    outcome = world.wait(execution)
    assert (outcome.status, outcome.output) == ("SUCCEEDED", APPROVED)
    assert list(world.store.waiters(instance_id, "approval")) == []
    with pytest.raises(NoWaiterError):
        _signal(world, instance_id)  # nothing waits any more


def test_a_continued_event_wait_is_answered_through_the_signal_path(world: MotoWorld) -> None:
    """The continuation registers its token under the engine's wait id again."""
    assert APPROVAL.flow is not None
    machine = world.deploy(APPROVAL.flow)
    instance_id = "signal.continued"
    ((seq, seconds),) = cut_seconds(APPROVAL, instance_id).items()
    begin = next_start()
    state = cut_at(APPROVAL, instance_id, seq, seconds, begin)
    snapshot = state.snapshot
    (wait_id,) = [
        entry.command.wait_id
        for entry in snapshot.state.pending.values()
        if isinstance(entry.command, AwaitEvent)
    ]
    document = execution_input(snapshot, now=parse_timestamp(snapshot.updated_at))
    sleep_until(begin)
    execution = world.start(machine, document, execution_name(instance_id, snapshot.epoch))
    waiter = world.wait_for_waiter(instance_id, "approval")
    assert waiter.wait_id == wait_id
    assert _signal(world, instance_id).wait_id == wait_id
    outcome = world.wait(execution)
    assert (outcome.status, outcome.output) == ("SUCCEEDED", APPROVED)


def test_rustyflower_signal_reaches_a_wait_in_aws(world: MotoWorld) -> None:
    """What ``rustyflower signal`` runs for an instance living in AWS (``signal_aws``)."""
    from rustyflower.adapters.continuity.aws import AwsSettings, signal_aws  # noqa: PLC0415

    assert APPROVAL.flow is not None
    machine = world.deploy(APPROVAL.flow)
    instance_id = "signal.cli"
    execution = world.start(
        machine, fresh_input(instance_id, {"order": 42}), execution_name(instance_id, 0)
    )
    waiter = world.wait_for_waiter(instance_id, "approval")
    settings = AwsSettings(region=REGION, tokens_table=TOKENS_TABLE)
    delivery = signal_aws(instance_id, "approval", DECISION, settings)
    assert (delivery.cloud, delivery.instance_id) == ("aws", instance_id)
    assert waiter.wait_id in delivery.detail
    outcome = world.wait(execution)
    assert (outcome.status, outcome.output) == ("SUCCEEDED", APPROVED)


# --- idempotent failover --------------------------------------------------------------------------


FAILOVER = CASES["parallel::all_branches_succeed"]


def _running_snapshot(instance_id: str) -> Any:
    """A snapshot with work in flight (the first cut), its clock set to now."""
    seq, seconds = min(cut_seconds(FAILOVER, instance_id).items())
    begin = next_start()
    snapshot = cut_at(FAILOVER, instance_id, seq, seconds, begin).snapshot
    sleep_until(begin)
    return snapshot


def _start_or_attach(world: MotoWorld, machine: str, document: str, name: str) -> str:
    """StartExecution under the failover's name; a name already used (the execution
    ended: ``ExecutionAlreadyExists``) is the execution of that name."""
    try:
        started = world.stepfunctions.start_execution(
            stateMachineArn=machine, name=name, input=document
        )
    except world.stepfunctions.exceptions.ExecutionAlreadyExists:
        return machine.replace(":stateMachine:", ":execution:", 1) + ":" + name
    return str(started["executionArn"])


def test_the_same_snapshot_and_epoch_twice_is_one_execution(world: MotoWorld) -> None:
    assert FAILOVER.flow is not None
    machine = world.deploy(FAILOVER.flow)
    snapshot = _running_snapshot("failover.twice")
    name = execution_name(snapshot.instance_id, snapshot.epoch)
    document = json.dumps(execution_input(snapshot, now=parse_timestamp(snapshot.updated_at)))
    first = _start_or_attach(world, machine, document, name)
    # while it runs, the same name and input is the same execution (no error)
    again = world.stepfunctions.start_execution(stateMachineArn=machine, name=name, input=document)[
        "executionArn"
    ]
    assert again == first
    outcome = world.wait(first)
    assert (outcome.status, outcome.output) == ("SUCCEEDED", FAILOVER.expect.output)
    # once it ended, the name is refused: the failover finds the execution by its name
    with pytest.raises(world.stepfunctions.exceptions.ExecutionAlreadyExists):
        world.stepfunctions.start_execution(stateMachineArn=machine, name=name, input=document)
    assert _start_or_attach(world, machine, document, name) == first
    executions = world.stepfunctions.list_executions(stateMachineArn=machine)["executions"]
    assert [e["name"] for e in executions].count(name) == 1
    keys = [
        (i.payload["call"]["state"], i.payload["call"]["tag"], i.payload["attempt"])
        for i in world.router.activity_calls(snapshot.instance_id)
    ]
    assert len(keys) == len(set(keys)), f"an activity call was made twice: {keys}"


def test_the_continue_function_starts_one_execution_per_epoch(world: MotoWorld) -> None:
    """``lambda_aws.continuation.continue_snapshot`` twice: started, then existing."""
    assert FAILOVER.flow is not None
    machine = world.deploy(FAILOVER.flow)
    snapshot = _running_snapshot("failover.continue")
    request = HandoverRequest(snapshot, encode_snapshot(snapshot, KEYS))
    settings = LambdaSettings.from_env(FUNCTION_ENV)
    now = parse_timestamp(snapshot.updated_at)
    status, first = continue_snapshot(
        request, settings=settings, stepfunctions=world.stepfunctions, now=now
    )
    assert (status, first["status"]) == (201, "started")
    status, second = continue_snapshot(
        request, settings=settings, stepfunctions=world.stepfunctions, now=now
    )
    assert (status, second["status"]) == (200, "existing")
    assert second["executionArn"] == first["executionArn"]
    assert first["executionName"] == execution_name(snapshot.instance_id, snapshot.epoch)
    outcome = world.wait(first["executionArn"])
    assert (outcome.status, outcome.output) == ("SUCCEEDED", FAILOVER.expect.output)
    executions = world.stepfunctions.list_executions(stateMachineArn=machine)["executions"]
    assert [e["name"] for e in executions].count(first["executionName"]) == 1
