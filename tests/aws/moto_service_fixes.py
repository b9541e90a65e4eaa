"""Two fixes moto 5.2 needs to run compiled service tasks as Step Functions does.

* moto names an AWS SDK integration's errors after the lower-case service
  (``s3.NoSuchKeyException``); Step Functions writes ``S3.NoSuchKeyException``
  (Developer Guide, "AWS SDK service integrations": ``ServiceName.ErrorName`` in Pascal
  case);
* moto leaves ``getObject``'s ``Body`` a stream where Step Functions answers the text.

``tests/aws/test_services_moto.py`` checks that moto still needs both.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_aws_sdk,
)

_SDK = state_task_service_aws_sdk.StateTaskServiceAwsSdk
original_error_name = _SDK._normalise_service_error_name
_original_eval = _SDK._eval_service_task


def _pascal_sdk_errors(service_name: str) -> str:
    found = original_error_name(service_name)
    return "S3" if found.lower() == "s3" else found


def _body_as_text(self: Any, env: Any, *args: Any, **kwargs: Any) -> None:
    _original_eval(self, env, *args, **kwargs)
    answer = env.stack[-1]
    body = answer.get("Body") if isinstance(answer, dict) else None
    if body is not None and hasattr(body, "read"):
        answer["Body"] = body.read().decode("utf-8")


@contextmanager
def service_fixes() -> Iterator[None]:
    with (
        mock.patch.object(_SDK, "_normalise_service_error_name", staticmethod(_pascal_sdk_errors)),
        mock.patch.object(_SDK, "_eval_service_task", _body_as_text),
    ):
        yield
