"""The conformance corpus on moto's Step Functions executor, with the real Lambda handlers.

Helpers of ``test_conformance_moto.py`` (no tests here). A :class:`MotoWorld` opens moto
with its executor switched on, creates the idempotency and task-token tables on moto's
DynamoDB, points the ``lambda_aws`` settings at them (``RUSTYFLOWER_ACTIVITIES`` names the
conformance activities) and routes the compiled machines' Lambda invokes in-process:

* the activity function is the **real** ``lambda_aws.activity.handler`` (Powertools
  idempotency on moto's DynamoDB). It first lasts the activity's ``VIRTUAL_DURATIONS``
  (a real-time runtime waits that long, tests/conformance/README.md), so task timeouts
  race real durations; an exception becomes Lambda's unhandled-error answer
  (``errorType`` = the exception's class name), so ``Retry``/``Catch`` see the real names;
* the token function is the **real** ``lambda_aws.tokens.handler`` (the tokens table);
  the case's scripted events are sent through the real signal path,
  ``adapters.aws.tokens.signal`` -> ``SendTaskSuccess``, by name, when a wait is issued (see
  :class:`EventSender`).

A :class:`Fleet` runs many executions at once (moto's executor really sleeps on waits,
retry intervals and timeouts; running them side by side keeps the whole corpus within
a couple of minutes) from a driver thread: it starts them, sends their events on time
and collects their outcomes.

Continuations (:func:`cut_launch`): the snapshot after transition ``k`` comes from the
virtual runtime (``rustyflower.testing``), run so that the cut's virtual instant *is* the real
start time of the execution: every absolute time in the snapshot (a wait's end, a
retry's due time, the flow's deadline, when an event is sent) is then as far in the
future, in real time, as it was in virtual time, and the execution input is built with
``execution_input(snapshot, now=<the snapshot's updated_at>)``. Each run gets an
instance id of its own (``<file>.<case>`` uninterrupted, ``<file>.<case>.cut<k>`` for the
cut after transition k), so runs side by side share no task token, idempotency key or
child execution name; the virtual run of a cut uses that same id.

moto 5.2 needs three fixes to run compiled machines, which the local AWS applies too
(``rustyflower.adapters.localcloud.moto_fixes``, the one place they live): the
``states:startExecution.sync`` parameters and answer, ``States.*`` errors leaving a
Parallel branch or a Map iteration, and a Wait on a ``Timestamp(Path)`` (every resumed
wait and retry delay) ending on time rather than up to a second early. The conformance
runs need two more, here: ``SendTaskSuccess`` is retried past a race with executions
being started (:class:`SignalsRetried`), and a definition's ANTLR syntax tree is kept across its
executions (:class:`ParsedOnce`: moto's parse is most of its CPU, and a starved
executor drifts in time). The handlers run one invocation at a time in this process
(Powertools' logger and metrics are per process, as in Lambda), each activity invoke
lasting at least ``LAMBDA_LATENCY_SECONDS``.
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from unittest import mock

import boto3
from moto import mock_aws
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor
from moto.stepfunctions.parser.backend import execution_worker
from moto.stepfunctions.parser.models import stepfunctions_parser_backends

import lambda_aws.activity
import lambda_aws.aws
import lambda_aws.tokens
import rustyflower.adapters.aws.tokens
from lambda_aws import settings as names
from rustyflower.adapters.aws import (
    compile_flow,
    deployment,
    execution_input,
    execution_name,
    fresh_input,
)
from rustyflower.adapters.aws.compiler import machine_comment
from rustyflower.adapters.aws.contract import PayloadError, activity_call
from rustyflower.adapters.localcloud.lambdas import LambdaRouter as LocalLambdaRouter
from rustyflower.adapters.localcloud.moto_fixes import step_functions_fixes
from rustyflower.core.engine import EventReceived, Snapshot
from rustyflower.core.errors import NoWaiterError
from rustyflower.core.model import FlowDefinition
from rustyflower.core.timeutil import parse_timestamp
from rustyflower.testing import EPOCH, World, round_trip, run_flow
from tests.aws import test_lambda_kit as kit
from tests.aws.test_lambda_kit import (
    ACCOUNT,
    ACTIVITY_FUNCTION,
    MOTO_CONFIG,
    REGION,
    ROLE_ARN,
    TOKENS_FUNCTION,
    TOKENS_TABLE,
    create_tables,
    first_waiter,
    flow_arns,
    machine_arn,
    stop_executions,
)
from tests.conformance.activities import VIRTUAL_DURATIONS
from tests.conformance.corpus import Case
from tests.conformance.test_conformance import json_equal, world_for

FUNCTION_ENV: dict[str, str] = {
    **{
        name: value
        for name, value in kit.FUNCTION_ENV.items()
        # no snapshot bucket, no key settings: executions here start from execution input
        if name not in (deployment.ENV_SNAPSHOT_BUCKET, *names.KEY_SETTINGS)
    },
    names.ENV_IDEMPOTENCY: "on",
}
"""The functions' environment, as infra/terraform/aws sets it (plus fake credentials)."""

