"""Retry and Catch as ASL documents, and the Choice rule that matches errors like them.

``ErrorEquals`` lists are passed through as the user wrote them, but ASL wants a
``States.ALL`` entry alone and last; a resume entry's error router applies the policies
by hand, with :func:`error_rule` in a Choice state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rustyflower.core.contract import ReservedError
from rustyflower.core.model import Retry


def error_rule(errors: Sequence[str], variable: str) -> dict[str, Any]:
    """A choice rule that holds when the error named at ``variable`` matches ``errors``.

    The same matching as the engine's (core.contract.error_matches): ``States.ALL`` holds
    for every error but States.Runtime, ``States.TaskFailed`` for every error but
    States.Timeout and States.Runtime, any other name for itself. (States.DataLimitExceeded,
    which no wildcard matches either, never reaches this rule: no Catch takes it.)
    """
    if ReservedError.ALL in errors:
        return {"Not": {"Variable": variable, "StringEquals": ReservedError.RUNTIME}}
    rules: list[dict[str, Any]] = [
        {"Variable": variable, "StringEquals": name}
        for name in errors
        if name != ReservedError.TASK_FAILED
    ]
    if ReservedError.TASK_FAILED in errors:
        excluded = [ReservedError.TIMEOUT, ReservedError.RUNTIME]
        rules.append(
            {"Not": {"Or": [{"Variable": variable, "StringEquals": name} for name in excluded]}}
        )
    return rules[0] if len(rules) == 1 else {"Or": rules}


def order_policies(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ASL wants a States.ALL entry alone and last: keep what can still match after it."""
    for index, entry in enumerate(entries):
        if ReservedError.ALL in entry["ErrorEquals"]:
            later = [
                {**other, "ErrorEquals": [ReservedError.RUNTIME]}
                for other in entries[index + 1 :]
                if ReservedError.RUNTIME in other["ErrorEquals"]
            ]
            return entries[:index] + later[:1] + [entry]
    return entries


def retry_document(policies: Sequence[Retry]) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for policy in policies:
        document: dict[str, Any] = {
            "ErrorEquals": list(policy.errors),
            "IntervalSeconds": policy.interval_seconds,
            "MaxAttempts": policy.max_attempts,
            "BackoffRate": float(policy.backoff_rate),
        }
        if policy.max_delay_seconds is not None:
            document["MaxDelaySeconds"] = policy.max_delay_seconds
        if policy.jitter == "full":
            document["JitterStrategy"] = "FULL"
        documents.append(document)
    return order_policies(documents)
