"""The exceptions a service call fails with: their class names are the portable error names.

An activity's exception class name is its error name on every runtime (``perform`` on
the site and in Azure, ``errorType`` in Lambda), so a backend that raises
:class:`ServiceThrottled` makes the task fail with ``ServiceThrottled`` wherever it runs.
"""

from __future__ import annotations

from typing import ClassVar

from rustyflower.core.contract import ServiceError


class ServiceFailure(Exception):
    """A service call failed; ``error`` is its portable error name (the class's name)."""

    error: ClassVar[str] = ServiceError.FAILED


class ServiceNotFound(ServiceFailure):
    error = ServiceError.NOT_FOUND


class ServiceAccessDenied(ServiceFailure):
    error = ServiceError.ACCESS_DENIED


class ServiceThrottled(ServiceFailure):
    error = ServiceError.THROTTLED


class ServiceUnavailable(ServiceFailure):
    error = ServiceError.UNAVAILABLE


class ServiceInvalidRequest(ServiceFailure):
    error = ServiceError.INVALID_REQUEST


class ServiceFailed(ServiceFailure):
    error = ServiceError.FAILED


def failure_for_status(status: int) -> type[ServiceFailure]:
    """The failure an HTTP error status stands for (the same table for every platform)."""
    if status in (404, 410):
        return ServiceNotFound
    if status in (401, 403):
        return ServiceAccessDenied
    if status == 429:
        return ServiceThrottled
    if status >= 500:
        return ServiceUnavailable
    if status >= 400:
        return ServiceInvalidRequest
    return ServiceFailed


FAILURES: tuple[type[ServiceFailure], ...] = (
    ServiceNotFound,
    ServiceAccessDenied,
    ServiceThrottled,
    ServiceUnavailable,
    ServiceInvalidRequest,
    ServiceFailed,
)