SIGNAL_GRACE_SECONDS = 1.5
"""How long a due event is offered again while no wait takes it (the token of a wait
being registered lags the state entry by a few milliseconds); then it is dropped, as an
event nothing waits for is (tests/conformance/README.md)."""
LAMBDA_LATENCY_SECONDS = 0.05
"""Every activity invoke lasts at least this long, as a real Lambda invoke does: an
in-process handler answering within microseconds would let a Parallel branch's task end
before moto's executor has even started the next branch (which a real invoke never
does), and change which of two waits began first."""
START_LEAD = timedelta(milliseconds=100)


def next_start() -> datetime:
    """When a continuation starts: the first whole second at least ``START_LEAD`` ahead.

    The cut's virtual instant is set to it and the execution starts at it (not before:
    the relative times of the input, counted from it, would then end earlier than its
    absolute ones). On a whole second the corpus's whole-second times stay whole, so
    the resume nodes' rounding up to whole seconds (docs/aws.md, Differences 6) changes
    none of them.
    """
    moment = datetime.now(UTC) + START_LEAD
    return moment.replace(microsecond=0) + timedelta(seconds=1)


def sleep_until(moment: datetime) -> None:
    left = (moment - datetime.now(UTC)).total_seconds()
    if left > 0:
        time.sleep(left)


# --- the Lambda functions -------------------------------------------------------------------


@dataclass(frozen=True)
class Invocation:
    function: str
    payload: Any
    error: str | None
    """``errorType`` of an unhandled error, else None."""


class LambdaRouter(LocalLambdaRouter):
    """moto's Lambda integration, answered by the real ``lambda_aws`` handlers in-process:
    the local AWS's router (``rustyflower.adapters.localcloud.lambdas``: one invocation at a
    time, Lambda's answer and its unhandled-error document), with each activity call
    lasting its virtual duration and every invocation recorded.
    """

    def __init__(self, durations: Mapping[str, Callable[[Any], float]]) -> None:
        super().__init__(
            {
                ACTIVITY_FUNCTION: lambda_aws.activity.handler,
                TOKENS_FUNCTION: lambda_aws.tokens.handler,
            }
        )
        self.durations = durations
        self.invocations: list[Invocation] = []
        self.deadline_tokens: list[str] = []
        self._lock = threading.Lock()

    def duration(self, payload: Any) -> float:
        try:
            call = activity_call(payload)
        except (PayloadError, AttributeError):
            return 0.0
        measure = self.durations.get(call.activity)
        return 0.0 if measure is None else float(measure(call.input))

    def before(self, function: str, payload: Any) -> None:
        if function == ACTIVITY_FUNCTION:
            # the call lasts its virtual duration: the Task's TimeoutSeconds races it
            self.closed.wait(max(self.duration(payload), LAMBDA_LATENCY_SECONDS))
        elif isinstance(payload, dict) and payload.get("kind") == "deadline":
            with self._lock:
                self.deadline_tokens.append(str(payload.get("task_token")))

    def record(self, function: str, payload: Any, error: str | None) -> None:
        with self._lock:
            self.invocations.append(Invocation(function, payload, error))

    def activity_calls(self, instance_id: str) -> list[Invocation]:
        with self._lock:
            return [
                i
                for i in self.invocations
                if i.function == ACTIVITY_FUNCTION and i.payload.get("instance_id") == instance_id
            ]


