"""The built-in service tasks: send a message, publish an event, put and get an object,
call an HTTP endpoint, with one meaning on every runtime (docs/services.md).

* :mod:`.requests`: each kind's fields, checked in the definition and at run time;
* :mod:`.failures`: the exceptions named after the portable error names;
* :mod:`.calls`: the service functions over a runtime's ``ServiceBackends`` (imported
  from there: the flow model reads this package, and the calls need the activities
  registry, which reads the flow model).

The kinds, the reserved activity names and the error names are the runtimes' contract
(``core.contract``).
"""

from rustyflower.core.services.failures import (
    FAILURES,
    ServiceAccessDenied,
    ServiceFailed,
    ServiceFailure,
    ServiceInvalidRequest,
    ServiceNotFound,
    ServiceThrottled,
    ServiceUnavailable,
    failure_for_status,
)
from rustyflower.core.services.requests import (
    EventPublish,
    HttpCall,
    ObjectGet,
    ObjectPut,
    QueueSend,
    Request,
    json_text,
    parameter_problems,
    read_request,
    resource_of,
)

__all__ = [
    "FAILURES",
    "EventPublish",
    "HttpCall",
    "ObjectGet",
    "ObjectPut",
    "QueueSend",
    "Request",
    "ServiceAccessDenied",
    "ServiceFailed",
    "ServiceFailure",
    "ServiceInvalidRequest",
    "ServiceNotFound",
    "ServiceThrottled",
    "ServiceUnavailable",
    "failure_for_status",
    "json_text",
    "parameter_problems",
    "read_request",
    "resource_of",
]
