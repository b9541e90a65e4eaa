"""The service corpus on moto's Step Functions: the optimized integrations really run.

Every case of ``tests/conformance/services`` is compiled with bindings to moto's SQS
queue, EventBridge bus and S3 bucket, and executed by moto's executor: ``sqs:sendMessage``,
``events:putEvents``, ``aws-sdk:s3:putObject``/``getObject`` run against moto's services
(``http.call`` compiles to the activity Lambda, the real ``lambda_aws.activity`` handler,
which reaches the corpus's HTTP endpoint on 127.0.0.1). Per case:

* uninterrupted: the case's status and output, and what the queue, the bus (read back
  through a rule that copies its events to a queue) and the bucket hold;
* continued after every transition k: the snapshot after k, made by the virtual runtime
  whose service calls go to the same moto resources (:class:`BotoBackends`), continues as
  an execution and ends as the case expects, with the same effects (the part before the
  cut sent its messages to the same queue).

moto needs two fixes here (``moto_service_fixes.py``): AWS SDK error names and
``getObject``'s ``Body``.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from rustyflower.adapters.aws import AwsServiceBindings, compile_flow, execution_input, fresh_input
from rustyflower.adapters.services.http import UrllibHttp
from rustyflower.core.services import (
    EventPublish,
    HttpCall,
    ObjectGet,
    ObjectPut,
    QueueSend,
    ServiceNotFound,
)
from rustyflower.core.services.calls import HttpResponse, with_services
from rustyflower.core.timeutil import parse_timestamp
from rustyflower.testing import EPOCH, FlowLibrary, ScriptedEvent, World, run_flow
from tests.aws.moto_harness import REGION, Outcome, moto_world, problems
from tests.aws.moto_service_fixes import original_error_name, service_fixes
from tests.aws.test_lambda_kit import ACCOUNT, ACTIVITY_FUNCTION, ROLE_ARN, TOKENS_FUNCTION
from tests.conformance.activities import VIRTUAL_DURATIONS, registry
from tests.conformance.corpus import SERVICES_DIR, Case, load_cases
from tests.conformance.services_kit import Endpoint, Seen, decode_object, effect_problems, localise
from tests.conformance.test_conformance import KEYS

pytestmark = [pytest.mark.emulator, pytest.mark.slow]

CASES = load_cases(SERVICES_DIR)
QUEUE_BASE = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/"


class BotoBackends:
    """Service backends over boto3, for the virtual runtime's part of a cut run (the same
    moto resources the compiled machine uses); not a product part: the site runs its own."""

    def __init__(self, sqs: Any, events: Any, s3: Any, prefix: str, http: UrllibHttp) -> None:
        self.sqs, self.events, self.s3, self.prefix, self._http = sqs, events, s3, prefix, http

    def send_message(self, request: QueueSend, key: str) -> str:
        url = QUEUE_BASE + self.prefix + request.queue
        return str(self.sqs.send_message(QueueUrl=url, MessageBody=request.body)["MessageId"])

    def publish_event(self, request: EventPublish, key: str) -> str:
        entry = {
            "EventBusName": self.prefix + request.bus,
            "Source": request.source,
            "DetailType": request.type,
            "Detail": request.detail_text,
        }
        return str(self.events.put_events(Entries=[entry])["Entries"][0]["EventId"])

    def put_object(self, request: ObjectPut, key: str) -> str:
        answer = self.s3.put_object(
            Bucket=self.prefix + request.store, Key=request.key, Body=request.data
        )
        return str(answer["ETag"])

    def get_object(self, request: ObjectGet) -> bytes:
        try:
            answer = self.s3.get_object(Bucket=self.prefix + request.store, Key=request.key)
        except ClientError as error:
            raise ServiceNotFound(str(error)) from None
        return bytes(answer["Body"].read())

    def http(self, request: HttpCall) -> HttpResponse:
        return self._http(request)


class Resources:
    """One run's queue, bus (with a rule copying its events to a queue) and bucket."""

    def __init__(self, case: Case) -> None:
        self.prefix = f"r{uuid.uuid4().hex[:8]}-"
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.events = boto3.client("events", region_name=REGION)
        self.s3 = boto3.client("s3", region_name=REGION)
        effects = case.expect.effects
        names = _names(case)
        for queue in names["queues"]:
            self.sqs.create_queue(QueueName=self.prefix + queue)
        for bus in names["buses"]:
            self.events.create_event_bus(Name=self.prefix + bus)
            copy = self.sqs.create_queue(QueueName=self.prefix + bus + "-copy")["QueueUrl"]
            arn = self.sqs.get_queue_attributes(QueueUrl=copy, AttributeNames=["QueueArn"])
            self.events.put_rule(
                Name=self.prefix + bus + "-all",
                EventBusName=self.prefix + bus,
                EventPattern=json.dumps({"account": [ACCOUNT]}),
            )
            self.events.put_targets(
                Rule=self.prefix + bus + "-all",
                EventBusName=self.prefix + bus,
                Targets=[{"Id": "copy", "Arn": arn["Attributes"]["QueueArn"]}],
            )
        for store in names["stores"]:
            self.s3.create_bucket(Bucket=self.prefix + store)
        self.expected = effects
        self.bindings = AwsServiceBindings(queue_url_base=QUEUE_BASE, name_prefix=self.prefix)

    def drain(self, queue: str) -> list[str]:
        url = QUEUE_BASE + self.prefix + queue
        bodies: list[str] = []
        while True:
            got = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
            messages = got.get("Messages", [])
            if not messages:
                return bodies
            bodies += [message["Body"] for message in messages]

    def seen(self) -> Seen:
        seen = Seen()
        if self.expected is None:
            return seen
        for queue in self.expected.messages:
            seen.messages[queue] = [json.loads(body) for body in self.drain(queue)]
        for bus in self.expected.events:
            copies = [json.loads(body) for body in self.drain(bus + "-copy")]
            seen.events[bus] = [
                {"type": c["detail-type"], "source": c["source"], "detail": c["detail"]}
                for c in copies
            ]
        for store in self.expected.objects:
            bucket = self.prefix + store
            listed = self.s3.list_objects_v2(Bucket=bucket).get("Contents", [])
            seen.objects[store] = {
                item["Key"]: decode_object(
                    item["Key"], self.s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                )
                for item in listed
            }
        return seen


