"""Failover to AWS Step Functions, failback from it, signals to instances living there.

Failover (per instance): check the snapshot can continue on the flow's deployed state
machine (held, finished or too large: refused; definition digest = the machine's), fence
the instance locally, then start the execution ``execution_name(instance, epoch)`` with
``execution_input(snapshot)``, or hand the signed snapshot to the continue Lambda
(``lambda_aws.continuation``) when one is configured. An execution of that name that
exists already is the answer of a repeated failover (nothing is started twice).

Failback: stop the execution, replay its history into a snapshot
(``adapters.aws.failback``), resume it locally with ``take_ownership``.

Signals: ``adapters.aws.tokens.signal``: the oldest stored task token of the event gets
``SendTaskSuccess`` with the event's data.

Machines are found by an explicit ARN, a ``flow[@version]=ARN`` map, or the deployment's
prefix (``RUSTYFLOWER_STATE_MACHINE_PREFIX`` + ``<flow>-v<version>``, as Terraform names
them).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import boto3  # type: ignore[import-untyped, unused-ignore]
import botocore.session  # type: ignore[import-untyped, unused-ignore]
from botocore.config import Config  # type: ignore[import-untyped, unused-ignore]
from botocore.configprovider import (  # type: ignore[import-untyped, unused-ignore]
    ConstantProvider,
)
from botocore.exceptions import (  # type: ignore[import-untyped, unused-ignore]
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
)

from rustyflower.adapters.aws.deployment import (
    DEFAULT_TOKEN_TTL,
    ENV_SNAPSHOT_BUCKET,
    ENV_STATE_MACHINE_PREFIX,
    ENV_TOKENS_TABLE,
    base_snapshot_key,
    state_machine_name,
)
from rustyflower.adapters.aws.deployment import execution_arn as execution_arn_of
from rustyflower.adapters.aws.errors import DigestMismatchError, ResumeError
from rustyflower.adapters.aws.failback import failback_execution, stop_execution
from rustyflower.adapters.aws.names import user_state_of
from rustyflower.adapters.aws.resume import (
    check_digest,
    deployed_digest,
    execution_input,
    execution_name,
)
from rustyflower.adapters.aws.tokens import SignalError, TokenStore
from rustyflower.adapters.aws.tokens import signal as send_signal
from rustyflower.adapters.continuity import ledger
from rustyflower.adapters.continuity.cloud import Clock, CloudContinuity, Continued, utc_now
from rustyflower.adapters.continuity.errors import ContinuityConfigError, ContinuityError
from rustyflower.adapters.continuity.handover import (
    Handover,
    give_back,
    notify_parent,
    resume_from_cloud,
)
from rustyflower.adapters.continuity.outcomes import CloudView, Delivery, Outcome
from rustyflower.core.engine import Snapshot
from rustyflower.core.instance_store import InstanceStore
from rustyflower.core.model import FlowDefinition
from rustyflower.core.settings import setting_text
from rustyflower.core.snapshot import SnapshotKeys
from rustyflower.core.snapshot.document import decode_snapshot

__all__ = [
    "ENV_CONTINUE_FUNCTION",
    "ENV_REGION",
    "AwsClients",
    "AwsContinuity",
    "AwsSettings",
    "signal_aws",
]

ENV_CONTINUE_FUNCTION = "RUSTYFLOWER_CONTINUE_FUNCTION"
"""Name or ARN of the continue Lambda (``lambda_aws.continuation.handler``)."""
ENV_REGION = "AWS_REGION"
ENV_ENDPOINT_URL = "AWS_ENDPOINT_URL"
ENV_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
ENV_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"
ENV_SESSION_TOKEN = "AWS_SESSION_TOKEN"
REFUSALS = frozenset(
    {
        "BadRequest",
        "DecryptionError",
        "DefinitionError",
        "DigestMismatchError",
        "FlowNotDeployed",
        "MalformedSnapshotError",
        "ResumeError",
        "SignatureInvalidError",
        "SignatureMissingError",
        "UnknownKeyError",
        "UnsupportedFormatError",
    }
)
"""Errors of the continue function that mean "nothing was started" for certain."""
_REFUSING_CODES = frozenset(
    {"StateMachineDoesNotExist", "StateMachineDeleting", "InvalidExecutionInput", "InvalidArn"}
)


class _Refused(ContinuityError):
    """AWS refused the handover for certain: no execution was started."""


@dataclass(frozen=True)
class AwsSettings:
    """Where the flows' machines are, and the optional AWS resources the CLI uses."""

    region: str | None = None
    state_machine_arn: str | None = None
    """One machine for every instance (a batch of one flow)."""
    state_machines: Mapping[str, str] = field(default_factory=dict)
    """``flow@version`` or ``flow`` -> the ARN of its machine."""
    state_machine_prefix: str | None = None
    """``arn:aws:states:R:A:stateMachine:rf-``: + ``<flow>-v<version>`` (Terraform's names)."""
    continue_function: str | None = None
    tokens_table: str | None = None
    token_ttl: int = DEFAULT_TOKEN_TTL
    snapshot_bucket: str | None = None
    timeout: float | None = None
    """Seconds of each AWS call, tried once (None: boto3's defaults and retries); set
    for ``status`` and ``failback --force``, which must not hang on an unreachable AWS."""
    endpoint_url: str | None = None
    """Where every service is reached (a local AWS); None: AWS's own endpoints."""
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    """Credentials given with the settings (a local AWS's record): they are handed to
    boto3 explicitly, so the process environment need not carry them; None: boto3's
    usual chain (environment, profile, instance role)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> AwsSettings:
        """Settings from ``environ`` (``AWS_REGION``/``AWS_DEFAULT_REGION``,
        ``RUSTYFLOWER_STATE_MACHINE_PREFIX``, ``RUSTYFLOWER_CONTINUE_FUNCTION``,
        ``RUSTYFLOWER_TOKENS_TABLE``, ``RUSTYFLOWER_SNAPSHOT_BUCKET``, ``AWS_ENDPOINT_URL``,
        ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``);
        ``overrides`` that are not None win."""

        def text(name: str) -> str | None:
            return setting_text(environ, name)

        values: dict[str, Any] = {
            "region": text(ENV_REGION) or text("AWS_DEFAULT_REGION"),
            "state_machine_prefix": text(ENV_STATE_MACHINE_PREFIX),
            "continue_function": text(ENV_CONTINUE_FUNCTION),
            "tokens_table": text(ENV_TOKENS_TABLE),
            "snapshot_bucket": text(ENV_SNAPSHOT_BUCKET),
            "endpoint_url": text(ENV_ENDPOINT_URL),
            "access_key_id": text(ENV_ACCESS_KEY_ID),
            "secret_access_key": text(ENV_SECRET_ACCESS_KEY),
            "session_token": text(ENV_SESSION_TOKEN),
        }
        values.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**values)

    def machine_for(self, definition: FlowDefinition) -> str:
        """The ARN of the machine compiled from ``definition``."""
        for key in (f"{definition.name}@{definition.version}", definition.name):
            found = self.state_machines.get(key)
            if found:
                return found
        if self.state_machine_arn:
            return self.state_machine_arn
        if self.state_machine_prefix:
            return self.state_machine_prefix + state_machine_name(
                definition.name, definition.version
            )
        raise ContinuityConfigError(
            f"no state machine for flow {definition.key}: give --state-machine-arn, "
            f"--state-machine {definition.name}=ARN or {ENV_STATE_MACHINE_PREFIX}"
        )


class AwsClients:
    """boto3 clients, made when first used: with the endpoint and credentials of the
    settings when they carry them, boto3's usual chain for the rest."""

    def __init__(
        self,
        region: str | None = None,
        timeout: float | None = None,
        *,
        settings: AwsSettings | None = None,
        **given: Any,
    ) -> None:
        self.region = region
        self.connection = _connection_arguments(settings)
        self.config = (
            None
            if timeout is None
            else Config(
                connect_timeout=timeout,
                read_timeout=timeout,
                retries={"total_max_attempts": 1},
            )
        )
        self._clients: dict[str, Any] = dict(given)
        self._made: Any = None

    def _session(self) -> Any:
        """boto3's default session; for an endpoint given with its credentials (a local
        AWS), one whose named profile (``AWS_PROFILE``) is set aside: a profile missing
        here, or another account's, must not stand in the way of the local cloud."""
        if "endpoint_url" not in self.connection or "aws_access_key_id" not in self.connection:
            return boto3
        if self._made is None:
            core = botocore.session.Session()
            store = core.get_component("config_store")
            store.set_config_provider("profile", ConstantProvider(None))
            self._made = boto3.session.Session(botocore_session=core)
        return self._made

    def __call__(self, service: str) -> Any:
        found = self._clients.get(service)
        if found is None:
            with _aws(f"connecting to {service}"):
                found = self._session().client(
                    service, region_name=self.region, config=self.config, **self.connection
                )
            self._clients[service] = found
        return found


