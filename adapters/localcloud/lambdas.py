"""The Lambda functions of a local AWS, hosted as the Lambda runtime hosts them.

Lambda finds a function's code by its *handler name* (``lambda_aws.activity.handler``:
a module and an attribute) and calls it with the event and a context. The local AWS does
the same, with the names infra/terraform/aws gives the functions (``HANDLERS``; a test
keeps them equal to ``lambda_aws.settings.HANDLERS``). It never imports the deployable
with an import statement: like the platform, it loads whatever code is there by name
(docs/architecture.md, "The dependency rule").

:class:`LambdaRouter` answers moto's Lambda integration the way Lambda's Invoke answers
Step Functions: ``Payload`` the handler's result, or, when the handler raises,
``FunctionError: Unhandled`` and the Python runtime's error document (``errorType`` = the
exception's class name, which the compiled ``Retry`` and ``Catch`` match).
"""

from __future__ import annotations

import importlib
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ACTIVITY",
    "HANDLERS",
    "TOKENS",
    "FunctionContext",
    "HandlerMissingError",
    "LambdaRouter",
    "load_handler",
    "unhandled",
]

ACTIVITY = "activity"
TOKENS = "tokens"
HANDLERS: dict[str, str] = {
    ACTIVITY: "lambda_aws.activity.handler",
    TOKENS: "lambda_aws.tokens.handler",
}
"""The functions the compiled machines invoke -> their handler names (Terraform's)."""

Handler = Callable[[Any, Any], Any]


class HandlerMissingError(RuntimeError):
    """A handler name that names no importable callable (the deployable is not here)."""


def load_handler(name: str) -> Handler:
    """``module.attribute`` -> the callable, found as the Lambda runtime finds it."""
    module_name, _, attribute = name.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise HandlerMissingError(f"handler {name}: {error}") from None
    found = getattr(module, attribute, None)
    if not callable(found):
        raise HandlerMissingError(f"handler {name}: {module_name} has no function {attribute}")
    handler: Handler = found
    return handler


@dataclass
class FunctionContext:
    """What the handlers (and Powertools) read from a Lambda context."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int = 512
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    remaining_ms: int = 900_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def unhandled(error_type: str, message: str) -> dict[str, Any]:
    """Lambda's answer for a handler that raised (the Python runtime's error document)."""
    return {
        "StatusCode": 200,
        "FunctionError": "Unhandled",
        "Payload": {
            "errorType": error_type,
            "errorMessage": message,
            "requestId": "00000000-0000-0000-0000-000000000000",
            "stackTrace": [],
        },
    }


class LambdaRouter:
    """moto's Lambda integration answered in-process by the functions' handlers.

    ``functions`` maps each function's ARN to its handler. One invocation runs at a time,
    as in one Lambda execution environment: the handlers share the process's Powertools
    logger and metrics, as they do in Lambda. Subclasses (the tests' harnesses) hook
    ``before`` and ``record``.
    """

    def __init__(self, functions: Mapping[str, Handler]) -> None:
        self.functions = dict(functions)
        self.closed = threading.Event()
        self._serial = threading.Lock()

    def invoke(self, parameters: dict[str, Any], region: str, state_credentials: Any) -> Any:
        """moto's ``_invoke_lambda_function``: Lambda's Invoke answer."""
        raw = parameters.get("Payload")
        payload = json.loads(raw) if isinstance(raw, str | bytes | bytearray) else raw
        function = str(parameters["FunctionName"])
        handler = self.functions.get(function)
        if handler is None:
            return unhandled("ResourceNotFoundException", f"Function not found: {function}")
        self.before(function, payload)
        if self.closed.is_set():  # the cloud is stopping: reach nothing past it
            return unhandled("RF.LocalCloudClosed", "the local cloud is stopping")
        context = FunctionContext(
            function_name=function.rsplit(":", 1)[-1], invoked_function_arn=function
        )
        try:
            with self._serial:
                output = handler(payload, context)
        except Exception as error:  # Lambda's unhandled error, as the Python runtime reports it
            self.record(function, payload, type(error).__name__)
            return unhandled(type(error).__name__, str(error))
        self.record(function, payload, None)
        return {"StatusCode": 200, "Payload": output}

    def before(self, function: str, payload: Any) -> None:
        """Called before each invocation (nothing here)."""

    def record(self, function: str, payload: Any, error: str | None) -> None:
        """Called after each invocation with the error type it raised, if any (nothing here)."""
