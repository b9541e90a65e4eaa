"""Service tasks in the compiled machine: the integrations, the bindings, the error names.

What they do when executed is tested on moto (tests/aws/test_services_moto.py); here is
the document: it passes statelint, each kind calls its integration (``http.call`` the
HTTP Task with a connection, else the activity Lambda), bindings are required and named,
and the compiled error rules read the platform the way the failback reader does.
"""

from __future__ import annotations

from typing import Any

import pytest

from rustyflower.adapters.aws import AwsServiceBindings, compile_flow
from rustyflower.adapters.aws.compiler import iter_states
from rustyflower.adapters.aws.errors import CompileError
from rustyflower.adapters.aws.services import ERROR_TABLES, RESOURCES, portable_error
from rustyflower.core.contract import SERVICE_KINDS, ServiceError, ServiceKind
from rustyflower.core.model import parse_definition
from tests.aws.test_compiler_kit import lint
from tests.conformance.corpus import SERVICES_DIR, load_corpus

ACTIVITY = "arn:aws:lambda:us-east-1:123456789012:function:activity"
TOKENS = "arn:aws:lambda:us-east-1:123456789012:function:tokens"
CONNECTION = "arn:aws:events:us-east-1:123456789012:connection/api/1"
BINDINGS = AwsServiceBindings(
    queue_url_base="https://sqs.us-east-1.amazonaws.com/123456789012/", name_prefix="rf-"
)
CORPUS = [f for f in load_corpus(SERVICES_DIR) if f.flow is not None]


def compiled(definition: Any, bindings: AwsServiceBindings | None = BINDINGS) -> dict[str, Any]:
    return compile_flow(
        definition, activity_function_arn=ACTIVITY, token_function_arn=TOKENS, services=bindings
    )


def resources(document: dict[str, Any]) -> set[str]:
    return {str(state.get("Resource")) for _, state in iter_states(document) if "Resource" in state}


@pytest.mark.parametrize("connection", [None, CONNECTION])
@pytest.mark.parametrize("corpus_file", CORPUS, ids=[f.path.stem for f in CORPUS])
def test_service_flows_pass_statelint(corpus_file: Any, connection: str | None) -> None:
    bindings = AwsServiceBindings(
        queue_url_base=BINDINGS.queue_url_base, http_connection_arn=connection
    )
    assert lint(compiled(corpus_file.flow, bindings)) == []


def test_each_kind_calls_its_integration_not_a_lambda() -> None:
    every = set()
    for corpus_file in CORPUS:
        every |= resources(compiled(corpus_file.flow))
    assert {RESOURCES[kind] for kind in SERVICE_KINDS if kind != ServiceKind.HTTP_CALL} <= every
    # without a connection, http.call goes to the activity Lambda, named by its service
    http = next(f for f in CORPUS if f.path.stem == "http_calls")
    document = compiled(http.flow)
    post = dict(iter_states(document))["Post"]
    assert post["Parameters"]["Payload"]["activity"] == "service:http.call"
    with_connection = compiled(
        http.flow, AwsServiceBindings(queue_url_base="x", http_connection_arn=CONNECTION)
    )
    call = dict(iter_states(with_connection))["Post~call"]
    assert call["Resource"] == "arn:aws:states:::http:invoke"
    assert call["Parameters"]["Authentication"] == {"ConnectionArn": CONNECTION}
    assert call["Parameters"]["Method"] == "POST"
    assert call["Parameters"]["QueryParameters.$"] == "$.input.query"


def test_bindings_name_the_deployments_resources() -> None:
    store = next(f for f in CORPUS if f.path.stem == "store_and_send")
    states = dict(iter_states(compiled(store.flow)))
    assert states["Put~call"]["Parameters"]["Bucket"] == "rf-reports"
    assert (
        states["Fan[0]/Send~call"]["Parameters"]["QueueUrl"]
        == "https://sqs.us-east-1.amazonaws.com/123456789012/rf-orders"
    )
    explicit = AwsServiceBindings(queues={"orders": "https://q/orders"}, stores={"reports": "b"})
    states = dict(iter_states(compiled(store.flow, explicit)))
    assert states["Put~call"]["Parameters"]["Bucket"] == "b"
    assert states["Fan[0]/Send~call"]["Parameters"]["QueueUrl"] == "https://q/orders"


def test_a_service_task_without_bindings_is_refused_by_name() -> None:
    definition = parse_definition(
        {
            "name": "f",
            "start_at": "S",
            "states": {
                "S": {
                    "type": "task",
                    "service": "queue.send",
                    "parameters": {"queue": "orders", "message": 1},
                    "end": True,
                }
            },
        }
    )
    with pytest.raises(CompileError, match="needs the deployment's resources"):
        compiled(definition, None)
    with pytest.raises(CompileError, match="queue 'orders' has no URL"):
        compiled(definition, AwsServiceBindings())


@pytest.mark.parametrize(
    ("kind", "error", "cause", "portable"),
    [
        (
            "object.get",
            "S3.NoSuchKeyException",
            "The specified key does not exist.",
            "ServiceNotFound",
        ),
        ("object.put", "S3.SlowDownException", None, "ServiceThrottled"),
        (
            "queue.send",
            "SQS.AmazonSQSException",
            "The queue does not exist (Error Code: AWS.SimpleQueueService.NonExistentQueue)",
            "ServiceNotFound",
        ),
        ("queue.send", "SQS.AmazonSQSException", "Rate exceeded: Throttling", "ServiceThrottled"),
        ("event.publish", "EventBridge.FailedEntry", "{}", "ServiceInvalidRequest"),
        ("http.call", "States.Http.StatusCode.404", "", "ServiceNotFound"),
        ("http.call", "States.Http.StatusCode.503", "", "ServiceUnavailable"),
        ("http.call", "States.Http.StatusCode.418", "", "ServiceInvalidRequest"),
        ("object.get", "S3.SomethingNew", "who knows", "ServiceFailed"),
    ],
)
def test_platform_errors_read_as_portable_names(
    kind: str, error: str, cause: str | None, portable: str
) -> None:
    assert portable_error(kind, error, cause) == portable


def test_every_kind_has_an_error_table_of_portable_names() -> None:
    assert set(ERROR_TABLES) == set(SERVICE_KINDS)
    portable = {
        ServiceError.NOT_FOUND,
        ServiceError.ACCESS_DENIED,
        ServiceError.THROTTLED,
        ServiceError.UNAVAILABLE,
        ServiceError.INVALID_REQUEST,
    }
    for rules in ERROR_TABLES.values():
        assert {rule.portable for rule in rules} <= portable
