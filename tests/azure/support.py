"""Helpers of the orchestrator tests: keys, app settings, a test sink, corpus handover.

A conformance run in Azure goes: run the case on the in-process virtual runtime up to
transition *k* (:func:`cut_virtual`), post the signed snapshot to the app's real HTTP
starter (``continue_snapshot``, with a :class:`LocalDurableClient` over the replay host),
hand over the scripted events the outside world has already scheduled, and let the
:class:`DurableHost` run the real SDK orchestrator to the end (:func:`continue_in_azure`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import azure.functions as func

from functions_azure.function_app import app
from functions_azure.settings import ACTIVITY
from rustyflower.adapters.azure.ids import durable_instance_id
from rustyflower.adapters.localcloud.azure import http_request
from rustyflower.adapters.localcloud.durable_client import LocalDurableClient
from rustyflower.adapters.localcloud.durable_history import EPOCH, Instance, functions_of
from rustyflower.adapters.localcloud.durable_host import DurableHost
from rustyflower.core.activities import ActivityRegistry
from rustyflower.core.engine import Snapshot, advance, start
from rustyflower.core.errors import NoWaiterError, StaleEventError
from rustyflower.core.model import parse_definition
from rustyflower.core.snapshot import SnapshotKeys, generate_signing_key
from rustyflower.core.snapshot.document import encode_snapshot
from rustyflower.core.snapshot.handover import encode_handover
from rustyflower.testing import FlowLibrary, ScriptedEvent, VirtualRuntime, World
from tests.conformance.activities import VIRTUAL_DURATIONS, registry
from tests.conformance.corpus import Case, EventSpec

SIGNING_KEY = generate_signing_key("azure-tests")
KEYS = SnapshotKeys.signing_only(SIGNING_KEY)


def app_settings(**overrides: str) -> dict[str, str]:
    """The app settings the tests run the Function App with."""
    settings = {
        "RUSTYFLOWER_ACTIVITIES": "tests.conformance.activities",
        "RUSTYFLOWER_SIGNING_KEYS": f"{SIGNING_KEY.key_id}:{SIGNING_KEY.to_base64()}",
        "RUSTYFLOWER_REQUIRE_SIGNATURE": "true",
        "RUSTYFLOWER_SNAPSHOT_SINK": "tests.azure.support:memory_sink",
        "RUSTYFLOWER_CONTINUE_AS_NEW_AFTER": "100",
        "RUSTYFLOWER_CHECKPOINT_EVERY": "1",
    }
    settings.update(overrides)
    return settings


class InMemorySnapshotSink:
    """A test fake of the Blob snapshot store: keeps every checkpoint in a list."""

    def __init__(self) -> None:
        self.puts: list[tuple[str, int, bytes]] = []

    def put(self, instance_id: str, seq: int, data: bytes) -> None:
        self.puts.append((instance_id, seq, data))

    def latest(self, instance_id: str) -> tuple[int, bytes] | None:
        found = [(seq, data) for iid, seq, data in self.puts if iid == instance_id]
        return max(found, key=lambda item: item[0]) if found else None


MEMORY_SINK = InMemorySnapshotSink()


def memory_sink(_settings: Any) -> InMemorySnapshotSink:
    """``RUSTYFLOWER_SNAPSHOT_SINK=tests.azure.support:memory_sink``."""
    return MEMORY_SINK


def conformance_durations(function: str, payload: Any) -> float:
    """How long an activity function call lasts on the virtual clock (the corpus' rule)."""
    if function != ACTIVITY or not isinstance(payload, dict):
        return 0.0
    command = payload.get("command") or {}
    measure = VIRTUAL_DURATIONS.get(command.get("activity", ""))
    return 0.0 if measure is None else float(measure(command.get("input")))


# --- calling the app's functions ---------------------------------------------------------


def call_http(name: str, req: func.HttpRequest, client: LocalDurableClient) -> func.HttpResponse:
    """Call one of the app's HTTP functions (its user code, with the client given)."""
    user = functions_of(app)[name].get_user_function()
    response: func.HttpResponse = asyncio.run(user.client_function(req=req, client=client))
    return response


def start_body(
    snapshot: Snapshot | bytes,
    flows: Sequence[Any] = (),
    children: Sequence[bytes] = (),
    keys: SnapshotKeys = KEYS,
) -> bytes:
    """The site's handover envelope (``core.snapshot.handover``), signed with ``keys``."""
    data = snapshot if isinstance(snapshot, bytes) else encode_snapshot(snapshot, keys)
    definitions = [parse_definition(flow) for flow in flows]
    return encode_handover(data, keys, children=children, flows=definitions)


def post_snapshot(client: LocalDurableClient, body: bytes) -> func.HttpResponse:
    req = http_request("POST", "http://localhost:7071/api/instances", body)
    return call_http("continue_snapshot", req, client)


def body_json(response: func.HttpResponse) -> Any:
    return json.loads(response.get_body())


# --- the outside world: scripted events ------------------------------------------------------


@dataclass
class ScriptedSender:
    """Sends each case event the first time a wait of its name shows in a custom status.

    The same rule as the virtual runtime's world (``World.see_wait``): the next unused
    scripted event of that name, ``after_seconds`` after the wait appeared, by name.
    """

    events: Sequence[EventSpec]
    used: set[int] = field(default_factory=set)
    bound: set[tuple[str, str]] = field(default_factory=set)

    def __call__(self, host: DurableHost, instance: Instance) -> None:
        status = instance.custom_status
        if not isinstance(status, dict):
            return
        flow_id = str(status.get("instance_id"))
        for wait in status.get("waiting_for") or []:
            key = (flow_id, str(wait["wait_id"]))
            if key in self.bound:
                continue
            self.bound.add(key)
            for index, spec in enumerate(self.events):
                if index not in self.used and spec.event == wait["event"]:
                    self.used.add(index)
                    when = host.clock + timedelta(seconds=spec.after_seconds)
                    host.raise_event(instance.instance_id, spec.event, spec.data, at=when)
                    break


# --- the corpus, handed over from the virtual runtime ------------------------------------------


@dataclass
class Handover:
    snapshot: Snapshot
    now: datetime
    world: World


def instance_id_of(case: Case) -> str:
    return f"{case.file}.{case.name}"


def world_for(case: Case, activities: ActivityRegistry | None = None) -> World:
    return World(
        registry=registry if activities is None else activities,
        durations=VIRTUAL_DURATIONS,
        flows=FlowLibrary(case.subflows),
        events=tuple(ScriptedEvent(s.event, s.data, s.after_seconds) for s in case.events),
        keys=KEYS,
    )


def cut_virtual(case: Case, k: int, activities: ActivityRegistry | None = None) -> Handover:
    """Run ``case`` on the virtual runtime until its snapshot is at transition ``k``
    (``activities``: another registry than the corpus's, with service tasks say)."""
    assert case.flow is not None, case.problem
    world = world_for(case, activities)
    runtime = VirtualRuntime(world, EPOCH)
    transition = start(case.flow, case.input, instance_id_of(case), EPOCH)
    runtime.snapshot = transition.snapshot
    runtime.carry_out(transition.commands)
    while runtime.snapshot.seq < k and runtime.finish is None:
        entry = runtime.next_entry()
        if entry is None:
            break
        runtime.now = entry.when
        try:
            transition = advance(runtime.snapshot, entry.event, entry.when)
        except StaleEventError:
            continue
        except NoWaiterError:
            if entry.from_world:
                continue
            raise
        runtime.snapshot = transition.snapshot
        runtime.carry_out(transition.commands)
    assert runtime.snapshot.seq == k, f"{case.id}: no transition {k}"
    return Handover(runtime.snapshot, runtime.now, world)


@dataclass
class AzureRun:
    host: DurableHost
    client: LocalDurableClient
    instance: Instance
    start_status: int

    @property
    def result(self) -> dict[str, Any]:
        output = self.instance.output
        assert isinstance(output, dict), (self.instance.status, self.instance.failure)
        return output

    @property
    def elapsed(self) -> float:
        assert self.instance.finished_at is not None
        return (self.instance.finished_at - EPOCH).total_seconds()

    def idempotency_keys(self) -> list[str]:
        return [
            run.input["command"]["idempotency_key"]
            for run in self.host.activity_runs
            if run.function == ACTIVITY
        ]

    def generations(self) -> int:
        return max(inst.generation for inst in self.host.instances.values())


def continue_in_azure(
    case: Case, handover: Handover, *, batch: bool = True, schema: int = 1
) -> AzureRun:
    """Post the handed-over snapshot to the app and run the orchestration to its end."""
    world = handover.world
    sender = ScriptedSender(
        [
            EventSpec(event=e.event, data=e.data, after_seconds=e.after_seconds)
            for e in world.events
        ],
        used=set(world._used),
        bound=set(world._bound),
    )
    host = DurableHost(
        app,
        now=handover.now,
        durations=conformance_durations,
        on_episode=sender,
        batch=batch,
        schema=schema,
    )
    client = LocalDurableClient(host)
    flows = [definition.document() for definition in case.subflows]
    response = post_snapshot(client, start_body(handover.snapshot, flows))
    durable_id = durable_instance_id(handover.snapshot.instance_id)
    for entry in world._sends:  # sends the outside world had scheduled before the cut
        assert entry.instance_id == handover.snapshot.instance_id, "a child's event in flight"
        event = entry.event
        host.raise_event(durable_id, event.event, event.data, at=entry.when)  # type: ignore[union-attr]
    host.run()
    return AzureRun(host, client, host.instances[durable_id], response.status_code)