# --- state machines -------------------------------------------------------------------------


# --- outcomes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """How an execution ended (``describe_execution``)."""

    status: str
    output: Any
    error: str | None
    cause: str | None
    execution_arn: str = ""
    seconds: float = 0.0
    """Real time from the execution's start to its end (moto's start and stop dates)."""
    late: float = 0.0
    """How much later than planned a continuation started (its clock is the cut's)."""
    sent: tuple[str, ...] = ()
    """Events delivered through the signal path (``event -> wait id``)."""
    dropped: tuple[str, ...] = ()
    """Events sent when nothing waited for them."""
    started: str = ""
    """When the execution started (moto's ``startDate``)."""


def problems(case: Case, outcome: Outcome) -> list[str]:
    """How ``outcome`` differs from what ``case`` expects (status, output, error, cause)."""
    expect = case.expect
    status = expect.status.upper()
    if expect.status == "cancelled":
        status = "ABORTED"
    if outcome.status != status:
        return [
            f"status {outcome.status} (error {outcome.error!r}, cause {outcome.cause!r}, "
            f"output {outcome.output!r}), expected {status}"
        ]
    found: list[str] = []
    if expect.checks_output and not json_equal(outcome.output, expect.output):
        found.append(f"output {outcome.output!r}, expected {expect.output!r}")
    if expect.status != "succeeded" and outcome.error != expect.error:
        found.append(f"error {outcome.error!r}, expected {expect.error!r}")
    if expect.checks_cause and expect.status != "succeeded" and outcome.cause != expect.cause:
        found.append(f"cause {outcome.cause!r}, expected {expect.cause!r}")
    return found


