"""The service tasks in Step Functions: optimized integrations, bindings, error names.

Each kind compiles to the integration Step Functions calls itself, no Lambda between:

=================  ================================================  =====================
kind               ``Resource``                                      request
=================  ================================================  =====================
``queue.send``      ``arn:aws:states:::sqs:sendMessage``              QueueUrl, MessageBody
``event.publish``   ``arn:aws:states:::events:putEvents``             Entries[EventBusName,
                                                                      Source, DetailType,
                                                                      Detail]
``object.put``      ``arn:aws:states:::aws-sdk:s3:putObject``         Bucket, Key, Body
``object.get``      ``arn:aws:states:::aws-sdk:s3:getObject``         Bucket, Key
``http.call``       ``arn:aws:states:::http:invoke`` (with an         ApiEndpoint, Method,
                    EventBridge connection), else the activity        Headers,
                    Lambda running the site's HTTP client             QueryParameters,
                                                                      RequestBody
=================  ================================================  =====================

:class:`AwsServiceBindings` turns the definition's resource names into the deployment's
(a queue URL, a bus, a bucket); :data:`ERROR_TABLES` lists, per kind, which of the
platform's error names (and which words in their causes) each portable error stands for.
The compiler turns them into Choice rules, the failback reader applies them in Python
(:func:`portable_error`), so both read the platform the same way.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from rustyflower.adapters.aws.errors import CompileError
from rustyflower.core.contract import ReservedError, ServiceError, ServiceKind
from rustyflower.core.model import TaskState
from rustyflower.core.services import (
    EventPublish,
    HttpCall,
    ObjectGet,
    ObjectPut,
    QueueSend,
    ServiceFailed,
    failure_for_status,
    resource_of,
)
from rustyflower.core.services.calls import HttpResponse

SQS_SEND: Final = "arn:aws:states:::sqs:sendMessage"
EVENTS_PUT: Final = "arn:aws:states:::events:putEvents"
S3_PUT: Final = "arn:aws:states:::aws-sdk:s3:putObject"
S3_GET: Final = "arn:aws:states:::aws-sdk:s3:getObject"
HTTP_INVOKE: Final = "arn:aws:states:::http:invoke"

RESOURCES: Final[Mapping[str, str]] = {
    ServiceKind.QUEUE_SEND: SQS_SEND,
    ServiceKind.EVENT_PUBLISH: EVENTS_PUT,
    ServiceKind.OBJECT_PUT: S3_PUT,
    ServiceKind.OBJECT_GET: S3_GET,
    ServiceKind.HTTP_CALL: HTTP_INVOKE,
}
"""The ASL resource of each kind (``http.call``: when compiled with a connection)."""
DEFAULT_SOURCE: Final = "rustyflower"
CALL_ROLE: Final = "call"
"""The integration's Task in a service task's branch (``X~call``)."""
DETAIL_ROLE: Final = "detail"
"""``event.publish``: the Pass that makes the detail's text, first in its branch."""
REFUSED_ROLE: Final = "notobject"
"""``event.publish``: the Fail that refuses a detail that is not an object."""
SERVICE_BRANCH_ROLES: Final = frozenset({CALL_ROLE, DETAIL_ROLE, REFUSED_ROLE})


def service_branch_start(kind: str) -> str:
    """The role of the first state of a service task's branch (where a call begins)."""
    return DETAIL_ROLE if kind == ServiceKind.EVENT_PUBLISH else CALL_ROLE


DETAIL_TEXT: Final = "$.detail.text"
"""Where an event's detail, as JSON text, waits for ``putEvents`` (EventBridge takes a
detail that is not an object and ignores it: the machine refuses it first, as the
other runtimes do)."""