def _names(case: Case) -> dict[str, set[str]]:
    from rustyflower.core.activities import iter_tasks  # noqa: PLC0415
    from rustyflower.core.services import resource_of  # noqa: PLC0415

    found: dict[str, set[str]] = {"queues": set(), "buses": set(), "stores": set()}
    assert case.flow is not None
    for task in iter_tasks(case.flow):
        if task.service is None:
            continue
        name = resource_of(task.service, task.parameters)
        if name is None:
            continue
        kind = {"queue": "queues", "event": "buses", "object": "stores"}[task.service.split(".")[0]]
        found[kind].add(name)
    effects = case.expect.effects
    if effects is not None:
        found["queues"] |= set(effects.messages)
        found["buses"] |= set(effects.events)
        found["stores"] |= set(effects.objects)
    return found


@contextmanager
def services_on_moto() -> Iterator[Any]:
    with (
        moto_world() as world,
        service_fixes(),
        Endpoint() as endpoint,
    ):
        yield world, endpoint


@pytest.fixture(scope="module")
def moto() -> Iterator[Any]:
    with services_on_moto() as opened:
        yield opened


def deploy(world: Any, case: Case, resources: Resources) -> str:
    assert case.flow is not None
    document = compile_flow(
        case.flow,
        activity_function_arn=ACTIVITY_FUNCTION,
        token_function_arn=TOKENS_FUNCTION,
        services=resources.bindings,
    )
    name = f"svc-{resources.prefix}{case.flow.name}"
    created = world.stepfunctions.create_state_machine(
        name=name, definition=json.dumps(document), roleArn=ROLE_ARN
    )
    return str(created["stateMachineArn"])


def run_fresh(world: Any, case: Case, resources: Resources, base: str) -> Outcome:
    machine = deploy(world, case, resources)
    instance_id = f"{case.file}.{case.name}.{resources.prefix}"
    document = fresh_input(instance_id, localise(case.input, base))
    arn = world.start(machine, document, "fresh-" + resources.prefix.rstrip("-"))
    return world.wait(arn, timeout=60)


class _Cut(Exception):
    """Ends a virtual run at its cut (what comes after runs in moto)."""