def _json_or_text(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


# --- scripted events ------------------------------------------------------------------------


@dataclass
class Send:
    due: datetime
    order: int
    event: str
    data: Any


@dataclass
class EventSender:
    """The outside world's sender of a case's scripted events, for one execution.

    As in the virtual runtime: the first time a wait is issued, the next unused scripted
    event of its name is sent ``after_seconds`` after the wait began, **by name**
    (``adapters.aws.tokens.signal``: the oldest waiter of that name takes it). A wait is
    seen when its task token appears in the tokens table; the wait ids already known
    (``bound``: waits issued before a cut, registered again by the continuation) schedule
    nothing. An event nothing takes within ``SIGNAL_GRACE_SECONDS`` of its due time is
    dropped.
    """

    instance_id: str
    events: tuple[tuple[str, Any, float], ...]
    """(event, data, after_seconds) in the case's order."""
    used: set[int] = field(default_factory=set)
    bound: set[str] = field(default_factory=set)
    sends: list[Send] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    _order: Iterator[int] = field(default_factory=lambda: itertools.count(1_000_000))

    @classmethod
    def for_case(cls, case: Case, instance_id: str) -> EventSender:
        return cls(instance_id, tuple((e.event, e.data, e.after_seconds) for e in case.events))

    @property
    def idle(self) -> bool:
        return not self.sends and len(self.used) == len(self.events)

    def step(self, store: rustyflower.adapters.aws.tokens.TokenStore, stepfunctions: Any) -> None:
        if self.idle:
            return
        for event in sorted({e for i, (e, _, _) in enumerate(self.events) if i not in self.used}):
            for waiter in store.waiters(self.instance_id, event):  # oldest first
                if waiter.wait_id in self.bound:
                    continue
                self.bound.add(waiter.wait_id)
                self._schedule(waiter)
        now = datetime.now(UTC)
        for send in sorted(self.sends, key=lambda s: (s.due, s.order)):
            if send.due > now:
                break
            try:
                delivered = rustyflower.adapters.aws.tokens.signal(
                    self.instance_id,
                    send.event,
                    send.data,
                    store=store,
                    stepfunctions=stepfunctions,
                    now=now,
                )
            except NoWaiterError:
                if (now - send.due).total_seconds() > SIGNAL_GRACE_SECONDS:
                    self.sends.remove(send)
                    self.dropped.append(send.event)
                continue
            self.sends.remove(send)
            self.sent.append(f"{send.event} -> {delivered.wait_id}")

    def _schedule(self, waiter: rustyflower.adapters.aws.tokens.Waiter) -> None:
        for index, (event, data, after) in enumerate(self.events):
            if index in self.used or event != waiter.event:
                continue
            self.used.add(index)
            since = parse_timestamp(waiter.since) or datetime.now(UTC)
            self.sends.append(
                Send(since + timedelta(seconds=after), next(self._order), event, data)
            )
            return


# --- snapshots from the virtual runtime -------------------------------------------------------


@dataclass(frozen=True)
class CutState:
    """The instance and the outside world right after transition ``seq``."""

    snapshot: Snapshot
    children: dict[str, Snapshot]
    """Child flows in flight at that instant, by instance id (their latest snapshots)."""
    used: frozenset[int]
    bound: frozenset[str]
    sends: tuple[Send, ...]


def cut_states(
    case: Case, instance_id: str, start: datetime = EPOCH, only: int | None = None
) -> list[CutState]:
    """The running snapshots of ``case`` (run as ``instance_id`` from ``start``; every
    one, or the one after transition ``only``), each with the state of the world (the
    event sender, the child flows) at that cut."""
    assert case.flow is not None
    world: World = world_for(case)
    found: list[CutState] = []
    children: dict[str, list[Snapshot]] = {}

    def record(snapshot: Snapshot, keys: Any) -> Snapshot:
        if snapshot.instance_id != instance_id:
            children.setdefault(snapshot.instance_id, []).append(snapshot)
        elif not snapshot.finished and only in (None, snapshot.seq):
            found.append(_capture(world, snapshot, children))
        return round_trip(snapshot, keys)

    # cutting (without failover) changes nothing in a run; the children's snapshots are
    # needed at every transition, the instance's own at the chosen one only
    cut: Any = "every"
    if only is not None and not case.subflows:
        cut = only.__eq__
    run_flow(
        case.flow,
        case.input,
        world,
        instance_id=instance_id,
        now=start,
        cut=cut,
        transfer=record,
    )
    return found


def _capture(world: World, snapshot: Snapshot, children: dict[str, list[Snapshot]]) -> CutState:
    at = _time(snapshot.updated_at)
    in_flight: dict[str, Snapshot] = {}
    for child_id, outcome in world._children.items():
        if outcome.ended_at <= at:
            continue  # finished by then: its execution would start again from its input
        earlier = [s for s in children.get(child_id, ()) if _time(s.updated_at) <= at]
        if earlier and not earlier[-1].finished:
            in_flight[child_id] = earlier[-1]
    sends = []
    for entry in world._sends:
        if entry.instance_id == snapshot.instance_id:
            assert isinstance(entry.event, EventReceived)
            sends.append(Send(entry.when, entry.order, entry.event.event, entry.event.data))
    return CutState(
        snapshot=snapshot,
        children=in_flight,
        used=frozenset(world._used),
        bound=frozenset(w for i, w in world._bound if i == snapshot.instance_id),
        sends=tuple(sends),
    )


def _time(text: str) -> datetime:
    moment = parse_timestamp(text)
    assert moment is not None, text
    return moment


def cut_seconds(case: Case, instance_id: str) -> dict[int, float]:
    """seq -> virtual seconds from the start, for every running snapshot of ``case``."""
    return {
        state.snapshot.seq: (_time(state.snapshot.updated_at) - EPOCH).total_seconds()
        for state in cut_states(case, instance_id)
    }


def cut_at(case: Case, instance_id: str, seq: int, seconds: float, now: datetime) -> CutState:
    """The cut after transition ``seq`` (``seconds`` into the run), from a virtual run
    whose clock reads ``now`` there."""
    found = cut_states(case, instance_id, now - timedelta(seconds=seconds), only=seq)
    if len(found) != 1:
        raise AssertionError(f"{case.id} as {instance_id}: no running snapshot at seq {seq}")
    return found[0]


# --- runs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Launch:
    """What to start: the machine, the execution input and name, the event sender."""

    machine: str
    document: dict[str, Any]
    name: str
    sender: EventSender | None = None
    not_before: datetime | None = None
    """Start the execution at this time (a continuation's clock), not before."""


@dataclass
class Run:
    key: str
    prepare: Callable[[datetime], Launch]
    expected_seconds: float
    timeout: float
    done: threading.Event = field(default_factory=threading.Event)
    launch: Launch | None = None
    execution_arn: str = ""
    started: float = 0.0
    outcome: Outcome | None = None
    failure: BaseException | None = None


class MotoWorld:
    """moto (executor on), the two tables, the functions' environment, the real handlers."""

    def __init__(self, stepfunctions: Any, dynamodb: Any, router: LambdaRouter) -> None:
        self.stepfunctions = stepfunctions
        self.dynamodb = dynamodb
        self.router = router
        self.store = rustyflower.adapters.aws.tokens.TokenStore(TOKENS_TABLE, dynamodb, 3600)
        self._deployed: dict[str, str] = {}
        self._deploy_lock = threading.Lock()

    def deploy(self, definition: FlowDefinition, flows: Iterable[FlowDefinition] = ()) -> str:
        """Create the machines of ``definition`` and of the flows it calls (once each)."""
        every = [definition, *flows]
        arns = flow_arns(every)
        with self._deploy_lock:
            for one in every:
                arn = machine_arn(one)
                known = self._deployed.get(arn)
                if known is not None:
                    if known != machine_comment(one):
                        raise AssertionError(f"{arn} is deployed for another definition")
                    continue
                document = compile_flow(
                    one,
                    activity_function_arn=ACTIVITY_FUNCTION,
                    token_function_arn=TOKENS_FUNCTION,
                    flow_arns=arns,
                )
                self.stepfunctions.create_state_machine(
                    name=arn.rsplit(":", 1)[-1], definition=json.dumps(document), roleArn=ROLE_ARN
                )
                self._deployed[arn] = document["Comment"]
        return machine_arn(definition)

    def start(self, machine: str, document: Any, name: str) -> str:
        return str(
            self.stepfunctions.start_execution(
                stateMachineArn=machine, name=name, input=json.dumps(document)
            )["executionArn"]
        )

    def outcome(self, execution_arn: str) -> Outcome | None:
        """The execution's outcome, or None while it runs."""
        described = self.stepfunctions.describe_execution(executionArn=execution_arn)
        if described["status"] == "RUNNING":
            return None
        seconds = 0.0
        if described.get("stopDate") and described.get("startDate"):
            seconds = (described["stopDate"] - described["startDate"]).total_seconds()
        return Outcome(
            described["status"],
            _json_or_text(described.get("output")),
            described.get("error"),
            described.get("cause"),
            execution_arn,
            seconds,
            started=described["startDate"].astimezone(UTC).isoformat(),
        )

    def running(self, execution_arn: str) -> bool:
        """Whether the execution still runs, read from moto's backend: ``describe_execution``
        costs a millisecond of the GIL that moto's executor threads need."""
        backend = stepfunctions_parser_backends[ACCOUNT][REGION]
        return str(backend.describe_execution(execution_arn).status) == "RUNNING"

    def wait(self, execution_arn: str, timeout: float = 30.0) -> Outcome:
        deadline = time.monotonic() + timeout
        while True:
            found = self.outcome(execution_arn)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{execution_arn} still running after {timeout} s")
            time.sleep(0.05)

    def wait_for_waiter(
        self, instance_id: str, event: str, timeout: float = 15.0
    ) -> rustyflower.adapters.aws.tokens.Waiter:
        return first_waiter(self.store, instance_id, event, timeout)

    def stop_all(self, timeout: float = 15.0) -> None:
        """Stop what still runs, so that no executor thread outlives moto."""
        self.router.closed.set()
        stop_executions(
            self.stepfunctions,
            self.dynamodb,
            timeout=timeout,
            more_tokens=self.router.deadline_tokens,
            strict=False,
        )


class ParsedOnce(AmazonStateLanguageParser):
    """moto parses a machine's definition with ANTLR at every execution start: for the
    large compiled machines (routers, resume copies) that is most of moto's CPU, which
    starves the other executions' threads of the GIL and makes their timing drift. The
    syntax tree of a definition is kept; each execution still builds its own program
    from it (``Preprocessor``), exactly as moto does."""

    _trees: ClassVar[dict[str, Any]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    @staticmethod
    def parse(definition: str) -> tuple[Any, Any]:
        with ParsedOnce._lock:
            tree = ParsedOnce._trees.get(definition)
        if tree is None:
            program, tree = AmazonStateLanguageParser.parse(definition)
            with ParsedOnce._lock:
                ParsedOnce._trees[definition] = tree
            return program, tree
        return Preprocessor().visit(tree), tree


class SignalsRetried:
    """The Step Functions client, with ``SendTaskSuccess`` retried past a moto 5.2 race.

    moto's SendTaskSuccess walks the RUNNING executions and reads each one's worker; an
    execution being started in another thread (a child flow) is RUNNING before it has
    one: ``AttributeError: 'NoneType' object has no attribute 'callback_pool_manager'``.
    Everything else is the client as it is.
    """

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def send_task_success(self, **arguments: Any) -> Any:
        for _ in range(50):
            try:
                return self._client.send_task_success(**arguments)
            except AttributeError:
                time.sleep(0.01)
        return self._client.send_task_success(**arguments)


def _reset_lambda_caches() -> None:
    lambda_aws.aws.client.cache_clear()
    lambda_aws.activity.reset()


@contextlib.contextmanager
def moto_world(
    durations: Mapping[str, Callable[[Any], float]] = VIRTUAL_DURATIONS,
) -> Iterator[MotoWorld]:
    """Open moto with the executor on and the real handlers behind its Lambda invokes."""
    router = LambdaRouter(durations)
    quiet = [logging.getLogger(n) for n in ("moto", "aws_lambda_powertools", names.SERVICE)]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.CRITICAL)
    try:
        with (
            mock.patch.dict(os.environ, FUNCTION_ENV),
            mock_aws(config=MOTO_CONFIG),
            step_functions_fixes(router.invoke),  # the local AWS's, exact timestamps included
            mock.patch.object(execution_worker, "AmazonStateLanguageParser", ParsedOnce),
        ):
            _reset_lambda_caches()
            dynamodb = boto3.client("dynamodb", region_name=REGION)
            create_tables(dynamodb)
            # build the handlers' clients and runner here, not in moto's executor threads
            # (boto3's default session is not thread-safe)
            lambda_aws.aws.client("dynamodb")
            lambda_aws.activity.runner()
            stepfunctions = SignalsRetried(boto3.client("stepfunctions", region_name=REGION))
            world = MotoWorld(stepfunctions, dynamodb, router)
            try:
                yield world
            finally:
                world.stop_all()
    finally:
        _reset_lambda_caches()
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)


