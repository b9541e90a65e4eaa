"""Taking an instance back from an AWS that is gone, and asking AWS where it is, through
the public client and the HTTP API (issue 11 items 2-3, issue 12: the doors the CLI has).

The setup is ``test_lifeboat_aws``'s: a real Redis with a worker here, moto's Step
Functions executor running the real Lambda handlers, the API served on loopback with the
cloud's settings in the process environment. AWS is cut off as ``test_where_aws`` cuts it
off: ``AWS_ENDPOINT_URL`` names a port where nothing listens, so every call is refused.
The variable is set for the rest of the test (moto's executor threads read the
environment; nothing is removed while they run).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from rustyflower.client import AsyncClient, Client, Outcome
from tests.api.test_lifeboat_aws import http, site, world
from tests.aws.test_lambda_kit import KEYS, LambdaWorld
from tests.continuity.kit import APPROVAL, EXPECTED, Site, wait_until
from tests.continuity.test_aws import execution_arn, in_rest, waiting_site
from tests.continuity.test_where_aws import UNREACHABLE

pytestmark = pytest.mark.emulator
__all__ = ["http", "site", "world"]  # the fixtures, shared with test_lifeboat_aws

REASON = "us-east-1 is down (incident 42)"


def client_of(site: Site) -> Client:
    return Client.connect(site.url, prefix=site.runtime.keys.prefix, keys=KEYS)


def moved_on_in_aws(site: Site, world: LambdaWorld, instance_id: str) -> int:
    """Fail the waiting instance over, approve it in AWS and let it rest there: the site
    never hears of that progress. The seq the site holds (the state at failover time)."""
    waiting_site(site, instance_id)
    with client_of(site) as client:
        (moved,) = client.failover([instance_id], to="aws")
        assert (moved.result, moved.epoch) == ("started", 1), moved
        world.wait_for_waiter(instance_id, "approval")
        client.signal(instance_id, "approval", APPROVAL)
    wait_until("the execution to rest", lambda: in_rest(world, execution_arn(instance_id, 1)))
    return site.store.info(instance_id).seq


def cut_off_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in UNREACHABLE.items():
        monkeypatch.setenv(name, value)


def assert_reclaimed_from_the_site(outcome: Outcome, instance_id: str, seq: int) -> None:
    assert (outcome.result, outcome.ok, outcome.epoch, outcome.seq) == ("reclaimed", True, 2, seq)
    assert (outcome.source, outcome.detail["reason"]) == ("site", REASON)
    assert "could not be reached" in outcome.detail["cloud_error"]
    assert outcome.warning is not None
    assert outcome.warning.startswith(f"{instance_id} was taken back from the site's own snapshot")
    assert "may be done again" in outcome.warning


def finish_here(site: Site, instance_id: str) -> None:
    """Back at the failover point (Approve) at epoch 2: approved again, it finishes here."""
    assert site.store.load(instance_id, fresh=True).positions == ["Approve"]
    kinds = [entry["kind"] for entry in site.store.history(instance_id)]
    assert kinds.count("Reclaimed") == 1
    site.conductor.signal(instance_id, "approval", APPROVAL)
    final = site.wait_finished(instance_id)
    assert (final.status, final.state.output, final.epoch) == ("succeeded", EXPECTED, 2)


# --- the client ------------------------------------------------------------------------------


def test_client_failback_force_with_aws_unreachable_resumes_the_site_snapshot(
    site: Site, world: LambdaWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    seq = moved_on_in_aws(site, world, "client-lost-1")
    cut_off_aws(monkeypatch)
    with client_of(site) as client:
        (outcome,) = client.failback(["client-lost-1"], source="aws", force=True, reason=REASON)
    assert_reclaimed_from_the_site(outcome, "client-lost-1", seq)
    info = site.store.info("client-lost-1")
    assert (info.owner, info.epoch) == ("local", 2)
    finish_here(site, "client-lost-1")


def test_async_client_failback_force_with_aws_unreachable(
    site: Site, world: LambdaWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    seq = moved_on_in_aws(site, world, "client-lost-2")
    cut_off_aws(monkeypatch)

    async def reclaim() -> list[Outcome]:
        prefix = site.runtime.keys.prefix
        async with AsyncClient.connect(site.url, prefix=prefix, keys=KEYS) as client:
            return await client.failback(
                ["client-lost-2"], source="aws", force=True, reason=f"  {REASON} "
            )

    (outcome,) = asyncio.run(reclaim())
    assert_reclaimed_from_the_site(outcome, "client-lost-2", seq)
    finish_here(site, "client-lost-2")


def test_client_failback_force_with_aws_reachable_keeps_its_progress(
    site: Site, world: LambdaWorld
) -> None:
    moved_on_in_aws(site, world, "client-lost-3")
    with client_of(site) as client:
        (outcome,) = client.failback(["client-lost-3"], source="aws", force=True, reason="drill")
    assert (outcome.result, outcome.source, outcome.warning) == ("reclaimed", "cloud", None)
    assert outcome.detail == {"source": "cloud", "reason": "drill"}
    assert site.store.load("client-lost-3", fresh=True).positions == ["Rest"]
    assert site.wait_finished("client-lost-3").state.output == EXPECTED


# --- the HTTP API ----------------------------------------------------------------------------


def test_api_failback_force_with_aws_unreachable_resumes_the_site_snapshot(
    http: httpx.Client, site: Site, world: LambdaWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    seq = moved_on_in_aws(site, world, "api-lost-1")
    cut_off_aws(monkeypatch)  # the server runs in this process: it sees AWS cut off too
    answer = http.post(
        "/v1/failback",
        json={"from": "aws", "instance_ids": ["api-lost-1"], "force": True, "reason": REASON},
    )
    assert answer.status_code == 200, answer.text
    (row,) = answer.json()
    assert (row["result"], row["ok"], row["epoch"], row["seq"]) == ("reclaimed", True, 2, seq)
    assert (row["detail"]["source"], row["detail"]["reason"]) == ("site", REASON)
    assert "may be done again" in row["detail"]["warning"]
    assert "could not be reached" in row["detail"]["cloud_error"]
    home = http.get("/v1/instances/api-lost-1").json()
    assert (home["owner"], home["epoch"], home["positions"]) == ("local", 2, ["Approve"])
    finish_here(site, "api-lost-1")


def test_api_status_asks_aws_when_asked(
    http: httpx.Client, site: Site, world: LambdaWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiting_site(site, "api-where-1")
    (moved,) = http.post("/v1/failover", json={"to": "aws", "instance_ids": ["api-where-1"]}).json()
    assert moved["result"] == "started", moved
    world.wait_for_waiter("api-where-1", "approval")

    plain = http.get("/v1/instances/api-where-1")
    assert plain.status_code == 200, plain.text
    assert (plain.json()["owner"], plain.json()["cloud"]) == ("aws", None)  # not asked

    asked = http.get("/v1/instances/api-where-1", params={"ask_cloud": "true"})
    assert asked.status_code == 200, asked.text
    found = asked.json()
    assert (found["owner"], found["epoch"], found["positions"]) == ("aws", 1, ["Approve"])
    arn = execution_arn("api-where-1", 1)
    assert found["cloud"] == {
        "cloud": "aws",
        "asked": True,
        "status": world.stepfunctions.describe_execution(executionArn=arn)["status"],
        "positions": ["Approve"],
        "where": arn,
        "seq": None,
        "problem": None,
    }
    assert found["cloud"]["status"] == "RUNNING"
    with client_of(site) as client:  # the client answers what the API shows
        view = client.ask_cloud("api-where-1")
        assert view is not None and view.as_dict() == found["cloud"]
        waiting_site(site, "api-where-local")
        assert client.ask_cloud("api-where-local") is None
    local = http.get("/v1/instances/api-where-local", params={"ask_cloud": "true"}).json()
    assert (local["owner"], local["cloud"]) == ("local", None)

    cut_off_aws(monkeypatch)
    offline = http.get("/v1/instances/api-where-1", params={"ask_cloud": "true"})
    assert offline.status_code == 200, offline.text
    shown = offline.json()
    assert (shown["owner"], shown["positions"]) == ("aws", ["Approve"])  # the site's view
    assert (shown["cloud"]["asked"], shown["cloud"]["status"]) == (False, None)
    assert shown["cloud"]["problem"].startswith("could not be asked: AWS could not be reached")


def test_openapi_declares_force_reason_and_the_cloud_view(http: httpx.Client) -> None:
    schema = http.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    assert {"force", "reason", "hold", "safe_point_timeout"} <= set(
        components["FailbackRequest"]["properties"]
    )
    assert "cloud" in components["InstanceStatusOut"]["properties"]
    status = schema["paths"]["/v1/instances/{instance_id}"]["get"]
    assert [p["name"] for p in status["parameters"] if p["in"] == "query"] == ["ask_cloud"]
    answer = status["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer["$ref"].endswith("/InstanceStatusOut")


BAD_FAILBACKS: list[tuple[dict[str, Any], str, str]] = [
    ({"force": True}, "body.reason", "needs reason"),
    ({"force": True, "reason": "   "}, "body.reason", "needs reason"),
    ({"reason": "why not"}, "body.reason", "goes with force"),
    ({"force": False, "reason": "why not"}, "body.reason", "goes with force"),
    ({"hold": False}, "body.hold", "Azure only"),
    ({"safe_point_timeout": 30}, "body.safe_point_timeout", "Azure only"),
    ({"from": "azure", "safe_point_timeout": 0.5}, "body.safe_point_timeout", "greater than"),
    ({"force": "yes please"}, "body.force", "boolean"),
    ({"reason": 42, "force": True}, "body.reason", "string"),
]


def test_api_failback_refuses_bad_combinations(http: httpx.Client, site: Site) -> None:
    waiting_site(site, "api-bad-1")
    for extra, field, message in BAD_FAILBACKS:
        body = {"from": "aws", "instance_ids": ["api-bad-1"], **extra}
        answer = http.post("/v1/failback", json=body)
        assert answer.status_code == 422, (extra, answer.text)
        error = answer.json()["error"]
        assert (error["code"], error["field"]) == ("invalid_request", field), extra
        assert message in error["message"], (extra, error)
    info = site.store.info("api-bad-1")
    assert (info.owner, info.epoch) == ("local", 0)  # nothing happened


BAD_CLIENT_CALLS: list[tuple[bool, str | None, str]] = [
    (True, None, "force needs reason"),
    (True, " \t", "force needs reason"),
    (False, "why not", "reason goes with force"),
]


def test_client_failback_refuses_bad_combinations(site: Site) -> None:
    waiting_site(site, "client-bad-1")
    prefix = site.runtime.keys.prefix

    async def refused(force: bool, reason: str | None) -> None:
        async with AsyncClient.connect(site.url, prefix=prefix, keys=KEYS) as client:
            await client.failback(["client-bad-1"], source="aws", force=force, reason=reason)

    for force, reason, message in BAD_CLIENT_CALLS:
        with client_of(site) as client, pytest.raises(ValueError, match=message):
            client.failback(["client-bad-1"], source="aws", force=force, reason=reason)
        with pytest.raises(ValueError, match=message):
            asyncio.run(refused(force, reason))
    assert site.store.info("client-bad-1").epoch == 0
