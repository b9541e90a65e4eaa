"""The app's HTTP endpoints: start (verification, idempotency), status, events, terminate.

The endpoints are the app's own registered functions, called with a
:class:`LocalDurableClient` (no Functions host runs here) whose orchestrations run on the
replay host with the real SDK orchestrator.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
from datetime import timedelta
from typing import Any

import pytest

from functions_azure.function_app import app
from rustyflower.adapters.azure.ids import durable_instance_id, is_durable_id
from rustyflower.adapters.localcloud.durable_client import LocalDurableClient
from rustyflower.adapters.localcloud.durable_history import EPOCH
from rustyflower.adapters.localcloud.durable_host import DurableHost
from rustyflower.core.engine import EventReceived, advance, outstanding, start
from rustyflower.core.model import parse_definition
from rustyflower.core.snapshot import (
    SnapshotKeys,
    codec,
    generate_encryption_key,
    generate_signing_key,
)
from rustyflower.core.snapshot.canonical import canonical_json
from rustyflower.core.snapshot.document import decode_snapshot, encode_snapshot, to_document
from tests.azure.support import (
    KEYS,
    MEMORY_SINK,
    body_json,
    call_http,
    conformance_durations,
    http_request,
    post_snapshot,
    start_body,
)

pytestmark = pytest.mark.usefixtures("azure_env")

APPROVAL = parse_definition(
    {
        "name": "approval_http",
        "start_at": "Prepare",
        "states": {
            "Prepare": {"type": "task", "activity": "echo", "result_path": "$.echo", "next": "Ask"},
            "Ask": {
                "type": "wait_for_event",
                "event": "approval",
                "timeout_seconds": 3600,
                "on_timeout": "Expired",
                "result_path": "$.decision",
                "next": "Done",
            },
            "Expired": {"type": "fail", "error": "Expired"},
            "Done": {"type": "succeed"},
        },
    }
)
CALLS_CHILD = parse_definition(
    {
        "name": "calls_child",
        "start_at": "Call",
        "states": {"Call": {"type": "sub_flow", "flow": "leaf", "end": True}},
    }
)
LEAF = parse_definition(
    {"name": "leaf", "start_at": "Done", "states": {"Done": {"type": "pass", "end": True}}}
)


def settle(client: LocalDurableClient, seconds: float = 10) -> None:
    """Run the host a little while (not until the approval's one-hour timeout)."""
    client.host.run(until=client.host.clock + timedelta(seconds=seconds))


def new_client() -> LocalDurableClient:
    return LocalDurableClient(DurableHost(app, durations=conformance_durations))


def approval_snapshot(instance_id: str = "order-42") -> Any:
    return start(APPROVAL, {"order": 42}, instance_id, EPOCH).snapshot


def route(name: str, instance_id: str, **extra: Any) -> Any:
    params = extra.pop("params", None)
    body = extra.pop("body", b"")
    url = f"http://localhost:7071/api/instances/{instance_id}"
    return http_request("POST", url, body, {"instance_id": instance_id, **extra}, params)


# --- starting -------------------------------------------------------------------------------


def test_start_answers_with_the_check_status_response() -> None:
    client = new_client()
    response = post_snapshot(client, start_body(approval_snapshot()))
    assert response.status_code == 202
    assert response.headers["X-RustyFlower-Started"] == "true"
    links = body_json(response)
    assert links["id"] == "order-42"
    assert "instances/order-42" in links["statusQueryGetUri"]
    assert client.started == ["order-42"]


def test_raw_snapshot_bytes_are_accepted_too() -> None:
    client = new_client()
    response = post_snapshot(client, encode_snapshot(approval_snapshot(), KEYS))
    assert response.status_code == 202
    assert client.started == ["order-42"]


def test_a_repeated_start_is_idempotent() -> None:
    """Failover twice with the same snapshot: one orchestration, the same answer."""
    client = new_client()
    body = start_body(approval_snapshot())
    first = post_snapshot(client, body)
    settle(client)  # it waits for the approval
    second = post_snapshot(client, body)
    assert first.status_code == second.status_code == 202
    assert second.headers["X-RustyFlower-Started"] == "false"
    assert body_json(first) == body_json(second)
    assert client.started == ["order-42"]
    assert len(client.host.instances) == 1


def test_a_start_of_a_completed_instance_returns_it() -> None:
    client = new_client()
    body = start_body(approval_snapshot())
    post_snapshot(client, body)
    settle(client)
    call_http(
        "raise_flow_event",
        route("raise_flow_event", "order-42", event_name="approval", body=b'{"ok": true}'),
        client,
    )
    settle(client)
    assert client.host.instances["order-42"].status == "Completed"
    again = post_snapshot(client, body)
    assert again.status_code == 202
    assert again.headers["X-RustyFlower-Started"] == "false"
    assert client.started == ["order-42"]


def test_a_terminated_instance_can_be_continued_again() -> None:
    """After failback (terminate), a later failover of the same instance starts anew."""
    client = new_client()
    body = start_body(approval_snapshot())
    post_snapshot(client, body)
    settle(client)
    call_http("terminate_flow_instance", route("terminate_flow_instance", "order-42"), client)
    again = post_snapshot(client, body)
    assert again.headers["X-RustyFlower-Started"] == "true"
    assert client.started == ["order-42", "order-42"]


def test_a_long_instance_id_maps_to_a_durable_id() -> None:
    flow_id = "site-a/orders#" + "x" * 120
    assert not is_durable_id(flow_id)
    mapped = durable_instance_id(flow_id)
    assert is_durable_id(mapped) and mapped == durable_instance_id(flow_id)
    client = new_client()
    response = post_snapshot(client, start_body(approval_snapshot(flow_id)))
    assert response.status_code == 202
    assert client.started == [mapped]
    settle(client)
    status = client.host.instances[mapped].custom_status
    assert status["instance_id"] == flow_id


def test_sub_flows_come_with_the_request() -> None:
    client = new_client()
    snapshot = start(CALLS_CHILD, {}, "parent-1", EPOCH).snapshot
    missing = post_snapshot(client, start_body(snapshot))
    assert missing.status_code == 400
    assert body_json(missing)["error"] == "BundleError"
    assert "'leaf'" in body_json(missing)["message"]
    response = post_snapshot(client, start_body(snapshot, [LEAF.document()]))
    assert response.status_code == 202
    client.host.run()
    assert client.host.instances["parent-1"].output["status"] == "succeeded"


def test_sub_flows_can_ship_with_the_app(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "leaf.json").write_text(json.dumps(LEAF.document()))
    monkeypatch.setenv("RUSTYFLOWER_FLOWS_PATH", str(tmp_path))
    client = new_client()
    snapshot = start(CALLS_CHILD, {}, "parent-2", EPOCH).snapshot
    assert post_snapshot(client, start_body(snapshot)).status_code == 202
    client.host.run()
    assert client.host.instances["parent-2"].output["status"] == "succeeded"


def unsigned_envelope(snapshot: Any, flows: list[Any]) -> bytes:
    """A caller's own envelope: a genuine signed snapshot next to definitions it chose."""
    data = encode_snapshot(snapshot, KEYS)
    return json.dumps(
        {"snapshot": base64.b64encode(data).decode("ascii"), "flows": flows, "children": []}
    ).encode("utf-8")


def leaf_version(version: str, result: str) -> Any:
    return parse_definition(
        {
            "name": "leaf",
            "version": version,
            "start_at": "Done",
            "states": {"Done": {"type": "pass", "result": result, "end": True}},
        }
    )


def test_unsigned_sub_flows_next_to_a_signed_snapshot_are_refused(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 10, item 4: ``leaf@999`` added to a genuine snapshot must not run instead of
    the shipped ``leaf`` (an unversioned call takes the highest version)."""
    (tmp_path / "leaf.json").write_text(json.dumps(leaf_version("1", "shipped").document()))
    monkeypatch.setenv("RUSTYFLOWER_FLOWS_PATH", str(tmp_path))
    client = new_client()
    snapshot = start(CALLS_CHILD, {}, "parent-9", EPOCH).snapshot
    injected = leaf_version("999", "injected").document()
    refused = post_snapshot(client, unsigned_envelope(snapshot, [injected]))
    assert refused.status_code == 400
    assert body_json(refused)["error"] == "SignatureMissingError"
    assert "sub-flow" in body_json(refused)["message"]
    assert client.started == []

    # the site's own envelope signs what it sends: its definitions are taken
    signed = post_snapshot(client, start_body(snapshot, [leaf_version("2", "site").document()]))
    assert signed.status_code == 202
    client.host.run()
    assert client.host.instances["parent-9"].output["status"] == "succeeded"
    child = client.host.instances[durable_instance_id("parent-9/Call@1")]
    assert child.output["output"] == "site"


def test_a_signed_list_of_sub_flows_cannot_be_extended_or_swapped() -> None:
    snapshot = start(CALLS_CHILD, {}, "parent-10", EPOCH).snapshot
    genuine = json.loads(start_body(snapshot, [leaf_version("2", "site").document()]))
    extended = {**genuine, "flows": [*genuine["flows"], leaf_version("999", "x").document()]}
    swapped = {**genuine, "flows": [leaf_version("2", "swapped").document()]}
    other = start(CALLS_CHILD, {}, "parent-11", EPOCH).snapshot
    moved = {**genuine, "snapshot": json.loads(start_body(other))["snapshot"]}
    for forged in (extended, swapped, moved):
        client = new_client()
        response = post_snapshot(client, json.dumps(forged).encode())
        assert response.status_code == 400, forged
        assert body_json(response)["error"] == "SignatureInvalidError"
        assert client.started == []


def test_shipped_sub_flows_win_over_travelling_ones(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "leaf.json").write_text(json.dumps(leaf_version("1", "shipped").document()))
    monkeypatch.setenv("RUSTYFLOWER_FLOWS_PATH", str(tmp_path))
    client = new_client()
    snapshot = start(CALLS_CHILD, {}, "parent-12", EPOCH).snapshot
    response = post_snapshot(client, start_body(snapshot, [leaf_version("1", "site").document()]))
    assert response.status_code == 202
    client.host.run()
    child = client.host.instances[durable_instance_id("parent-12/Call@1")]
    assert child.output["output"] == "shipped"


def test_encrypted_snapshots_are_opened_and_checkpoints_sealed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = generate_encryption_key("enc")
    monkeypatch.setenv("RUSTYFLOWER_ENCRYPTION_KEYS", f"enc:{key.to_base64()}")
    keys = SnapshotKeys.from_keys([next(iter(KEYS.signing.values()))], [key])
    client = new_client()
    assert post_snapshot(client, start_body(approval_snapshot(), keys=keys)).status_code == 202
    settle(client)
    latest = MEMORY_SINK.latest("order-42")
    assert latest is not None
    assert "sealed_state" in json.loads(latest[1])
    assert decode_snapshot(latest[1], keys).seq == latest[0]


# --- bad snapshots: 400 with the specific error --------------------------------------------


def resigned(document: dict[str, Any]) -> bytes:
    """Sign a document as it is (``seal`` refuses a wrong digest: a buggy exporter would not)."""
    key = next(iter(KEYS.signing.values()))
    members = codec._member_bytes(document, skip="signature")
    mac = hmac.digest(key.secret, codec._assemble(members), "sha256")
    members["signature"] = canonical_json(
        {"alg": codec.SIGNATURE_ALG, "key_id": key.key_id, "value": base64.b64encode(mac).decode()}
    )
    return codec._assemble(members)


def bad_snapshots() -> list[Any]:
    snapshot = approval_snapshot()
    good = encode_snapshot(snapshot, KEYS)
    tampered = json.loads(good)
    tampered["state"]["input"] = {"order": 43}
    changed_definition = to_document(snapshot)
    changed_definition["definition"]["states"]["Expired"]["error"] = "Other"
    other_key = SnapshotKeys.signing_only(generate_signing_key("elsewhere"))
    return [
        pytest.param(b"{not json", "MalformedSnapshotError", "not valid JSON", id="malformed"),
        pytest.param(b"[1, 2]", "MalformedSnapshotError", "", id="not_an_object"),
        pytest.param(b"   ", "MalformedSnapshotError", "empty", id="empty"),
        pytest.param(
            json.dumps({"snapshot": "%%%"}).encode(),
            "MalformedSnapshotError",
            "base64",
            id="not_base64",
        ),
        pytest.param(json.dumps(tampered).encode(), "SignatureInvalidError", "", id="tampered"),
        pytest.param(
            encode_snapshot(snapshot), "SignatureMissingError", "not signed", id="unsigned"
        ),
        pytest.param(
            resigned(changed_definition), "DigestMismatchError", "digest", id="digest_mismatch"
        ),
        pytest.param(
            encode_snapshot(snapshot, other_key), "UnknownKeyError", "'elsewhere'", id="unknown_key"
        ),
        pytest.param(
            unsigned_envelope(snapshot, [{"name": "broken"}]), "DefinitionError", "", id="bad_flow"
        ),
    ]


@pytest.mark.parametrize(("body", "error", "words"), bad_snapshots())
def test_bad_snapshots_are_refused_with_400(body: bytes, error: str, words: str) -> None:
    client = new_client()
    response = post_snapshot(client, body)
    assert response.status_code == 400
    answer = body_json(response)
    assert answer["error"] == error
    assert words.lower() in answer["message"].lower()
    assert client.started == []


def test_the_error_message_is_the_codecs() -> None:
    snapshot = approval_snapshot()
    response = post_snapshot(new_client(), encode_snapshot(snapshot))
    assert body_json(response)["message"] == (
        "snapshot is not signed, and this runtime requires signed snapshots"
    )


def test_a_misconfigured_key_setting_is_a_500(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUSTYFLOWER_SIGNING_KEYS", "broken")
    response = post_snapshot(new_client(), start_body(approval_snapshot()))
    assert response.status_code == 500
    assert "RUSTYFLOWER_SIGNING_KEYS" in body_json(response)["message"]


def test_a_child_snapshot_must_belong_to_the_parent() -> None:
    parent = start(CALLS_CHILD, {}, "parent-3", EPOCH).snapshot
    stranger = encode_snapshot(start(LEAF, {}, "someone-else/x~1", EPOCH).snapshot, KEYS)
    response = post_snapshot(new_client(), start_body(parent, [LEAF.document()], [stranger]))
    assert response.status_code == 400
    assert "not a child flow" in body_json(response)["message"]


# --- status, events, terminate ------------------------------------------------------------


def started_client() -> LocalDurableClient:
    client = new_client()
    post_snapshot(client, start_body(approval_snapshot()))
    settle(client)
    return client


def test_status_shows_the_flow() -> None:
    client = started_client()
    req = http_request(
        "GET",
        "http://localhost:7071/api/instances/order-42",
        route_params={"instance_id": "order-42"},
    )
    response = call_http("get_flow_instance", req, client)
    assert response.status_code == 200
    answer = body_json(response)
    assert answer["runtime_status"] == "Running"
    custom = answer["custom_status"]
    assert custom["positions"] == ["Ask"]
    assert custom["waiting_for"][0]["event"] == "approval"
    assert custom["seq"] == 2 and custom["status"] == "running"
    unknown = http_request(
        "GET", "http://x/api/instances/nope", route_params={"instance_id": "nope"}
    )
    assert call_http("get_flow_instance", unknown, client).status_code == 404


def test_an_event_reaches_the_flow_by_instance_id() -> None:
    client = started_client()
    response = call_http(
        "raise_flow_event",
        route("raise_flow_event", "order-42", event_name="approval", body=b'{"by": "ann"}'),
        client,
    )
    assert response.status_code == 202
    assert client.raised == [("order-42", "approval", {"by": "ann"})]
    settle(client)
    result = client.host.instances["order-42"].output
    assert result["status"] == "succeeded"
    assert result["output"]["decision"] == {"by": "ann"}
    late = call_http(
        "raise_flow_event", route("raise_flow_event", "order-42", event_name="approval"), client
    )
    assert late.status_code == 410


def test_event_endpoint_errors() -> None:
    client = started_client()
    unknown = call_http(
        "raise_flow_event", route("raise_flow_event", "nope", event_name="x"), client
    )
    assert unknown.status_code == 404
    bad = call_http(
        "raise_flow_event", route("raise_flow_event", "order-42", event_name="x", body=b"{"), client
    )
    assert bad.status_code == 400
    assert client.raised == []


def test_terminate_at_a_safe_point() -> None:
    """Failback: terminate only while the instance is at the seq of the checkpoint read."""
    client = started_client()
    moved_on = call_http(
        "terminate_flow_instance",
        route("terminate_flow_instance", "order-42", params={"seq": "1"}),
        client,
    )
    assert moved_on.status_code == 409
    assert "seq 2" in body_json(moved_on)["message"]
    latest = MEMORY_SINK.latest("order-42")
    assert latest is not None and latest[0] == 2
    done = call_http(
        "terminate_flow_instance",
        route("terminate_flow_instance", "order-42", params={"seq": "2", "reason": "failback"}),
        client,
    )
    assert done.status_code == 202
    assert client.terminated == [("order-42", "failback")]
    assert client.host.instances["order-42"].status == "Terminated"
    again = call_http(
        "terminate_flow_instance", route("terminate_flow_instance", "order-42"), client
    )
    assert again.status_code == 409
    unknown = call_http("terminate_flow_instance", route("terminate_flow_instance", "nope"), client)
    assert unknown.status_code == 404


def test_failback_round_trip_in_process() -> None:
    """Azure's checkpoint continues on-premises (here: the engine in-process) to the end."""
    client = started_client()
    seq, data = MEMORY_SINK.latest("order-42") or (0, b"")
    snapshot = decode_snapshot(data, KEYS)
    assert snapshot.seq == seq and [c.kind for c in outstanding(snapshot)][-1] == "start_timer"
    call_http(
        "terminate_flow_instance",
        route("terminate_flow_instance", "order-42", params={"seq": str(seq)}),
        client,
    )
    ended = advance(snapshot, EventReceived("approval", {"by": "bo"}), EPOCH)
    assert ended.snapshot.status == "succeeded"
    assert ended.snapshot.state.output["decision"] == {"by": "bo"}


def test_the_start_input_is_json() -> None:
    client = started_client()
    text = client.host.instances["order-42"].input
    assert text is not None
    payload = json.loads(text)
    assert payload["kind"] == "rustyflower.orchestration"
    assert payload["options"] == {"continue_as_new_after": 100, "checkpoint_every": 1}
    assert base64  # the request form is base64; inside the hub the snapshot is text


def test_terminate_reaches_running_child_flows() -> None:
    """Durable does not cascade a termination: the endpoint terminates the children too."""
    waits = parse_definition(
        {
            "name": "waits_long",
            "start_at": "Rest",
            "states": {"Rest": {"type": "wait", "seconds": 1000, "end": True}},
        }
    )
    caller = parse_definition(
        {
            "name": "caller",
            "start_at": "Call",
            "states": {"Call": {"type": "sub_flow", "flow": "waits_long", "end": True}},
        }
    )
    client = new_client()
    snapshot = start(caller, {}, "parent-9", EPOCH).snapshot
    post_snapshot(client, start_body(snapshot, [waits.document()]))
    settle(client)
    child_id = durable_instance_id("parent-9/Call@1")
    assert client.host.instances["parent-9"].custom_status["children"] == [child_id]
    response = call_http(
        "terminate_flow_instance", route("terminate_flow_instance", "parent-9"), client
    )
    assert body_json(response)["children_terminated"] == [child_id]
    assert client.host.instances[child_id].status == "Terminated"


def test_a_finished_snapshot_completes_at_once() -> None:
    finished = start(LEAF, {"x": 1}, "done-1", EPOCH).snapshot
    assert finished.status == "succeeded"
    client = new_client()
    assert post_snapshot(client, start_body(finished)).status_code == 202
    client.host.run()
    result = client.host.instances["done-1"].output
    assert (result["status"], result["output"], result["seq"]) == ("succeeded", {"x": 1}, 1)


# --- the long-running host of `rustyflower cloud azure` ------------------------------------------


def test_a_host_that_does_not_record_keeps_only_the_last_episode_and_no_activity_runs() -> None:
    """``rustyflower cloud azure`` runs for hours: its host keeps what it must (the last
    answer of each instance), not every episode's context nor every activity run."""
    recording = LocalDurableClient(DurableHost(app, durations=conformance_durations))
    lean = LocalDurableClient(
        DurableHost(app, durations=conformance_durations, record=False, max_episodes=None)
    )
    for client in (recording, lean):
        post_snapshot(client, start_body(approval_snapshot()))
        settle(client)
        asyncio.run(client.raise_event("order-42", "approval", {"ok": True}))
        settle(client)
    kept = recording.host.instances["order-42"]
    lean_instance = lean.host.instances["order-42"]
    assert kept.status == lean_instance.status == "Completed"
    assert kept.output == lean_instance.output
    assert len(kept.episodes) > 1 and recording.host.activity_runs  # activity, checkpoints
    assert lean_instance.episodes == kept.episodes[-1:]
    assert lean.host.activity_runs == []
    assert lean.host.verify_determinism() == 2  # the kept episode and the final history
