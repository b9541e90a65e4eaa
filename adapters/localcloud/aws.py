"""A local AWS for rehearsals: moto in server mode, executing the flows' state machines.

``LocalAws.start()`` serves moto on loopback (its Step Functions executor on, so
executions really run), creates what infra/terraform/aws creates for the Lambda
functions (the idempotency and task-token tables, the snapshot bucket, named the way
Terraform names them with its default ``name_prefix``), and routes the machines' Lambda
invokes in-process to the real handlers of ``lambda_aws`` (``lambdas.LambdaRouter``)
running the user's activities. ``deploy`` compiles flows (``adapters.aws.compile_flow``,
what ``rustyflower export asl`` runs) into one machine each, named as Terraform names
them, so ``failover --to aws`` finds each flow's machine by the deployment's prefix.

The Lambda handlers run in this process and reach moto as any AWS client would: through
``AWS_ENDPOINT_URL``; ``site_environment()`` is what the site's commands need to reach it.
Everything ends with ``stop()``: executions stopped, the server shut, the patches undone,
the process environment as it was.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import threading
import urllib.request
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import boto3  # type: ignore[import-untyped, unused-ignore]
from botocore.config import Config  # type: ignore[import-untyped, unused-ignore]
from moto.core.config import default_user_config
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

from rustyflower.adapters.aws import AwsServiceBindings, CompileError, compile_flow
from rustyflower.adapters.aws.deployment import (
    ENV_SNAPSHOT_BUCKET,
    ENV_STATE_MACHINE_PREFIX,
    ENV_TOKENS_TABLE,
    TOKENS_PARTITION_KEY,
    TOKENS_SORT_KEY,
    flow_arns,
    state_machine_name,
)
from rustyflower.adapters.localcloud import hosted
from rustyflower.adapters.localcloud.lambdas import (
    ACTIVITY,
    HANDLERS,
    TOKENS,
    LambdaRouter,
    load_handler,
)
from rustyflower.adapters.localcloud.moto_fixes import step_functions_fixes
from rustyflower.core.activities import ActivityRegistry
from rustyflower.core.errors import RustyFlowerError
from rustyflower.core.model import FlowDefinition

__all__ = [
    "ACCOUNT",
    "DEFAULT_PORT",
    "DEFAULT_PREFIX",
    "DEFAULT_REGION",
    "TARGETS",
    "LocalAws",
    "LocalAwsError",
]

log = logging.getLogger("rustyflower.localcloud")

ACCOUNT = "123456789012"
"""moto's account for any access key (the ARNs' account)."""
DEFAULT_PORT = 4566
"""The port local AWS emulators listen on by convention."""
DEFAULT_REGION = "us-east-1"
DEFAULT_PREFIX = "rustyflower"
"""infra/terraform/aws's default ``name_prefix``."""
IDEMPOTENCY_KEY_ATTRIBUTE = "id"
"""The idempotency table's key, as Terraform keys it (``lambda_aws.settings``)."""

TARGETS = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_STEPFUNCTIONS",
    "AWS_ENDPOINT_URL_DYNAMODB",
    ENV_STATE_MACHINE_PREFIX,
    ENV_SNAPSHOT_BUCKET,
    ENV_TOKENS_TABLE,
    "RUSTYFLOWER_CONTINUE_FUNCTION",
)
"""Settings that point the site at an AWS: set, they mean another AWS than this one."""

_CONFIG = cast(dict[str, dict[str, Any]], default_user_config)
"""moto's process-wide settings (``mock_aws(config=...)`` sets the same ones)."""
_QUIET = ("moto", "werkzeug", "aws_lambda_powertools", "botocore")


class LocalAwsError(RustyFlowerError):
    """The local AWS cannot start (a taken port, a missing handler)."""


