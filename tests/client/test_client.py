"""rustyflower.client against a real server: everything a program does with the runner.

Every test runs on the embedded Valkey and on Debian's redis-server (``server``), each
under a key prefix of its own, through public imports only (``rustyflower``,
``rustyflower.client``, ``rustyflower.worker``); the store is read directly only to set up
situations the public face cannot make (an instance owned by a cloud).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import redis

from rustyflower import (
    ActivityRegistry,
    DefinitionError,
    Flow,
    NoWaiterError,
    Retry,
    RustyFlowerError,
    SignatureMissingError,
    SnapshotError,
    SnapshotKeys,
    current_call,
    decode_snapshot,
    generate_signing_key,
    read_definition,
)
from rustyflower.adapters.redis.keys import Keyspace
from rustyflower.adapters.redis.store import RedisStore
from rustyflower.client import (
    Client,
    InstanceFailedError,
    RedisUnavailableError,
    ResultTimeoutError,
    UnknownFlowError,
    UnknownInstanceError,
    VersionConflictError,
)
from rustyflower.worker import Worker
from tests.redis.servers import ServerProcess, valkey_binary

pytestmark = pytest.mark.emulator

REPO = Path(__file__).resolve().parents[2]

activities = ActivityRegistry()


class Flaky(Exception):
    """Fails the first attempt of ``flaky``."""


@activities.activity
def double(payload: dict[str, Any]) -> dict[str, Any]:
    return {"value": payload["value"] * 2}


@activities.activity(retry=[Retry(errors=["Flaky"], max_attempts=3, interval_seconds=1)])
def flaky(payload: Any) -> dict[str, int]:
    if current_call().attempt == 1:
        raise Flaky("first attempt")
    return {"attempt": current_call().attempt}


@activities.activity
def refuse(payload: Any) -> None:
    raise PermissionError("not today")


def doubling(version: str = "1") -> Any:
    return Flow("doubling", version=version).task("Double", "double").build()


def approval() -> Any:
    """Waits for ``approval``, then ends with it: needs no worker to finish."""
    return (
        Flow("approval")
        .wait_for_event("Wait", "approval", result_path="$.answer")
        .succeed("Done")
        .build()
    )


@pytest.fixture
def worker(client: Client) -> Iterator[Worker]:
    with Worker(client, activities, concurrency=2, name="client-tests") as running:
        yield running


def commands(server: ServerProcess, name: str) -> int:
    """How many times the server has run ``name`` since it started (INFO commandstats)."""
    probe = redis.Redis.from_url(server.url)
    try:
        stats = probe.info("commandstats")
    finally:
        probe.close()
    return int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))


# --- starting and results -------------------------------------------------------------------


def test_a_started_instance_gives_its_result(client: Client, worker: Worker) -> None:
    assert client.register(doubling(), activities=activities) is True
    order = client.start("doubling", {"value": 21})
    assert order.result(timeout=10) == {"value": 42}
    status = order.status()
    assert (status.status, status.finished, status.positions) == ("succeeded", True, ())
    assert (status.flow, status.version, status.owner) == ("doubling", "1", "local")
    kinds = [entry.kind for entry in order.history()]
    assert (kinds[0], kinds[-1]) == ("FlowStarted", "FlowSucceeded")


def test_result_is_announced_not_polled(server: ServerProcess, client: Client) -> None:
    """The waiter blocks on the finish channel: it learns of the end at once although it
    reads the status only every 30 s, and it reads the status a handful of times at most."""
    client.register(approval())
    order = client.start("approval", {})
    answer: dict[str, Any] = {}

    def wait() -> None:
        began = time.monotonic()
        answer["output"] = order.wait(timeout=20, recheck=30).output
        answer["seconds"] = time.monotonic() - began

    waiter = threading.Thread(target=wait)
    reads_before = commands(server, "hmget")
    waiter.start()
    time.sleep(1.0)
    assert waiter.is_alive()
    client.signal(order.id, "approval", {"approved": True})
    signalled = time.monotonic()
    waiter.join(timeout=15)
    assert not waiter.is_alive()
    assert answer["output"] == {"answer": {"approved": True}}
    assert answer["seconds"] < 15
    assert time.monotonic() - signalled < 2.0
    # a status read before the wait, one after the notice, one for the final status and
    # the signal's own; a poll every few milliseconds would have made hundreds
    assert commands(server, "hmget") - reads_before <= 6


def test_result_gives_up_after_the_timeout(client: Client) -> None:
    client.register(approval())
    order = client.start("approval", {})
    began = time.monotonic()
    with pytest.raises(ResultTimeoutError, match=r"still running after 0\.3 s") as raised:
        order.result(timeout=0.3)
    assert 0.3 <= time.monotonic() - began < 3
    assert raised.value.instance_id == order.id
    assert isinstance(raised.value, TimeoutError)
    assert order.status().status == "running"


def test_a_failed_instance_raises_with_its_error_and_can_be_retried(
    client: Client, worker: Worker
) -> None:
    flow = Flow("refusing").task("Refuse", "refuse").build()
    client.register(flow)
    order = client.start("refusing", None)
    with pytest.raises(InstanceFailedError, match="not today") as raised:
        order.result(timeout=10)
    assert (raised.value.status, raised.value.error) == ("failed", "PermissionError")
    order.retry()
    with pytest.raises(InstanceFailedError):
        order.result(timeout=10)
    assert [entry.kind for entry in order.history()].count("FlowFailed") == 2


def test_cancel_ends_the_instance_as_cancelled(client: Client) -> None:
    client.register(approval())
    order = client.start("approval", {})
    order.cancel("changed my mind")
    with pytest.raises(InstanceFailedError, match="cancelled") as raised:
        order.result(timeout=5)
    assert raised.value.status == "cancelled"


def test_hold_and_release(client: Client) -> None:
    client.register(approval())
    order = client.start("approval", {})
    order.hold("checking")
    assert order.status().held is True
    order.release()
    status = order.status()
    assert (status.held, status.positions) == (False, ("Wait",))


def test_a_signal_nothing_waits_for_is_refused(client: Client) -> None:
    client.register(approval())
    order = client.start("approval", {})
    with pytest.raises(NoWaiterError):
        order.signal("payment", {})
    assert order.status().status == "running"


def test_start_with_an_existing_id_starts_nothing(client: Client, worker: Worker) -> None:
    client.register(doubling())
    first = client.start("doubling", {"value": 1}, id="order-1")
    assert first.result(timeout=10) == {"value": 2}
    again = client.start("doubling", {"value": 5}, id="order-1")
    assert again == first
    assert again.result(timeout=1) == {"value": 2}


def test_start_many(client: Client, worker: Worker) -> None:
    client.register(doubling())
    handles = client.start_many("doubling", [{"value": n} for n in range(20)])
    assert len({handle.id for handle in handles}) == 20
    assert [handle.result(timeout=20)["value"] for handle in handles] == [2 * n for n in range(20)]
    listed = client.instances(flow="doubling", status="succeeded", limit=100)
    assert {handle.id for handle in listed} == {handle.id for handle in handles}


def test_register_applies_the_activities_defaults_and_refuses_unknown_ones(
    client: Client, worker: Worker
) -> None:
    flow = Flow("flaky").task("Try", "flaky").build()
    client.register(flow, activities=activities)
    order = client.start("flaky", None)
    assert order.result(timeout=10) == {"attempt": 2}
    registered = decode_snapshot(order.snapshot()).definition
    assert registered.states["Try"].retry[0].errors == ["Flaky"]  # type: ignore[union-attr]
    unknown = Flow("unknown").task("T", "no_such_activity").build()
    with pytest.raises(DefinitionError, match="no_such_activity"):
        client.register(unknown, activities=activities)


def test_versions_and_unknown_names(client: Client) -> None:
    client.register(doubling("1"))
    assert client.register(doubling("1")) is False
    changed = Flow("doubling", version="1").task("Other", "double").build()
    with pytest.raises(VersionConflictError):
        client.register(changed)
    with pytest.raises(UnknownFlowError, match="no version '9'"):
        client.start("doubling", {}, version="9")
    with pytest.raises(UnknownFlowError, match="unknown flow 'nope'"):
        client.start("nope", {})
    with pytest.raises(UnknownInstanceError):
        client.instance("no-such-id")
    with pytest.raises(ValueError, match="priority 'urgent'"):
        client.start("doubling", {}, priority="urgent")  # type: ignore[arg-type]


def test_register_syncs_the_schedules_a_flow_declares(
    server: ServerProcess, client: Client, prefix: str
) -> None:
    """As `rustyflower flows register` does: the nightly report declares a cron schedule."""
    definition = read_definition(REPO / "examples" / "nightly_report" / "flow.yaml")
    client.register(definition)
    probe = redis.Redis.from_url(server.url)
    stored = probe.hgetall(Keyspace(prefix=prefix).schedules())
    probe.close()
    ((name, spec),) = stored.items()
    assert name.decode().startswith("nightly_report:")
    assert definition.schedules[0].cron in spec.decode()


# --- snapshots --------------------------------------------------------------------------------


def test_snapshot_is_signed_with_the_clients_keys(server: ServerProcess, prefix: str) -> None:
    keys = SnapshotKeys.from_keys([generate_signing_key("k1")])
    with Client.connect(server.url, prefix=prefix, keys=keys) as signed:
        signed.register(approval())
        order = signed.start("approval", {"n": 1}, id="signed-1")
        data = order.snapshot()
    snapshot = decode_snapshot(data, keys)
    assert (snapshot.instance_id, snapshot.state.input) == ("signed-1", {"n": 1})
    with pytest.raises(SignatureMissingError):  # the same bytes must not pass as unsigned
        decode_snapshot(data.replace(b'"signature"', b'"signatur_"'), keys)


def test_snapshot_is_sealed_again_with_the_active_key(server: ServerProcess, prefix: str) -> None:
    old, new = generate_signing_key("old"), generate_signing_key("new")
    with Client.connect(server.url, prefix=prefix, keys=SnapshotKeys.from_keys([old])) as before:
        before.register(approval())
        before.start("approval", {}, id="rotated-1")
    rotated = SnapshotKeys.from_keys([new, old])  # `new` signs, both verify
    with Client.connect(server.url, prefix=prefix, keys=rotated) as after:
        data = after.instance("rotated-1").snapshot()
    assert decode_snapshot(data, SnapshotKeys.from_keys([new])).instance_id == "rotated-1"
    with pytest.raises(SnapshotError, match="'new'"):  # no longer the old key's signature
        decode_snapshot(data, SnapshotKeys.from_keys([old]))


# --- connecting -------------------------------------------------------------------------------


def test_connect_finds_the_server_as_the_cli_does(
    server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    monkeypatch.delenv("RUSTYFLOWER_REDIS_URL", raising=False)
    monkeypatch.setenv("RUSTYFLOWER_PREFIX", prefix)
    with pytest.raises(RedisUnavailableError, match="no Redis configured"):
        Client.connect(data_dir=tmp_path)
    (tmp_path / "server.url").write_text(server.url + "\n")
    with Client.connect(data_dir=tmp_path) as from_dev_server:
        assert from_dev_server.prefix == prefix
        from_dev_server.register(approval())
    monkeypatch.setenv("RUSTYFLOWER_REDIS_URL", server.url)
    with Client.connect(data_dir=tmp_path / "elsewhere") as from_setting:
        assert from_setting.start("approval", {}).status().status == "running"


def test_a_lost_server_is_one_clear_error(tmp_path: Path) -> None:
    lost = ServerProcess("valkey", valkey_binary(), tmp_path / "lost")
    lost.start()
    admin = redis.Redis.from_url(lost.url)
    admin.acl_setuser("user", enabled=True, passwords=["+secret"], keys=["*"], commands=["+@all"])
    admin.close()
    client = Client.connect(lost.url.replace("redis://", "redis://user:secret@"), keys=None)
    assert "secret" not in client.url
    lost.stop()
    with pytest.raises(RedisUnavailableError, match="went away") as raised:
        client.instances()
    assert "secret" not in str(raised.value)
    client.close()


# --- an instance that failed over ---------------------------------------------------------------


class _FunctionAppStandIn(BaseHTTPRequestHandler):
    """A fake of the Function App's raise-event endpoint (no Functions host runs here):
    it records each request and accepts it, as the app does."""

    received: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        self.received.append((self.path, self.headers.get("x-functions-key", ""), body))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        del format, args


def test_a_signal_reaches_an_instance_that_lives_in_a_cloud(
    server: ServerProcess, client: Client, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client.register(approval())
    order = client.start("approval", {})
    store = RedisStore(redis.Redis.from_url(server.url), Keyspace(prefix=prefix))
    assert store.fence(order.id, 1, "azure")  # what `failover --to azure` does first
    monkeypatch.delenv("RUSTYFLOWER_AZURE_FUNCTION_URL", raising=False)
    with pytest.raises(RustyFlowerError, match="RUSTYFLOWER_AZURE_FUNCTION_URL"):
        order.signal("approval", {"approved": True})

    class FunctionApp(_FunctionAppStandIn):
        received: ClassVar[list[tuple[str, str, bytes]]] = []

    app = HTTPServer(("127.0.0.1", 0), FunctionApp)
    serving = threading.Thread(target=app.serve_forever, daemon=True)
    serving.start()
    try:
        monkeypatch.setenv("RUSTYFLOWER_AZURE_FUNCTION_URL", f"http://127.0.0.1:{app.server_port}")
        monkeypatch.setenv("RUSTYFLOWER_AZURE_FUNCTION_KEY", "app-key")
        order.signal("approval", {"approved": True})
    finally:
        app.shutdown()
        app.server_close()
    assert FunctionApp.received == [
        (f"/api/instances/{order.id}/events/approval", "app-key", b'{"approved": true}')
    ]
    status = order.status()  # nothing was applied here: the instance is Azure's
    assert (status.owner, status.positions, status.seq) == ("azure", ("Wait",), 1)
