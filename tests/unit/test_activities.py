"""The activities registry: registration, calls, context and default policies."""

from __future__ import annotations

import asyncio
import functools
import uuid
from typing import Any

import pytest

from rustyflower.core.activities import (
    Activity,
    ActivityContext,
    ActivityRegistry,
    current_call,
    describe_failure,
    iter_tasks,
)
from rustyflower.core.activities import activity as default_activity
from rustyflower.core.activities import registry as default_registry
from rustyflower.core.errors import UnknownActivityError
from rustyflower.core.model import MapState, ParallelState, Retry, TaskState, parse_definition

CONTEXT = ActivityContext(
    instance_id="i", call_id="A~1", idempotency_key="i:A:1:1", attempt=1, activity="probe"
)


def test_bare_decorator_registers_under_the_function_name() -> None:
    registry = ActivityRegistry()

    @registry.activity
    def charge(payload: Any) -> Any:
        return {"charged": payload}

    assert charge(1) == {"charged": 1}  # the function itself is returned
    assert "charge" in registry
    found = registry.get("charge")
    assert found == Activity("charge", charge)
    assert not found.is_async
    assert registry.call("charge", 5) == {"charged": 5}


def test_decorator_with_options() -> None:
    registry = ActivityRegistry()
    policy = Retry(errors=["Net"], max_attempts=5)

    @registry.activity(name="ship-it", retry=[policy], timeout_seconds=30)
    def ship(payload: Any) -> Any:
        return payload

    found = registry.get("ship-it")
    assert found.function is ship
    assert found.retry == (policy,)
    assert found.timeout_seconds == 30
    assert "ship" not in registry
    assert registry.names() == ["ship-it"]
    assert list(registry) == [found]


def test_register_without_decorator_and_with_a_lambda_name() -> None:
    registry = ActivityRegistry()
    registry.register(lambda payload: payload + 1, name="inc")
    assert registry.call("inc", 1) == 2
    unnamed = functools.partial(lambda payload, extra: payload, extra=1)
    with pytest.raises(ValueError, match="needs a name"):
        registry.register(unnamed)
    registry.register(unnamed, name="partial")
    assert registry.call("partial", 3) == 3


def test_async_activity_from_sync_and_async_callers() -> None:
    registry = ActivityRegistry()

    @registry.activity
    async def fetch(payload: Any) -> Any:
        await asyncio.sleep(0)
        return payload * 2

    assert registry.get("fetch").is_async
    assert registry.call("fetch", 4) == 8
    assert asyncio.run(registry.call_async("fetch", 5)) == 10


def test_sync_activity_from_an_async_caller() -> None:
    registry = ActivityRegistry()

    @registry.activity
    def double(payload: Any) -> Any:
        return payload * 2

    assert asyncio.run(registry.call_async("double", 3)) == 6


def test_unknown_activity_suggests_close_names() -> None:
    registry = ActivityRegistry()
    for name in ("charge_card", "refund_card", "ship_order"):
        registry.register(lambda payload: payload, name=name)
    with pytest.raises(UnknownActivityError) as caught:
        registry.get("charge_crd")
    assert caught.value.name == "charge_crd"
    assert caught.value.suggestions[0] == "charge_card"
    assert str(caught.value).startswith("unknown activity 'charge_crd' (did you mean 'charge_card'")
    assert isinstance(caught.value, LookupError)
    with pytest.raises(UnknownActivityError) as caught:
        registry.call("zzz", None)
    assert caught.value.suggestions == []
    assert str(caught.value) == "unknown activity 'zzz'"


def test_duplicate_registration_of_another_function_is_refused() -> None:
    registry = ActivityRegistry()

    def first(payload: Any) -> Any:
        return 1

    def second(payload: Any) -> Any:
        return 2

    registry.register(first, name="job")
    with pytest.raises(ValueError, match=r"'job' is already registered by .*first"):
        registry.register(second, name="job")
    assert registry.call("job", None) == 1


def test_registering_the_same_function_again_is_allowed() -> None:
    registry = ActivityRegistry()

    def job(payload: Any) -> Any:
        return payload

    registry.register(job)
    registry.register(job, timeout_seconds=5)
    assert registry.get("job").timeout_seconds == 5


def test_timeout_must_be_positive() -> None:
    registry = ActivityRegistry()
    with pytest.raises(ValueError, match="at least 1"):
        registry.register(lambda payload: payload, name="x", timeout_seconds=0)