# --- many runs at once ------------------------------------------------------------------------


class Fleet:
    """Runs executions side by side from a driver thread, longest expected first.

    ``submit`` queues a run (``prepare(begin)`` builds its launch right before it starts,
    ``begin`` being the whole second a continuation starts at: at most
    ``starts_per_second`` of them share one, so that none starts late; so a
    continuation's clock is the real one); ``result`` waits for its outcome.
    """

    def __init__(
        self,
        world: MotoWorld,
        *,
        concurrency: int = 32,
        poll: float = 0.05,
        status_every: float = 0.25,
        launches_per_tick: int = 2,
        starts_per_second: int = 4,
    ) -> None:
        self.world = world
        self.concurrency = concurrency
        self.poll = poll
        self.status_every = status_every
        self.launches_per_tick = launches_per_tick
        self.starts_per_second = starts_per_second
        self._slots: tuple[datetime, int] | None = None
        self.runs: dict[str, Run] = {}
        self._queue: list[tuple[float, int, str]] = []
        self._ready: list[Run] = []
        self._running: list[Run] = []
        self._lock = threading.Lock()
        self._order = itertools.count()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drive, name="moto-fleet", daemon=True)

    def go(self) -> None:
        """Start launching (``result`` does it too): submit a batch first, then go."""
        with self._lock:
            if not self._thread.is_alive() and not self._stop.is_set():
                self._thread.start()

    def submit(
        self,
        key: str,
        prepare: Callable[[datetime], Launch],
        *,
        expected_seconds: float = 0.0,
        timeout: float = 60.0,
    ) -> Run:
        with self._lock:
            run = self.runs.get(key)
            if run is None:
                run = Run(key, prepare, expected_seconds, timeout)
                self.runs[key] = run
                heapq.heappush(self._queue, (-expected_seconds, next(self._order), key))
            return run

    def result(self, key: str) -> Outcome:
        self.go()
        run = self.runs[key]
        limit = run.expected_seconds + run.timeout + 600  # the queue ahead of it, at worst
        if not run.done.wait(limit):
            raise AssertionError(f"{key}: no outcome after {limit:.0f} s")
        if run.failure is not None:
            raise AssertionError(f"{key}: the harness failed: {run.failure!r}") from run.failure
        assert run.outcome is not None
        return run.outcome

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    # --- the driver ----------------------------------------------------------------------

    def _drive(self) -> None:
        last_status = 0.0
        while not self._stop.is_set():
            self._launch()
            for run in list(self._running):
                sender = run.launch.sender if run.launch else None
                if sender is not None:
                    try:
                        sender.step(self.world.store, self.world.stepfunctions)
                    except Exception as error:
                        self._fail(run, error)
                self._start_due()
            now = time.monotonic()
            if now - last_status >= self.status_every:
                last_status = now
                for run in list(self._running):
                    self._check(run, now)
            time.sleep(self.poll)

    def _slot(self) -> datetime:
        """The next start time: ``next_start()``, or a later second when it is full."""
        moment = next_start()
        if self._slots is not None:
            last, used = self._slots
            if last >= moment:
                moment = last if used < self.starts_per_second else last + timedelta(seconds=1)
        used = self._slots[1] + 1 if self._slots and self._slots[0] == moment else 1
        self._slots = (moment, used)
        return moment

    def _start_due(self) -> None:
        """Start the continuations whose clock has come (before anything else)."""
        now = datetime.now(UTC)
        for run in [r for r in self._ready if r.launch and (r.launch.not_before or now) <= now]:
            self._ready.remove(run)
            self._start(run)

    def _launch(self) -> None:
        self._start_due()
        for _ in range(self.launches_per_tick):
            if len(self._running) + len(self._ready) >= self.concurrency:
                return
            with self._lock:
                if not self._queue:
                    return
                _, _, key = heapq.heappop(self._queue)
                run = self.runs[key]
            try:
                run.launch = run.prepare(self._slot())
            except Exception as error:
                self._fail(run, error)
                continue
            if run.launch.not_before is None:
                self._start(run)
            else:
                self._ready.append(run)

    def _start(self, run: Run) -> None:
        assert run.launch is not None
        try:
            run.started = time.monotonic()
            run.execution_arn = self.world.start(
                run.launch.machine, run.launch.document, run.launch.name
            )
        except Exception as error:
            self._fail(run, error)
            return
        self._running.append(run)

    def _check(self, run: Run, now: float) -> None:
        try:
            found = (
                None
                if self.world.running(run.execution_arn)
                else self.world.outcome(run.execution_arn)
            )
        except Exception as error:
            self._fail(run, error)
            return
        if found is None:
            if now - run.started > run.timeout:
                self._fail(run, AssertionError(f"still running after {run.timeout:.0f} s"))
                with contextlib.suppress(Exception):
                    self.world.stepfunctions.stop_execution(executionArn=run.execution_arn)
            return
        sender = run.launch.sender if run.launch else None
        planned = run.launch.not_before if run.launch else None
        late = 0.0
        if planned is not None and found.started:
            late = (datetime.fromisoformat(found.started) - planned).total_seconds()
        run.outcome = replace(
            found,
            late=late,
            sent=tuple(sender.sent) if sender else (),
            dropped=tuple(sender.dropped) if sender else (),
        )
        self._running.remove(run)
        run.done.set()

    def _fail(self, run: Run, error: BaseException) -> None:
        run.failure = error
        if run in self._running:
            self._running.remove(run)
        run.done.set()