def _connection_arguments(settings: AwsSettings | None) -> dict[str, str]:
    """``boto3.client``'s endpoint and credential arguments the settings carry (a key
    without its secret is boto3's to complain about: it is given as it is)."""
    if settings is None:
        return {}
    given = {
        "endpoint_url": settings.endpoint_url,
        "aws_access_key_id": settings.access_key_id,
        "aws_secret_access_key": settings.secret_access_key,
        "aws_session_token": settings.session_token,
    }
    return {name: value for name, value in given.items() if value}


@contextmanager
def _aws(doing: str) -> Iterator[None]:
    """AWS SDK errors as one-line ContinuityErrors."""
    try:
        yield
    except ClientError as error:
        detail = error.response.get("Error", {})
        raise ContinuityError(
            f"AWS refused {doing}: {detail.get('Code', '?')}: {detail.get('Message', error)}"
        ) from None
    except NoRegionError:
        raise ContinuityConfigError(
            f"no AWS region for {doing}: set AWS_REGION (or --region)"
        ) from None
    except NoCredentialsError:
        raise ContinuityConfigError(
            f"no AWS credentials for {doing} (environment, profile or instance role)"
        ) from None
    except BotoCoreError as error:
        raise ContinuityError(f"AWS could not be reached while {doing}: {error}") from None


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class AwsContinuity(CloudContinuity):
    """Failover to and failback from Step Functions for the instances of one local store."""

    cloud = "aws"
    cloud_name = "AWS"
    refusals = (_Refused, DigestMismatchError, ResumeError)
    child_errors = (ClientError, BotoCoreError)

    def __init__(
        self,
        store: InstanceStore | None,
        settings: AwsSettings,
        clients: AwsClients | None = None,
        *,
        clock: Clock = utc_now,
        keys: SnapshotKeys | None = None,
    ) -> None:
        super().__init__(store, keys, now=clock)
        self.settings = settings
        self.clients = clients or AwsClients(settings.region, settings.timeout, settings=settings)
        self.clock = clock
        self._digests: dict[str, str | None] = {}

    def _guard(self, doing: str) -> contextlib.AbstractContextManager[None]:
        return _aws(doing)

    # --- failover ---------------------------------------------------------------------

    def _preflight(self, snapshot: Snapshot) -> None:
        execution_input(snapshot, now=self.clock())  # held, finished, too large: ResumeError
        if self.settings.continue_function is None:
            machine = self.settings.machine_for(snapshot.definition)
            check_digest(snapshot, self._deployed_digest(machine, snapshot.definition))

    def _deployed_digest(self, machine: str, definition: FlowDefinition) -> str | None:
        if machine not in self._digests:
            try:
                described = self.clients("stepfunctions").describe_state_machine(
                    stateMachineArn=machine
                )
            except ClientError as error:
                if _code(error) in ("StateMachineDoesNotExist", "InvalidArn"):
                    raise _Refused(
                        f"flow {definition.key} has no state machine {machine}: compile it "
                        "(rustyflower export asl) and deploy it first"
                    ) from None
                raise
            self._digests[machine] = deployed_digest(described)
        return self._digests[machine]

    def _continue(self, handed: Handover) -> Continued:
        if self.settings.continue_function is not None:
            return Continued(*self._via_function(handed))
        return Continued(*self._start(handed))

    def _start(self, handed: Handover) -> tuple[str, str, str]:
        snapshot = handed.snapshot
        sfn = self.clients("stepfunctions")
        machine = self.settings.machine_for(snapshot.definition)
        check_digest(snapshot, self._deployed_digest(machine, snapshot.definition))
        document = execution_input(
            snapshot,
            now=self.clock(),
            children={child.instance_id: child for child in handed.children},
        )
        name = execution_name(snapshot.instance_id, snapshot.epoch)
        arn = execution_arn_of(machine, name)
        existing = self._describe(arn)
        if existing is not None:
            return arn, "existing", str(existing.get("status"))
        try:
            sfn.start_execution(stateMachineArn=machine, name=name, input=json.dumps(document))
        except ClientError as error:
            code = _code(error)
            if code == "ExecutionAlreadyExists":
                found = self._describe(arn) or {}
                return arn, "existing", str(found.get("status", "RUNNING"))
            if code in _REFUSING_CODES:
                message = error.response.get("Error", {}).get("Message", "")
                raise _Refused(f"Step Functions refused the execution: {code}: {message}") from None
            raise
        return arn, "started", "RUNNING"

    def _via_function(self, handed: Handover) -> tuple[str, str, str]:
        function = self.settings.continue_function
        response = self.clients("lambda").invoke(
            FunctionName=function,
            InvocationType="RequestResponse",
            Payload=handed.request(self.keys),
        )
        body = response["Payload"].read() if "Payload" in response else b""
        try:
            answer = json.loads(body or b"null")
        except ValueError:
            answer = None
        if response.get("FunctionError"):
            name = answer.get("errorType") if isinstance(answer, dict) else None
            message = (
                answer.get("errorMessage")
                if isinstance(answer, dict)
                else body[:300].decode("utf-8", "replace")
            )
            text = f"the continue function {function} answered {name or 'an error'}: {message}"
            if name in REFUSALS:
                raise _Refused(text)
            raise ContinuityError(text)
        if not isinstance(answer, dict) or not isinstance(answer.get("executionArn"), str):
            raise ContinuityError(f"the continue function {function} gave no executionArn")
        result = "started" if answer.get("status") == "started" else "existing"
        return answer["executionArn"], result, str(answer.get("executionStatus") or "RUNNING")

    def _record(self, handed: Handover, continued: Continued) -> None:
        snapshot = handed.snapshot
        arn = continued.where
        children = [child.instance_id for child in handed.children]
        ledger.record(
            self.store,
            snapshot.instance_id,
            {
                "cloud": "aws",
                "epoch": str(snapshot.epoch),
                "seq": str(snapshot.seq),
                "execution_arn": arn,
                "children": children or None,
            },
        )
        for child in handed.children:
            try:
                machine = self.settings.machine_for(child.definition)
            except ContinuityConfigError:
                continue
            name = execution_name(child.instance_id, snapshot.epoch)  # the parent's epoch
            ledger.record(
                self.store,
                child.instance_id,
                {
                    "cloud": "aws",
                    "epoch": str(child.epoch),
                    "seq": str(child.seq),
                    "execution_arn": execution_arn_of(machine, name),
                    "parent": snapshot.instance_id,
                },
            )

    def _describe(self, arn: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.clients("stepfunctions").describe_execution(
                executionArn=arn
            )
        except ClientError as error:
            if _code(error) == "ExecutionDoesNotExist":
                return None
            raise
        return found

    # --- failback -----------------------------------------------------------------------

    def _failback_one(self, instance_id: str, *, root: bool) -> Outcome:
        """Stop the execution, read it back as a snapshot, resume it here."""
        store = self.store
        info = self._owned(instance_id)
        local = replace(store.load(instance_id, fresh=True), epoch=info.epoch)
        arn = self._execution_of(instance_id, local)
        described = self._describe(arn)
        if described is None:  # the failover never started it: take the local snapshot back
            back = give_back(store, local)
            return self._outcome(back, "reclaimed", arn, "no execution")
        base = self._base(described, local)
        snapshot = failback_execution(
            self.clients("stepfunctions"), arn, base=base, definition=local.definition, stop=True
        )
        back = resume_from_cloud(store, snapshot, "aws")
        notify_parent(store, back, self.now())
        return self._outcome(back, "resumed", arn, str(described.get("status")))

    def _execution_of(self, instance_id: str, local: Snapshot) -> str:
        """The ARN of the execution continuing the instance at its current epoch."""
        return ledger.read(self.store, instance_id).get("execution_arn") or execution_arn_of(
            self.settings.machine_for(local.definition), execution_name(instance_id, local.epoch)
        )

    def _stop_and_read(self, instance_id: str, local: Snapshot) -> Snapshot:
        arn = self._execution_of(instance_id, local)
        described = self._describe(arn)
        if described is None:
            raise ContinuityError(f"AWS has no execution {arn}")
        base = self._base(described, local)
        stepfunctions = self.clients("stepfunctions")
        stop_execution(stepfunctions, arn, timeout=self.settings.timeout or 10.0)
        return failback_execution(stepfunctions, arn, base=base, definition=local.definition)

    def describe(self, instance_id: str) -> CloudView:
        """DescribeExecution of the instance's execution, and the state it entered last
        (GetExecutionHistory, newest first)."""
        with _aws(f"asking AWS about {instance_id!r}"):
            info = self.store.info(instance_id)
            local = replace(self.store.load(instance_id), epoch=info.epoch)
            arn = self._execution_of(instance_id, local)
            described = self._describe(arn)
            if described is None:
                return CloudView("aws", True, status="NOT FOUND", where=arn)
            events = self.clients("stepfunctions").get_execution_history(
                executionArn=arn, reverseOrder=True, maxResults=100, includeExecutionData=False
            )["events"]
        # newest first on AWS; the highest id either way (emulators ignore reverseOrder)
        states = [event for event in events if "stateEnteredEventDetails" in event]
        newest = max(states, key=lambda event: int(event.get("id", 0)), default=None)
        entered = str(newest["stateEnteredEventDetails"].get("name", "")) if newest else ""
        position = user_state_of(entered.rsplit("/", 1)[-1]) if entered else ""
        return CloudView(
            "aws",
            True,
            status=str(described.get("status")),
            positions=(position,) if position else (),
            where=arn,
        )

    def _base(self, described: Mapping[str, Any], local: Snapshot) -> Snapshot | None:
        """The snapshot the execution continued: the local one, or the copy in the bucket."""
        try:
            document = json.loads(described.get("input") or "null")
        except ValueError:
            document = None
        rf = document.get("rf") if isinstance(document, dict) else None
        if not isinstance(rf, dict) or rf.get("resume") is None:
            return None  # started fresh: the reader starts from the definition
        same = (rf.get("instance_id"), rf.get("epoch"), rf.get("seq"), rf.get("digest")) == (
            local.instance_id,
            local.epoch,
            local.seq,
            local.digest,
        )
        if same:
            return local
        bucket = self.settings.snapshot_bucket
        if not bucket:
            raise ContinuityError(
                f"instance {local.instance_id!r}: the execution continued seq {rf.get('seq')} "
                f"epoch {rf.get('epoch')}, not the snapshot stored here (seq {local.seq}); set "
                f"{ENV_SNAPSHOT_BUCKET} to read the snapshot it continued"
            )
        key = base_snapshot_key(str(described.get("name")), int(rf.get("seq") or 0))
        body = self.clients("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        return decode_snapshot(body, self.keys)

    @staticmethod
    def _outcome(back: Snapshot, result: str, arn: str, execution_status: str) -> Outcome:
        return Outcome(
            back.instance_id,
            "failback",
            "aws",
            result,
            flow=back.definition.key,
            epoch=back.epoch,
            seq=back.seq,
            status=back.status,
            where=arn,
            detail={"execution_status": execution_status},
        )


def signal_aws(
    instance_id: str,
    event: str,
    data: Any,
    settings: AwsSettings,
    clients: AwsClients | None = None,
) -> Delivery:
    """Deliver an event to the oldest waiter of ``instance_id`` in AWS (its task token)."""
    if not settings.tokens_table:
        raise ContinuityConfigError(
            f"instance {instance_id!r} lives in AWS: set {ENV_TOKENS_TABLE} (the task-token "
            "table) to signal it"
        )
    made = clients or AwsClients(settings.region, settings=settings)
    with _aws(f"signalling {instance_id!r}"):
        store = TokenStore(settings.tokens_table, made("dynamodb"), settings.token_ttl)
        try:
            delivered = send_signal(
                instance_id, event, data, store=store, stepfunctions=made("stepfunctions")
            )
        except SignalError as error:
            raise ContinuityError(str(error)) from None
    skipped = f", {delivered.skipped} stale token(s) skipped" if delivered.skipped else ""
    return Delivery("aws", instance_id, event, f"wait {delivered.wait_id}{skipped}")
