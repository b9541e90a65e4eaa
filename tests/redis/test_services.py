"""The site's service backends (adapters/services) on a real Valkey and Redis 7."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from rustyflower.adapters.services.http import UrllibHttp
from rustyflower.adapters.services.onprem import (
    DirectoryObjects,
    OnPremBackends,
    entity_tag,
    queue_stream,
)
from rustyflower.core.services import (
    EventPublish,
    HttpCall,
    ObjectGet,
    ObjectPut,
    QueueSend,
    ServiceAccessDenied,
    ServiceNotFound,
    ServiceUnavailable,
)
from tests.redis.conftest import Runtime


def test_a_send_is_idempotent_per_call(runtime: Runtime) -> None:
    backends = OnPremBackends(runtime.client, runtime.keys.prefix)
    first = backends.send_message(QueueSend("orders", {"n": 1}), "i:A:1:3")
    again = backends.send_message(QueueSend("orders", {"n": 1}), "i:A:1:3")
    other = backends.send_message(QueueSend("orders", {"n": 2}), "i:A:2:5")
    assert first == again != other
    entries = runtime.client.xrange(queue_stream(runtime.keys.prefix, "orders"))
    assert [json.loads(fields[b"body"]) for _, fields in entries] == [{"n": 1}, {"n": 2}]


def test_events_and_redis_objects(runtime: Runtime) -> None:
    backends = OnPremBackends(runtime.client, runtime.keys.prefix)
    event_id = backends.publish_event(EventPublish("bus-1", "t", {"a": 1}), "k")
    assert event_id.count("-") == 1  # a stream entry id
    tag = backends.put_object(ObjectPut("store-1", "a/b.json", {"x": 1}), "k")
    assert tag == entity_tag(b'{"x":1}')
    assert backends.get_object(ObjectGet("store-1", "a/b.json")) == b'{"x":1}'
    with pytest.raises(ServiceNotFound):
        backends.get_object(ObjectGet("store-1", "a/c.json"))


def test_an_unreachable_redis_is_service_unavailable(runtime: Runtime) -> None:
    import redis  # noqa: PLC0415

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dead = redis.Redis(port=port, socket_connect_timeout=0.2)
    with pytest.raises(ServiceUnavailable):
        OnPremBackends(dead, "x").send_message(QueueSend("orders", 1), "k")


def test_directory_objects_stay_in_their_store(tmp_path: Path) -> None:
    objects = DirectoryObjects(tmp_path)
    objects.put("reports", "a/b.txt", b"hi")
    assert (tmp_path / "reports" / "a" / "b.txt").read_bytes() == b"hi"
    (tmp_path / "secret").write_text("no")
    with pytest.raises(ServiceAccessDenied):
        objects.get("reports", "../secret")  # the key check refuses this first; this is the proof
    with pytest.raises(ServiceNotFound):
        objects.get("reports", "a")  # a folder is no object


def test_an_address_nobody_answers_is_service_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ServiceUnavailable, match="got no answer"):
        UrllibHttp(timeout_seconds=2)(HttpCall("GET", f"http://127.0.0.1:{port}/x"))


def test_the_runner_carries_out_service_tasks_on_the_site(runtime: Runtime, tmp_path: Path) -> None:
    """The service corpus's store-and-send case on the Redis runner: a real worker runs its
    service tasks on this server and a folder; the queue, bus and store hold what the case
    says, and the output is the corpus's."""
    from tests.conformance.activities import registry  # noqa: PLC0415
    from tests.conformance.corpus import SERVICES_DIR, load_cases  # noqa: PLC0415
    from tests.conformance.services_kit import effect_problems, onprem_effects  # noqa: PLC0415
    from tests.redis.activities import running_worker, wait_finished  # noqa: PLC0415

    case = next(c for c in load_cases(SERVICES_DIR) if c.name == "put_get_send_publish")
    assert case.flow is not None
    runtime.store.register(case.flow)
    started = runtime.conductor.start(case.flow.name, case.input)
    objects = tmp_path / "objects"
    with running_worker(runtime.server.url, runtime.keys, registry, objects_dir=str(objects)):
        wait_finished(runtime.store, started.instance_id, 20)
    done = runtime.store.load(started.instance_id, fresh=True)
    assert (done.status, done.state.output) == ("succeeded", case.expect.output)
    seen = onprem_effects(case, runtime.client, runtime.keys.prefix, objects)
    assert effect_problems(case.expect.effects, seen) == []