@dataclass(frozen=True)
class AwsServiceBindings:
    """Where a flow's named resources are in this AWS deployment.

    A name given in ``queues``/``buses``/``stores`` is bound as given; any other is
    ``name_prefix + name`` (the queue's URL under ``queue_url_base``), which is how
    ``infra/terraform/aws`` names the resources it creates for the flows.
    """

    queue_url_base: str | None = None
    """``https://sqs.<region>.amazonaws.com/<account>/``"""
    name_prefix: str = ""
    queues: Mapping[str, str] = field(default_factory=dict)
    """name -> queue URL"""
    buses: Mapping[str, str] = field(default_factory=dict)
    """name -> event bus name or ARN"""
    stores: Mapping[str, str] = field(default_factory=dict)
    """name -> bucket"""
    http_connection_arn: str | None = None
    """An EventBridge connection: ``http.call`` compiles to ``http:invoke`` with it (else
    to the activity Lambda)."""

    def queue_url(self, name: str) -> str:
        found = self.queues.get(name)
        if found:
            return found
        if self.queue_url_base is None:
            raise CompileError(
                f"queue {name!r} has no URL: give queues={{{name!r}: URL}} or queue_url_base"
            )
        return self.queue_url_base.rstrip("/") + "/" + self.name_prefix + name

    def bus(self, name: str) -> str:
        return self.buses.get(name) or self.name_prefix + name

    def bucket(self, name: str) -> str:
        return self.stores.get(name) or self.name_prefix + name


def natively_compiled(state: TaskState, bindings: AwsServiceBindings | None) -> bool:
    """Whether a service task compiles to an integration (else: the activity Lambda)."""
    if state.service is None:
        return False
    if state.service == ServiceKind.HTTP_CALL:
        return bindings is not None and bindings.http_connection_arn is not None
    return True


# --- requests ----------------------------------------------------------------------------------


def native_parameters(
    state: TaskState, bindings: AwsServiceBindings | None, request: str
) -> dict[str, Any]:
    """The integration's ``Parameters``, reading the service request at ``request``."""
    kind = state.service
    assert kind is not None
    given = {key.removesuffix(".$") for key in (state.parameters or {})}
    template = state.parameters or {}
    if bindings is None:
        raise CompileError(
            f"a {kind} task needs the deployment's resources: compile with "
            "services=AwsServiceBindings(...)"
        )
    name = resource_of(kind, template)
    if kind == ServiceKind.QUEUE_SEND:
        assert name is not None
        return {
            "QueueUrl": bindings.queue_url(name),
            "MessageBody.$": f"States.JsonToString({request}.message)",
        }
    if kind == ServiceKind.EVENT_PUBLISH:
        assert name is not None
        entry: dict[str, Any] = {
            "EventBusName": bindings.bus(name),
            "DetailType.$": f"{request}.type",
            # the detail's JSON text, made (and checked to be an object) before the call
            "Detail.$": DETAIL_TEXT,
        }
        if "source" in given:
            entry["Source.$"] = f"{request}.source"
        else:
            entry["Source"] = DEFAULT_SOURCE
        return {"Entries": [entry]}
    if kind == ServiceKind.OBJECT_PUT:
        assert name is not None
        text = template.get("format") == "text"
        return {
            "Bucket": bindings.bucket(name),
            "Key.$": f"{request}.key",
            "Body.$": f"{request}.body" if text else f"States.JsonToString({request}.body)",
            "ContentType": "text/plain; charset=utf-8" if text else "application/json",
        }
    if kind == ServiceKind.OBJECT_GET:
        assert name is not None
        return {"Bucket": bindings.bucket(name), "Key.$": f"{request}.key"}
    assert bindings.http_connection_arn is not None
    parameters: dict[str, Any] = {
        "ApiEndpoint.$": f"{request}.url",
        "Method": template.get("method"),
        "Authentication": {"ConnectionArn": bindings.http_connection_arn},
    }
    for ours, theirs in (("headers", "Headers"), ("query", "QueryParameters")):
        if ours in given:
            parameters[f"{theirs}.$"] = f"{request}.{ours}"
    if "body" in given:
        parameters["RequestBody.$"] = f"{request}.body"
    return parameters


