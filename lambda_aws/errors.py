"""Exceptions named after errors: Lambda reports a raised exception's class name as
``errorType``, and Step Functions (or any caller of ``Invoke``) sees that name."""

from __future__ import annotations

import functools


class NamedError(Exception):
    """Base of the exceptions whose class name is an error name (``PaymentDeclined``)."""

    error: str = "NamedError"

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


@functools.cache
def error_class(name: str) -> type[NamedError]:
    """A NamedError subclass whose ``__name__`` is ``name``; one class per name.

    Names need not be Python identifiers: ``RF.InvalidPayload`` is a fine class name.
    """
    if not name:
        raise ValueError("an error name is required")
    return type(name, (NamedError,), {"error": name, "__module__": __name__})


def named_error(name: str, cause: str) -> NamedError:
    """An exception Lambda reports with ``errorType`` ``name`` and ``errorMessage`` ``cause``."""
    return error_class(name)(cause)