# --- launches of a corpus case --------------------------------------------------------------


def base_instance(case: Case) -> str:
    return f"{case.file}.{case.name}"


def cut_instance(case: Case, seq: int) -> str:
    return f"{case.file}.{case.name}.cut{seq}"


def fresh_launch(world: MotoWorld, case: Case) -> Callable[[], Launch]:
    """A fresh execution of ``case`` (instance ``<file>.<case>``, epoch 0)."""
    assert case.flow is not None
    machine = world.deploy(case.flow, case.subflows)
    instance_id = base_instance(case)

    def prepare(begin: datetime) -> Launch:  # starts at once
        return Launch(
            machine,
            fresh_input(instance_id, case.input),
            execution_name(instance_id, 0),
            EventSender.for_case(case, instance_id) if case.events else None,
        )

    return prepare


def cut_launch(world: MotoWorld, case: Case, seq: int) -> tuple[Callable[[], Launch], float]:
    """The continuation of ``case`` cut after transition ``seq``, on the real clock, and
    the virtual seconds of the run left after the cut."""
    assert case.flow is not None
    machine = world.deploy(case.flow, case.subflows)
    instance_id = cut_instance(case, seq)
    offsets = cut_seconds(case, instance_id)
    if seq not in offsets:
        raise AssertionError(f"{case.id} as {instance_id}: no running snapshot at seq {seq}")
    seconds = offsets[seq]

    def prepare(begin: datetime) -> Launch:
        state = cut_at(case, instance_id, seq, seconds, begin)
        snapshot = state.snapshot
        now = parse_timestamp(snapshot.updated_at)
        document = execution_input(snapshot, now=now, children=state.children)
        sender = None
        if case.events:
            sender = EventSender.for_case(case, instance_id)
            sender.used = set(state.used)
            sender.bound = set(state.bound)
            sender.sends = list(state.sends)
        name = execution_name(instance_id, snapshot.epoch)
        return Launch(machine, document, name, sender, not_before=begin)

    return prepare, seconds


