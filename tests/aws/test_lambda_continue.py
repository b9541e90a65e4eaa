"""The continue function: verify a snapshot, check the deployed digest, start idempotently."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from lambda_aws import continuation
from lambda_aws import settings as names
from lambda_aws.aws import key_environment
from lambda_aws.continuation import handle, handler
from lambda_aws.errors import NamedError
from lambda_aws.keyring import snapshot_keys
from rustyflower.adapters.aws import deployment, execution_name
from rustyflower.adapters.aws.deployment import base_snapshot_key
from rustyflower.core.engine import ParentLink, Snapshot, start
from rustyflower.core.model import parse_definition
from rustyflower.core.snapshot.document import decode_snapshot, encode_snapshot
from rustyflower.core.snapshot.handover import encode_handover
from rustyflower.core.snapshot.keys import SnapshotKeys, generate_signing_key
from tests.aws.test_lambda_kit import (
    BUCKET,
    FUNCTION_ENV,
    KEYS,
    MACHINE_PREFIX,
    REGION,
    FakeContext,
    body_of,
    http_event,
    lambda_world,
    set_environment,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
ORDER = parse_definition(
    {
        "name": "order",
        "version": "1.2",
        "start_at": "Add",
        "states": {
            "Add": {
                "type": "task",
                "activity": "add",
                "parameters": {"a.$": "$.a", "b": 1},
                "result_path": "$.sum",
                "next": "Done",
            },
            "Done": {"type": "pass", "end": True},
        },
    }
)


def snapshot_of(definition: Any = ORDER, flow_input: Any = None, **changes: Any) -> Snapshot:
    """The snapshot of a run that just called its first activity (on premises)."""
    taken = start(definition, flow_input or {"a": 41}, "order-7", NOW).snapshot
    return replace(taken, **changes) if changes else taken


def sealed(snapshot: Snapshot, keys: SnapshotKeys = KEYS) -> bytes:
    return encode_snapshot(snapshot, keys)


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    set_environment(monkeypatch)


@pytest.fixture
def world() -> Any:
    with lambda_world() as opened:
        opened.deploy(ORDER)
        yield opened


def call(world: Any, event: Any, keys: SnapshotKeys = KEYS) -> Any:
    return handle(
        event,
        settings=world.settings(),
        keys=keys,
        stepfunctions=world.stepfunctions,
        s3=world.s3,
        now=NOW,
    )


def executions(world: Any) -> list[dict[str, Any]]:
    arn = MACHINE_PREFIX + "order-v1-2"
    return list(world.stepfunctions.list_executions(stateMachineArn=arn)["executions"])


# --- starting --------------------------------------------------------------------------------


def test_a_signed_snapshot_starts_its_execution_and_is_kept_for_failback(world: Any) -> None:
    snapshot = snapshot_of()
    response = call(world, http_event(sealed(snapshot)))
    assert response["statusCode"] == 201
    answer = body_of(response)
    name = execution_name("order-7", 0)
    assert answer["status"] == "started"
    assert answer["executionName"] == name
    assert answer["executionArn"].endswith(f":execution:rf-order-v1-2:{name}")
    kept = world.s3.get_object(Bucket=BUCKET, Key=base_snapshot_key(name, snapshot.seq))
    assert decode_snapshot(kept["Body"].read(), KEYS) == snapshot
    described = world.wait(answer["executionArn"])
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"]) == {"a": 41, "sum": 42}


def test_the_same_epoch_twice_is_one_execution(world: Any) -> None:
    data = sealed(snapshot_of())
    first = body_of(call(world, http_event(data)))
    second_response = call(world, http_event(data))
    assert second_response["statusCode"] == 200
    second = body_of(second_response)
    assert second["status"] == "existing"
    assert second["executionArn"] == first["executionArn"]
    assert len(executions(world)) == 1
    # a later epoch (a new failover after a failback) is a new execution
    third = body_of(call(world, http_event(sealed(snapshot_of(epoch=1)))))
    assert third["status"] == "started"
    assert len(executions(world)) == 2


def test_a_snapshot_of_another_definition_is_refused(world: Any) -> None:
    document = ORDER.document()
    document["states"]["Done"]["result"] = "another definition, the same name and version"
    other = parse_definition(document)
    assert (other.name, other.version) == (ORDER.name, ORDER.version)
    response = call(world, http_event(sealed(snapshot_of(other))))
    assert response["statusCode"] == 409
    refused = body_of(response)
    assert refused["error"] == "DigestMismatchError"
    assert "deployed state machine was compiled from sha256:" in refused["message"]
    assert executions(world) == []


def test_an_unsigned_snapshot_is_refused_when_signatures_are_required(world: Any) -> None:
    response = call(world, http_event(sealed(snapshot_of(), SnapshotKeys.none())))
    assert response["statusCode"] == 400
    assert body_of(response)["error"] == "SignatureMissingError"
    assert executions(world) == []


def child_of(parent_id: str, keys: SnapshotKeys = KEYS) -> bytes:
    link = ParentLink(parent_id, "Call~1")
    child = start(ORDER, {"a": 1}, f"{parent_id}/Call~1", NOW, parent=link).snapshot
    return sealed(child, keys)


def test_children_must_be_signed_with_the_envelope_and_be_the_instances(world: Any) -> None:
    """Issue 10, item 4, on AWS: what travels next to a genuine snapshot is refused unless
    the site's envelope signature covers it (a child added by a caller, or an older child
    snapshot put back, would be continued by the execution)."""
    data = sealed(snapshot_of())
    added = {
        "snapshot": base64.b64encode(data).decode(),
        "children": [base64.b64encode(child_of("order-7")).decode()],
    }
    response = call(world, http_event(json.dumps(added)))
    assert response["statusCode"] == 400
    assert body_of(response)["error"] == "SignatureMissingError"
    stranger = encode_handover(data, KEYS, children=[child_of("someone-else")])
    response = call(world, http_event(stranger))
    assert (response["statusCode"], body_of(response)["error"]) == (400, "BadRequest")
    assert "not a child flow" in body_of(response)["message"]
    assert executions(world) == []
    signed = encode_handover(data, KEYS, children=[child_of("order-7")])
    assert call(world, http_event(signed))["statusCode"] == 201


def test_malformed_and_tampered_snapshots_are_400_with_their_error(world: Any) -> None:
    document = json.loads(sealed(snapshot_of()))
    document["state"]["input"]["a"] = 1_000_000  # the signature no longer matches
    cases = {
        b"": "MalformedSnapshotError",
        b"not json at all": "MalformedSnapshotError",
        b'{"kind": "rustyflower.snapshot"}': "MalformedSnapshotError",
        json.dumps(document).encode(): "SignatureInvalidError",
        sealed(snapshot_of(), SnapshotKeys.signing_only(generate_signing_key("other"))): (
            "UnknownKeyError"
        ),
    }
    for body, error in cases.items():
        response = call(world, http_event(body))
        assert response["statusCode"] == 400, body
        assert body_of(response)["error"] == error, body
    bad_base64 = http_event("%%%")
    bad_base64["isBase64Encoded"] = True
    assert body_of(call(world, bad_base64))["error"] == "MalformedSnapshotError"
    assert executions(world) == []


def test_flows_not_deployed_finished_instances_and_other_methods(world: Any) -> None:
    elsewhere = parse_definition({**ORDER.document(), "version": "9"})
    response = call(world, http_event(sealed(snapshot_of(elsewhere))))
    assert (response["statusCode"], body_of(response)["error"]) == (404, "FlowNotDeployed")
    finished = snapshot_of(status="succeeded")
    response = call(world, http_event(sealed(finished)))
    assert (response["statusCode"], body_of(response)["error"]) == (422, "ResumeError")
    response = call(world, http_event(b"", method="GET"))
    assert response["statusCode"] == 405


def test_wrapped_and_base64_bodies_and_direct_invokes(world: Any) -> None:
    data = sealed(snapshot_of())
    wrapped = json.dumps({"snapshot": base64.b64encode(data).decode(), "children": []})
    assert call(world, http_event(wrapped, base64_body=True))["statusCode"] == 201
    answer = call(world, {"snapshot": json.loads(data)})  # direct invoke, wrapped object
    assert answer["status"] == "existing"
    assert call(world, json.loads(data))["status"] == "existing"  # the snapshot itself
    with pytest.raises(NamedError) as refused:
        call(world, json.loads(sealed(snapshot_of(), SnapshotKeys.none())))
    assert type(refused.value).__name__ == "SignatureMissingError"  # Lambda's errorType
    with pytest.raises(NamedError) as bad_children:
        call(world, {"snapshot": base64.b64encode(data).decode(), "children": "x"})
    assert type(bad_children.value).__name__ == "BadRequest"


def test_the_handler_reads_its_keys_from_the_environment(world: Any) -> None:
    response = handler(http_event(sealed(snapshot_of())), FakeContext(function_name="rf-continue"))
    assert response["statusCode"] == 201


# --- keys from Secrets Manager ------------------------------------------------------------


def test_keys_come_from_the_secret_laid_over_the_environment() -> None:
    value = f"{KEYS.active_signing_key_id}:{KEYS.active_signing_key.to_base64()}"  # type: ignore[union-attr]
    environ = {key: val for key, val in FUNCTION_ENV.items() if key != names.ENV_SIGNING_KEYS}
    with mock_aws():
        secrets = boto3.client("secretsmanager", region_name=REGION)
        secrets.create_secret(
            Name="rf-keys", SecretString=json.dumps({names.ENV_SIGNING_KEYS: value})
        )
        keys = snapshot_keys(environ, "rf-keys", secrets, max_age=0)
        assert decode_snapshot(sealed(snapshot_of()), keys).instance_id == "order-7"
        assert keys.require_signature
        secrets.create_secret(Name="rf-bad", SecretString="not json: s3cr3t")
        with pytest.raises(names.SettingsError) as bad:
            key_environment(environ, "rf-bad", secrets)
        assert "s3cr3t" not in str(bad.value)
        secrets.create_secret(Name="rf-other", SecretString=json.dumps({"PATH": "/bin"}))
        with pytest.raises(names.SettingsError):
            key_environment(environ, "rf-other", secrets)
    assert key_environment(environ, None) == environ


def test_execution_arns_and_base_keys() -> None:
    machine = "arn:aws:states:eu-west-1:1:stateMachine:rf-order-v1"
    assert continuation.execution_arn(machine, "x-e1-ab") == (
        "arn:aws:states:eu-west-1:1:execution:rf-order-v1:x-e1-ab"
    )
    assert base_snapshot_key("x-e1-ab", 7) == "continued/x-e1-ab/s7.snapshot"
    assert deployment.state_machine_name("order", "1.2") == "order-v1-2"
    assert deployment.state_machine_name("a_b", "2024.01-rc 1") == "a_b-v2024-01-rc-1"