def result_selector(state: TaskState) -> tuple[dict[str, Any], bool]:
    """The ResultSelector that makes the portable result, and whether it is wrapped in
    ``{"value": ...}`` (a bare value: ``object.get``) for an OutputPath to take out."""
    kind = state.service
    if kind == ServiceKind.QUEUE_SEND:
        return {"message_id.$": "$.MessageId"}, False
    if kind == ServiceKind.EVENT_PUBLISH:
        return {"event_id.$": "$.Entries[0].EventId"}, False
    if kind == ServiceKind.OBJECT_PUT:
        return {"etag.$": "$.ETag"}, False
    if kind == ServiceKind.OBJECT_GET:
        text = (state.parameters or {}).get("format") == "text"
        return {"value.$": "$.Body" if text else "States.StringToJson($.Body)"}, True
    return {"status.$": "$.StatusCode", "body.$": "$.ResponseBody"}, False


def portable_result(state: TaskState, native: Any) -> Any:
    """The portable result from the integration's answer (the failback reader's view of
    what :func:`result_selector` makes)."""
    answer: Mapping[str, Any] = native if isinstance(native, Mapping) else {}
    kind = state.service
    if kind == ServiceKind.QUEUE_SEND:
        return {"message_id": answer.get("MessageId")}
    if kind == ServiceKind.EVENT_PUBLISH:
        entries = answer.get("Entries") or [{}]
        return {"event_id": entries[0].get("EventId")}
    if kind == ServiceKind.OBJECT_PUT:
        return {"etag": answer.get("ETag")}
    if kind == ServiceKind.OBJECT_GET:
        body = answer.get("Body")
        if (state.parameters or {}).get("format") == "text":
            return body
        return json.loads(body) if isinstance(body, str) else body
    return {"status": answer.get("StatusCode"), "body": answer.get("ResponseBody")}


# --- errors ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorRule:
    """The platform's errors one portable error stands for: names, or words in causes."""

    portable: str
    names: tuple[str, ...] = ()
    causes: tuple[str, ...] = ()
    """``StringMatches`` patterns (``*`` only) of the cause text."""


_UNAVAILABLE_CAUSES = ("*ServiceUnavailable*", "*InternalError*", "*Status Code: 5*")
_THROTTLED_CAUSES = ("*Throttl*", "*SlowDown*", "*RequestLimitExceeded*", "*TooManyRequests*")
_DENIED_CAUSES = ("*AccessDenied*", "*not authorized*", "*Forbidden*")