# --- a batch of corpus runs -------------------------------------------------------------------


@dataclass(frozen=True)
class RunKey:
    """A run of a corpus case: uninterrupted (``seq`` None) or cut after transition ``seq``."""

    case_id: str
    seq: int | None = None

    @property
    def text(self) -> str:
        return self.case_id if self.seq is None else f"{self.case_id}@{self.seq}"


def run_batch(
    world: MotoWorld,
    cases: Mapping[str, Case],
    keys: Iterable[RunKey],
    *,
    concurrency: int = 32,
    slack: float = 45.0,
) -> dict[str, dict[str, Any]]:
    """Run every key side by side; ``key.text`` -> the outcome (``asdict``) or
    ``{"failure": why}`` when the harness could not get one. ``slack``: the real seconds a
    run may take beyond its virtual ones before it counts as stuck."""
    fleet = Fleet(world, concurrency=concurrency)
    chosen = sorted(set(keys), key=lambda k: (k.case_id, -1 if k.seq is None else k.seq))
    try:
        for key in chosen:
            case = cases[key.case_id]
            total = _virtual_seconds(case)
            if key.seq is None:
                prepare, expected = fresh_launch(world, case), total
            else:
                prepare, at = cut_launch(world, case, key.seq)
                expected = max(total - at, 0.0)
            fleet.submit(key.text, prepare, expected_seconds=expected, timeout=expected + slack)
        fleet.go()
        results: dict[str, dict[str, Any]] = {}
        for key in chosen:
            try:
                results[key.text] = asdict(fleet.result(key.text))
            except AssertionError as error:
                results[key.text] = {"failure": str(error)}
        return results
    finally:
        fleet.close()


def _virtual_seconds(case: Case) -> float:
    assert case.flow is not None
    return run_flow(
        case.flow, case.input, world_for(case), instance_id=base_instance(case)
    ).elapsed_seconds


def outcome_of(result: Mapping[str, Any]) -> Outcome:
    """An outcome read back from ``run_batch``'s JSON-able answer."""
    if "failure" in result:
        raise AssertionError(f"the harness got no outcome: {result['failure']}")
    fields = dict(result)
    fields["sent"] = tuple(fields.get("sent", ()))
    fields["dropped"] = tuple(fields.get("dropped", ()))
    return Outcome(**fields)


def once_per_session(directory: Path, name: str, compute: Callable[[], Any]) -> Any:
    """``compute()``'s JSON answer, computed by one pytest-xdist worker of the session and
    read by the others (an exclusive ``flock`` on a file in ``directory``, which every
    worker of one session shares)."""
    directory.mkdir(parents=True, exist_ok=True)
    answer = directory / f"{name}.json"
    with (directory / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if answer.exists():
                return json.loads(answer.read_text(encoding="utf-8"))
            value = compute()
            answer.write_text(json.dumps(value), encoding="utf-8")
            return value
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