@dataclass(frozen=True)
class _Names:
    prefix: str
    region: str

    @property
    def idempotency_table(self) -> str:
        return f"{self.prefix}-idempotency"

    @property
    def tokens_table(self) -> str:
        return f"{self.prefix}-tokens"

    @property
    def snapshot_bucket(self) -> str:
        return f"{self.prefix}-snapshots"

    def function_arn(self, function: str) -> str:
        return f"arn:aws:lambda:{self.region}:{ACCOUNT}:function:{self.prefix}-{function}"

    @property
    def machine_prefix(self) -> str:
        return f"arn:aws:states:{self.region}:{ACCOUNT}:stateMachine:{self.prefix}-"

    @property
    def role_arn(self) -> str:
        return f"arn:aws:iam::{ACCOUNT}:role/{self.prefix}-states-role"


class _Router(LambdaRouter):
    """The router, remembering the deadline tokens (stored nowhere) to end them at stop."""

    def __init__(self, functions: Mapping[str, Any]) -> None:
        super().__init__(functions)
        self.deadline_tokens: list[str] = []

    def before(self, function: str, payload: Any) -> None:
        if isinstance(payload, dict) and payload.get("kind") == "deadline":
            self.deadline_tokens.append(str(payload.get("task_token")))


def _taken(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be served (None: it can), asked before werkzeug is (which
    prints its own message and exits instead of raising)."""
    if port == 0:
        return None
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug binds
        try:
            probe.bind((host, port))
        except OSError as error:
            return "it is in use" if error.errno == errno.EADDRINUSE else str(error.strerror)
    return None


class LocalAws:
    """moto on ``host:port`` with the flows' machines and the real Lambda handlers."""

    def __init__(
        self,
        registry: ActivityRegistry,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        region: str = DEFAULT_REGION,
        prefix: str = DEFAULT_PREFIX,
        quiet: bool = True,
    ) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self.names = _Names(prefix, region)
        self.quiet = quiet
        self.deployed: dict[str, str] = {}
        """``flow@version`` -> its machine's ARN."""
        self._definitions: dict[str, FlowDefinition] = {}
        self._refused: set[str] = set()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._router: _Router | None = None
        self._patches = contextlib.ExitStack()
        self._saved_env: dict[str, str | None] = {}
        self._saved_config: dict[str, Any] = {}
        self._saved_levels: dict[str, int] = {}
        self._clients: dict[str, Any] = {}

    # --- settings --------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def region(self) -> str:
        return self.names.region

    @property
    def machine_prefix(self) -> str:
        return self.names.machine_prefix

    def site_environment(self) -> dict[str, str]:
        """What ``failover --to aws``, ``signal``, ``failback --from aws`` and ``status``
        read to reach this AWS (docs/failover.md)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            ENV_STATE_MACHINE_PREFIX: self.machine_prefix,
            ENV_SNAPSHOT_BUCKET: self.names.snapshot_bucket,
            ENV_TOKENS_TABLE: self.names.tokens_table,
        }

    def function_environment(self) -> dict[str, str]:
        """The functions' settings, as infra/terraform/aws sets them (lambda_aws.settings),
        with Powertools' metrics and tracing off (no CloudWatch or X-Ray here)."""
        return {
            "POWERTOOLS_SERVICE_NAME": "rustyflower-lambda",
            "POWERTOOLS_METRICS_NAMESPACE": "RustyFlower",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "WARNING" if self.quiet else "INFO",
            "RUSTYFLOWER_ACTIVITIES": hosted.SPEC,
            "RUSTYFLOWER_IDEMPOTENCY_TABLE": self.names.idempotency_table,
            "RUSTYFLOWER_IDEMPOTENCY": "on",
            ENV_TOKENS_TABLE: self.names.tokens_table,
            ENV_STATE_MACHINE_PREFIX: self.machine_prefix,
            ENV_SNAPSHOT_BUCKET: self.names.snapshot_bucket,
        }

    # --- start and stop ----------------------------------------------------------------------

    def start(self) -> str:
        """Serve moto, create the tables and the bucket, route the functions; the endpoint.

        A taken port is a ``LocalAwsError`` before anything else changes.
        """
        taken = _taken(self.host, self.port)
        server: BaseWSGIServer | None = None
        if taken is None:
            try:
                server = make_server(
                    self.host,
                    self.port,
                    DomainDispatcherApplication(create_backend_app),
                    threaded=True,
                    request_handler=MotoRequestHandler,
                )
            except SystemExit:  # werkzeug prints why and exits when it cannot bind
                taken = "it is in use"
            except OSError as error:
                taken = str(error.strerror or error)
        if server is None:
            raise LocalAwsError(
                f"cannot serve the local AWS on {self.host}:{self.port}: {taken} (is another "
                "local AWS or emulator running there? choose another --port)"
            )
        self._server = server
        self.port = int(server.server_port)  # port 0: the one the system chose
        try:
            self._configure()
            self._thread = threading.Thread(
                target=server.serve_forever, name="rustyflower-local-aws", daemon=True
            )
            self._thread.start()
            self._post("/moto-api/reset")  # a fresh cloud, even when moto ran in this process
            self._route()
            self._create_resources()
        except BaseException:
            self.stop()
            raise
        return self.endpoint

    def _configure(self) -> None:
        self._patches.enter_context(warnings.catch_warnings())  # the filters, as they were
        # with metrics off, Powertools never flushes an invocation's dimensions, and
        # warns at the next one that it replaces them: that is expected here
        warnings.filterwarnings("ignore", message=r"Dimension '.*' has already been added")
        if self.quiet:
            for name in _QUIET:
                logger = logging.getLogger(name)
                self._saved_levels[name] = logger.level
                logger.setLevel(logging.CRITICAL)
        for section, values in (
            ("stepfunctions", {"execute_state_machine": True}),
            ("lambda", {"use_docker": False}),
        ):
            current = _CONFIG.setdefault(section, {})
            self._saved_config[section] = dict(current)
            current.update(values)
        hosted.registry = self.registry
        # the handlers (and moto's sub-flow client: "localhost:$MOTO_PORT") reach moto
        # as any AWS client does
        environment = {
            **self.site_environment(),
            **self.function_environment(),
            "MOTO_PORT": str(self.port),
        }
        for name in ("AWS_PROFILE",):
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ.pop(name, None)
        for name, value in environment.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    def _route(self) -> None:
        functions = {}
        for function in (ACTIVITY, TOKENS):
            try:
                functions[self.names.function_arn(function)] = load_handler(HANDLERS[function])
            except Exception as error:  # the deployable is missing or fails to import
                raise LocalAwsError(
                    f"the {function} function's handler cannot be loaded ({error}): the local "
                    "AWS runs the Lambda handlers of lambda_aws; run it from a RustyFlower "
                    "checkout (the folder that holds lambda_aws/) or put that folder on "
                    "PYTHONPATH"
                ) from None
        self._router = _Router(functions)
        self._patches.enter_context(step_functions_fixes(self._router.invoke))

    def _create_resources(self) -> None:
        dynamodb = self.client("dynamodb")
        dynamodb.create_table(
            TableName=self.names.idempotency_table,
            KeySchema=[{"AttributeName": IDEMPOTENCY_KEY_ATTRIBUTE, "KeyType": "HASH"}],
            AttributeDefinitions=[
                {"AttributeName": IDEMPOTENCY_KEY_ATTRIBUTE, "AttributeType": "S"}
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.create_table(
            TableName=self.names.tokens_table,
            KeySchema=[
                {"AttributeName": TOKENS_PARTITION_KEY, "KeyType": "HASH"},
                {"AttributeName": TOKENS_SORT_KEY, "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": TOKENS_PARTITION_KEY, "AttributeType": "S"},
                {"AttributeName": TOKENS_SORT_KEY, "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        self.client("s3").create_bucket(Bucket=self.names.snapshot_bucket)
        # build the Step Functions client here too: boto3's default session (which moto's
        # sub-flow integration also uses) is not thread-safe while it loads its models
        self.client("stepfunctions")

    def client(self, service: str) -> Any:
        """A boto3 client of this AWS (made once)."""
        found = self._clients.get(service)
        if found is None:
            found = boto3.client(
                service,
                endpoint_url=self.endpoint,
                region_name=self.region,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                config=Config(retries={"max_attempts": 2}),
            )
            self._clients[service] = found
        return found

    def _post(self, path: str) -> None:
        request = urllib.request.Request(self.endpoint + path, data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every execution, shut the server, undo the patches and the environment."""
        if self._router is not None:
            self._router.closed.set()
        if self._server is not None and self._thread is not None and self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._stop_executions(timeout)
            self._server.shutdown()
            self._thread.join(timeout)
        if self._server is not None:
            self._server.server_close()
        self._server = None
        self._thread = None
        self._patches.close()
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()
        for section, values in self._saved_config.items():
            current = _CONFIG[section]
            current.clear()
            current.update(values)
        self._saved_config.clear()
        for name, level in self._saved_levels.items():
            logging.getLogger(name).setLevel(level)
        self._saved_levels.clear()
        self._clients.clear()

    def _stop_executions(self, timeout: float) -> None:
        """Stop what still runs, so that no executor thread calls a handler afterwards
        (moto does not stop an execution waiting for a task token: its tokens are failed)."""
        stepfunctions = self.client("stepfunctions")
        dynamodb = self.client("dynamodb")
        tokens = list(self._router.deadline_tokens) if self._router is not None else []
        for _ in range(max(1, int(timeout / 0.1))):
            running = [
                execution["executionArn"]
                for machine in stepfunctions.list_state_machines()["stateMachines"]
                for execution in stepfunctions.list_executions(
                    stateMachineArn=machine["stateMachineArn"], statusFilter="RUNNING"
                )["executions"]
            ]
            if not running:
                return
            for arn in running:
                with contextlib.suppress(Exception):
                    stepfunctions.stop_execution(executionArn=arn)
            items = dynamodb.scan(TableName=self.names.tokens_table)["Items"]
            for token in [*(item["task_token"]["S"] for item in items), *tokens]:
                with contextlib.suppress(Exception):
                    stepfunctions.send_task_failure(taskToken=token, error="RF.LocalCloudStopped")
            threading.Event().wait(0.1)

    # --- machines ----------------------------------------------------------------------------

    def machine_arn(self, definition: FlowDefinition) -> str:
        return self.machine_prefix + state_machine_name(definition.name, definition.version)

    def deploy(self, definitions: Iterable[FlowDefinition]) -> list[str]:
        """Create the machine of every definition not deployed yet (``flow@version``, as
        Terraform names it); the keys newly deployed. A definition that does not compile
        is logged and skipped (it may call a flow not known yet: it is tried again with
        the next ones)."""
        for definition in definitions:
            self._definitions.setdefault(definition.key, definition)
        arns = flow_arns(self._definitions.values(), self.machine_arn)
        stepfunctions = self.client("stepfunctions")
        added: list[str] = []
        for key, definition in sorted(self._definitions.items()):
            if key in self.deployed:
                continue
            try:
                document = compile_flow(
                    definition,
                    activity_function_arn=self.names.function_arn(ACTIVITY),
                    token_function_arn=self.names.function_arn(TOKENS),
                    flow_arns=arns,
                    services=AwsServiceBindings(
                        queue_url_base=f"https://sqs.{self.region}.amazonaws.com/{ACCOUNT}/"
                    ),
                )
            except CompileError as error:
                if key not in self._refused:  # said once; tried again with each deploy
                    log.warning("flow %s has no machine: %s", key, error)
                    self._refused.add(key)
                continue
            arn = self.machine_arn(definition)
            text = json.dumps(document)
            try:
                stepfunctions.create_state_machine(
                    name=arn.rsplit(":", 1)[-1], definition=text, roleArn=self.names.role_arn
                )
            except stepfunctions.exceptions.StateMachineAlreadyExists:
                stepfunctions.update_state_machine(stateMachineArn=arn, definition=text)
            self.deployed[key] = arn
            added.append(key)
        return added