def test_current_call_inside_and_outside_an_activity() -> None:
    registry = ActivityRegistry()
    seen: list[ActivityContext] = []

    @registry.activity
    def probe(payload: Any) -> Any:
        seen.append(current_call())
        return None

    @registry.activity(name="aprobe")
    async def async_probe(payload: Any) -> Any:
        seen.append(current_call())
        return None

    with pytest.raises(RuntimeError, match="only available while an activity runs"):
        current_call()
    registry.call("probe", None, CONTEXT)
    registry.call("aprobe", None, CONTEXT)
    asyncio.run(registry.call_async("probe", None, CONTEXT))
    asyncio.run(registry.call_async("aprobe", None, CONTEXT))
    assert seen == [CONTEXT] * 4
    with pytest.raises(RuntimeError):
        current_call()
    with pytest.raises(RuntimeError):
        registry.call("probe", None)  # no context given: still not available


def test_context_is_reset_when_the_activity_raises() -> None:
    registry = ActivityRegistry()

    @registry.activity
    def broken(payload: Any) -> Any:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        registry.call("broken", None, CONTEXT)
    with pytest.raises(RuntimeError):
        current_call()


def test_describe_failure() -> None:
    class PaymentDeclined(Exception):
        pass

    assert describe_failure(PaymentDeclined("card refused")) == ("PaymentDeclined", "card refused")
    assert describe_failure(ValueError()) == ("ValueError", "ValueError")


def test_module_level_decorator_uses_the_default_registry() -> None:
    name = f"test_activities_probe_{uuid.uuid4().hex}"  # the default registry is global

    @default_activity(name=name)
    def probe(payload: Any) -> Any:
        return payload

    assert default_registry.get(name).function is probe


# --- defaults into definitions --------------------------------------------------------------

DEFINITION = {
    "name": "f",
    "start_at": "A",
    "states": {
        "A": {"type": "task", "activity": "charge", "next": "B"},
        "B": {
            "type": "task",
            "activity": "charge",
            "retry": [{"errors": ["Own"]}],
            "timeout_seconds": 3,
            "next": "Par",
        },
        "Par": {
            "type": "parallel",
            "next": "M",
            "branches": [
                {
                    "start_at": "P",
                    "states": {"P": {"type": "task", "activity": "charge", "end": True}},
                },
                {
                    "start_at": "Q",
                    "states": {"Q": {"type": "task", "activity": "unregistered", "end": True}},
                },
            ],
        },
        "M": {
            "type": "map",
            "end": True,
            "iterator": {
                "start_at": "I",
                "states": {"I": {"type": "task", "activity": "pick", "end": True}},
            },
        },
    },
}


def defaults_registry() -> ActivityRegistry:
    registry = ActivityRegistry()
    registry.register(
        lambda p: p,
        name="charge",
        retry=[Retry(errors=["Net"], max_attempts=7)],
        timeout_seconds=30,
    )
    registry.register(lambda p: p, name="pick", timeout_seconds=12)
    return registry


def test_apply_defaults_fills_tasks_without_a_policy() -> None:
    definition = parse_definition(DEFINITION)
    applied = defaults_registry().apply_defaults(definition)
    a = applied.states["A"]
    assert isinstance(a, TaskState)
    assert a.retry == [Retry(errors=["Net"], max_attempts=7)]
    assert a.timeout_seconds == 30
    par = applied.states["Par"]
    assert isinstance(par, ParallelState)
    p = par.branches[0].states["P"]
    assert isinstance(p, TaskState)
    assert (p.retry, p.timeout_seconds) == (a.retry, 30)
    m = applied.states["M"]
    assert isinstance(m, MapState)
    i = m.iterator.states["I"]
    assert isinstance(i, TaskState)
    assert (i.retry, i.timeout_seconds) == ([], 12)


def test_apply_defaults_leaves_tasks_with_their_own_policy_and_unknown_activities() -> None:
    definition = parse_definition(DEFINITION)
    applied = defaults_registry().apply_defaults(definition)
    assert applied.states["B"] == definition.states["B"]
    par, original = applied.states["Par"], definition.states["Par"]
    assert isinstance(par, ParallelState) and isinstance(original, ParallelState)
    assert par.branches[1] == original.branches[1]
    assert applied.name == definition.name
    assert applied.start_at == definition.start_at


def test_apply_defaults_returns_a_new_valid_definition() -> None:
    definition = parse_definition(DEFINITION)
    before = definition.document()
    applied = defaults_registry().apply_defaults(definition)
    assert definition.document() == before  # the original is untouched
    assert parse_definition(applied.document()) == applied
    assert applied != definition
    assert ActivityRegistry().apply_defaults(definition) == definition


def test_iter_tasks_and_missing() -> None:
    definition = parse_definition(DEFINITION)
    assert sorted(task.activity for task in iter_tasks(definition)) == [
        "charge",
        "charge",
        "charge",
        "pick",
        "unregistered",
    ]
    assert defaults_registry().missing(definition) == ["unregistered"]
    assert ActivityRegistry().missing(definition) == ["charge", "pick", "unregistered"]