def virtual_snapshots(
    case: Case, resources: Resources, base: str, start: datetime, only: int | None = None
) -> dict[int, Any]:
    """The running snapshots of a virtual run from ``start`` (every one, or the one after
    transition ``only``, where the run stops), its service calls on ``resources``."""
    assert case.flow is not None
    backends = BotoBackends(
        resources.sqs, resources.events, resources.s3, resources.prefix, UrllibHttp()
    )
    instance_id = f"{case.file}.{case.name}"
    found: dict[int, Any] = {}

    def keep(snapshot: Any, keys: Any) -> Any:
        if snapshot.instance_id == instance_id and not snapshot.finished:
            found[snapshot.seq] = snapshot
            if only == snapshot.seq:
                raise _Cut
        return snapshot

    world = World(
        registry=with_services(registry, backends),
        durations=VIRTUAL_DURATIONS,
        flows=FlowLibrary(case.subflows),
        events=tuple(ScriptedEvent(e.event, e.data, e.after_seconds) for e in case.events),
        keys=KEYS,
    )
    with contextlib.suppress(_Cut):
        run_flow(
            case.flow,
            localise(case.input, base),
            world,
            instance_id=instance_id,
            now=start,
            cut="every" if only is None else only.__eq__,
            transfer=keep,
        )
    return found


def cut_points(case: Case, base: str) -> dict[int, float]:
    """seq -> seconds from the start, for every running snapshot of the case (a virtual
    run on resources of its own, whose effects nothing reads)."""
    snapshots = virtual_snapshots(case, Resources(case), base, EPOCH)
    return {
        seq: (_time(snapshot.updated_at) - EPOCH).total_seconds()
        for seq, snapshot in snapshots.items()
    }


def _time(text: str) -> datetime:
    moment = parse_timestamp(text)
    assert moment is not None
    return moment


def continue_after(
    world: Any, case: Case, base: str, seq: int, seconds: float
) -> tuple[Outcome, Seen]:
    resources = Resources(case)
    machine = deploy(world, case, resources)
    begin = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    snapshot = virtual_snapshots(case, resources, base, begin - timedelta(seconds=seconds), seq)[
        seq
    ]
    document = execution_input(snapshot, now=_time(snapshot.updated_at))
    left = (begin - datetime.now(UTC)).total_seconds()
    if left > 0:
        time.sleep(left)
    arn = world.start(machine, document, f"cut{seq}-" + resources.prefix.rstrip("-"))
    return world.wait(arn, timeout=60), resources.seen()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_uninterrupted(case: Case, moto: Any) -> None:
    world, endpoint = moto
    resources = Resources(case)
    outcome = run_fresh(world, case, resources, endpoint.base)
    assert problems(case, outcome) + effect_problems(case.expect.effects, resources.seen()) == []


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_continues_after_every_transition(case: Case, moto: Any) -> None:
    """Continued after each transition: the case's outcome; the effects hold what the
    case says, a message or an event twice allowed (a call in flight at the cut runs
    again in AWS: SQS and EventBridge do not deduplicate)."""
    world, endpoint = moto
    failures = []
    for seq, seconds in sorted(cut_points(case, endpoint.base).items()):
        outcome, seen = continue_after(world, case, endpoint.base, seq, seconds)
        found = problems(case, outcome) + effect_problems(
            case.expect.effects, seen, repeats_allowed=True
        )
        if found:
            failures.append(f"continued after transition {seq}: " + "; ".join(found))
    assert not failures, f"{case.id}:\n" + "\n".join(failures)


def test_the_moto_fix_is_needed() -> None:
    """The fix above is not dead: moto alone names S3's errors ``s3.*``."""
    assert original_error_name("s3") == "s3"


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_failback_reads_service_calls_back(case: Case, moto: Any) -> None:
    """The history of an execution whose service tasks ran in AWS reads back into the
    engine's snapshot (adapters/aws/failback.py): each integration's answer made the
    portable result, each of its errors the portable name, so the replay ends exactly
    where the execution ended, with its output or error."""
    from rustyflower.adapters.aws.failback import failback_snapshot  # noqa: PLC0415
    from rustyflower.adapters.aws.history import read_history  # noqa: PLC0415

    world, endpoint = moto
    resources = Resources(case)
    outcome = run_fresh(world, case, resources, endpoint.base)
    assert problems(case, outcome) == []
    described = world.stepfunctions.describe_execution(executionArn=outcome.execution_arn)
    history = read_history(world.stepfunctions, outcome.execution_arn)
    snapshot = failback_snapshot(described, history, definition=case.flow)
    assert snapshot.status == case.expect.status
    if case.expect.status == "succeeded":
        assert snapshot.state.output == outcome.output
    else:
        assert snapshot.state.error == case.expect.error
