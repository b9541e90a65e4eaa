"""The activities every conformance flow calls: pure, runtime-neutral functions.

This module is deployed as it stands to every runtime under test (the in-process
virtual runtime, the Redis workers, the Azure activity function, the AWS Lambda), so:

* every activity is a pure function of its input and of ``current_call().attempt``;
  nothing reads a clock, a file, the network or mutable module state;
* an activity fails by raising an exception whose *class name* is the error name a
  flow sees (``Boom``, ``PaymentDeclined``, ``Flaky``...), with the message as cause;
* an activity never sleeps: how long it "takes" is given by ``VIRTUAL_DURATIONS``,
  which a clock-driven harness uses to place the completion on its virtual clock (a
  real-time harness may sleep that long, or run the slow cases only where it can).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rustyflower.core.activities import ActivityRegistry, current_call

registry = ActivityRegistry()


# --- errors: the class name is the error name flows match on -----------------------------


class ConformanceError(Exception):
    """Base class of the errors the conformance activities raise on purpose."""


class Boom(ConformanceError):
    pass


class Kaboom(ConformanceError):
    pass


class PaymentDeclined(ConformanceError):
    pass


class ChildBoom(ConformanceError):
    pass


class Flaky(ConformanceError):
    pass


class UnknownErrorName(ConformanceError):
    """``fail_always`` was asked for an error this module does not define."""


ERRORS: dict[str, type[ConformanceError]] = {
    cls.__name__: cls for cls in (Boom, Kaboom, PaymentDeclined, ChildBoom, Flaky)
}


def _raise_named(payload: Any) -> None:
    name = payload.get("error", "Boom") if isinstance(payload, dict) else "Boom"
    message = payload.get("message") if isinstance(payload, dict) else None
    error = ERRORS.get(name)
    if error is None:
        raise UnknownErrorName(f"no error class named {name!r}")
    raise error(message or f"{name} raised on purpose")


# --- activities ----------------------------------------------------------------------------


@registry.activity
def succeed(payload: Any) -> Any:
    """Return the input unchanged."""
    return payload


@registry.activity
def echo(payload: Any) -> Any:
    """Return the input unchanged (a separate name, to tell calls apart in histories)."""
    return payload


@registry.activity
def add(payload: Any) -> Any:
    """``{"a": x, "b": y}`` -> ``x + y`` (numbers only)."""
    a, b = payload["a"], payload["b"]
    for value in (a, b):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"add takes numbers, got {value!r}")
    return a + b


@registry.activity
def concat(payload: Any) -> Any:
    """``{"left": s, "right": t}`` -> ``s + t`` (strings only)."""
    left, right = payload["left"], payload["right"]
    if not isinstance(left, str) or not isinstance(right, str):
        raise TypeError("concat takes two strings")
    return left + right


@registry.activity
def count_items(payload: Any) -> Any:
    """``{"items": [...]}`` -> the number of items."""
    items = payload["items"]
    if not isinstance(items, list):
        raise TypeError("count_items takes a list")
    return len(items)


@registry.activity
def fail_always(payload: Any) -> Any:
    """Raise the error named by ``{"error": "Boom"}`` (optional ``"message"``: the cause)."""
    _raise_named(payload)


@registry.activity
def flaky(payload: Any) -> Any:
    """Fail with ``Flaky`` while the attempt number is at most ``{"failures": n}``.

    Depends on the attempt the engine numbers, not on hidden state, so every runtime
    (and every replay or failover) sees the same sequence of failures.
    """
    attempt = current_call().attempt
    if attempt <= payload["failures"]:
        raise Flaky(f"attempt {attempt} of {payload['failures']} planned failures")
    return {"attempts": attempt}


@registry.activity
def slow(payload: Any) -> Any:
    """Return the input; it lasts ``payload["seconds"]`` of virtual time."""
    return payload


@registry.activity
def slow_fail(payload: Any) -> Any:
    """Raise the error named by ``payload["error"]`` after ``payload["seconds"]``."""
    _raise_named(payload)


def _seconds(payload: Any) -> float:
    return float(payload["seconds"])


VIRTUAL_DURATIONS: dict[str, Callable[[Any], float]] = {
    "slow": _seconds,
    "slow_fail": _seconds,
}
"""How long an activity lasts on a virtual clock, from its input (absent: instantly)."""