ERROR_TABLES: Final[Mapping[str, Sequence[ErrorRule]]] = {
    ServiceKind.QUEUE_SEND: (
        ErrorRule(
            ServiceError.NOT_FOUND,
            ("SQS.QueueDoesNotExistException", "SQS.QueueDoesNotExist"),
            ("*NonExistentQueue*", "*QueueDoesNotExist*", "*queue does not exist*"),
        ),
        ErrorRule(
            ServiceError.ACCESS_DENIED,
            ("SQS.AccessDeniedException", "SQS.KmsAccessDeniedException"),
            _DENIED_CAUSES,
        ),
        ErrorRule(ServiceError.THROTTLED, ("SQS.RequestThrottledException",), _THROTTLED_CAUSES),
        ErrorRule(
            ServiceError.INVALID_REQUEST,
            ("SQS.InvalidMessageContentsException", "SQS.InvalidParameterValueException"),
            ("*InvalidParameterValue*", "*InvalidMessageContents*", "*MessageTooLong*"),
        ),
        ErrorRule(ServiceError.UNAVAILABLE, (), _UNAVAILABLE_CAUSES),
    ),
    ServiceKind.EVENT_PUBLISH: (
        ErrorRule(
            ServiceError.NOT_FOUND,
            ("EventBridge.ResourceNotFoundException",),
            ("*ResourceNotFound*", "*does not exist*"),
        ),
        ErrorRule(
            ServiceError.ACCESS_DENIED, ("EventBridge.AccessDeniedException",), _DENIED_CAUSES
        ),
        ErrorRule(ServiceError.THROTTLED, ("EventBridge.ThrottlingException",), _THROTTLED_CAUSES),
        ErrorRule(
            ServiceError.INVALID_REQUEST,
            ("EventBridge.FailedEntry",),
            ("*InvalidArgument*", "*MalformedDetail*", "*ValidationException*"),
        ),
        ErrorRule(ServiceError.UNAVAILABLE, (), (*_UNAVAILABLE_CAUSES, "*InternalFailure*")),
    ),
    ServiceKind.OBJECT_PUT: (
        ErrorRule(ServiceError.NOT_FOUND, ("S3.NoSuchBucketException",), ("*NoSuchBucket*",)),
        ErrorRule(ServiceError.ACCESS_DENIED, ("S3.AccessDeniedException",), _DENIED_CAUSES),
        ErrorRule(ServiceError.THROTTLED, ("S3.SlowDownException",), _THROTTLED_CAUSES),
        ErrorRule(
            ServiceError.INVALID_REQUEST,
            (
                "S3.InvalidRequestException",
                "S3.InvalidArgumentException",
                "S3.EntityTooLargeException",
                "S3.KeyTooLongErrorException",
            ),
        ),
        ErrorRule(
            ServiceError.UNAVAILABLE,
            ("S3.InternalErrorException", "S3.ServiceUnavailableException"),
            _UNAVAILABLE_CAUSES,
        ),
    ),
    ServiceKind.OBJECT_GET: (
        ErrorRule(
            ServiceError.NOT_FOUND,
            ("S3.NoSuchKeyException", "S3.NoSuchBucketException"),
            ("*NoSuchKey*", "*NoSuchBucket*"),
        ),
        ErrorRule(ServiceError.ACCESS_DENIED, ("S3.AccessDeniedException",), _DENIED_CAUSES),
        ErrorRule(ServiceError.THROTTLED, ("S3.SlowDownException",), _THROTTLED_CAUSES),
        ErrorRule(
            ServiceError.INVALID_REQUEST,
            ("S3.InvalidRequestException", "S3.InvalidArgumentException"),
        ),
        ErrorRule(
            ServiceError.UNAVAILABLE,
            ("S3.InternalErrorException", "S3.ServiceUnavailableException"),
            _UNAVAILABLE_CAUSES,
        ),
    ),
    ServiceKind.HTTP_CALL: tuple(
        ErrorRule(
            portable,
            tuple(
                f"{ReservedError.HTTP_STATUS_PREFIX}{code}"
                for code in range(400, 600)
                if failure_for_status(code).__name__ == portable
            ),
        )
        for portable in (
            ServiceError.NOT_FOUND,
            ServiceError.ACCESS_DENIED,
            ServiceError.THROTTLED,
            ServiceError.INVALID_REQUEST,
            ServiceError.UNAVAILABLE,
        )
    ),
}
"""Per kind, in order: the first rule whose names hold the error decides, else the first
whose patterns match the cause; anything else
the integration raises (but States.Timeout, which stays itself) is ``ServiceFailed``."""


def portable_error(kind: str, error: str, cause: str | None) -> str:
    """The portable error the integration's ``error`` (with ``cause``) stands for: names
    first, then causes, each in the table's order (as the compiled Choice states test)."""
    for rule in ERROR_TABLES[kind]:
        if error in rule.names:
            return rule.portable
    if cause is not None:
        for rule in ERROR_TABLES[kind]:
            if any(fnmatch.fnmatchcase(cause, pattern) for pattern in rule.causes):
                return rule.portable
    return ServiceError.FAILED


class ActivityFunctionBackends:
    """The service backends of the activity Lambda: only ``http.call`` reaches it (compiled
    without a connection); the other kinds compile to integrations and never do."""

    def __init__(self, http: Callable[[HttpCall], HttpResponse]) -> None:
        self._http = http

    def http(self, request: HttpCall) -> HttpResponse:
        return self._http(request)

    @staticmethod
    def _not_here(kind: str) -> ServiceFailed:
        return ServiceFailed(
            f"{kind} is carried out by Step Functions' own integration, not by the activity "
            "function (a machine compiled without it?)"
        )

    def send_message(self, request: QueueSend, key: str) -> str:
        raise self._not_here(ServiceKind.QUEUE_SEND)

    def publish_event(self, request: EventPublish, key: str) -> str:
        raise self._not_here(ServiceKind.EVENT_PUBLISH)

    def put_object(self, request: ObjectPut, key: str) -> str:
        raise self._not_here(ServiceKind.OBJECT_PUT)

    def get_object(self, request: ObjectGet) -> bytes:
        raise self._not_here(ServiceKind.OBJECT_GET)
