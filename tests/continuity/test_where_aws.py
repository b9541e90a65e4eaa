"""Where an instance lives, and taking it back from AWS by force (issue 11, items 2 and 3).

The site and AWS as in ``test_aws``: a real Redis with a worker here, moto's Step
Functions executor with the real Lambda handlers. An unreachable AWS is an endpoint where
nothing listens (``AWS_ENDPOINT_URL``): moto does not answer for it, the connection is
refused, as it would be with the region gone.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from rustyflower.adapters.aws.failback import failback_execution
from rustyflower.core.engine import EventReceived, advance
from rustyflower.core.errors import EpochConflictError
from tests.aws.test_lambda_kit import KEYS, LambdaWorld, lambda_world, set_environment
from tests.continuity.kit import APPROVAL, EXPECTED, FLOW, Site, command_output, wait_until
from tests.continuity.test_aws import execution_arn, in_rest, waiting_site
from tests.redis.conftest import Runtime

pytestmark = pytest.mark.emulator

UNREACHABLE = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
"""Nothing listens on port 9 (discard): every AWS call is refused at once."""


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[LambdaWorld]:
    set_environment(monkeypatch)
    with lambda_world() as opened:
        opened.deploy(FLOW)
        yield opened


@pytest.fixture
def site(runtime: Runtime, world: LambdaWorld, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    made = Site(runtime, KEYS)
    made.settle_environment(monkeypatch)
    with made.worker():
        yield made


def rows(text: str) -> dict[str, str]:
    """``status``'s label/value lines (the first word run is the label)."""
    found: dict[str, str] = {}
    for line in command_output(text).splitlines():
        label, _, value = line.partition("  ")
        if value.strip():
            found[label.strip()] = value.strip()
    return found


def list_row(site: Site, instance_id: str) -> str:
    listed = command_output(site.cli("list").stdout)
    return next(line for line in listed.splitlines() if line.startswith(instance_id))


def test_status_and_list_show_where_the_instance_lives_and_ask_aws(
    site: Site, world: LambdaWorld
) -> None:
    waiting_site(site, "where-1")
    local = rows(site.cli("status", "where-1").stdout)
    assert local["where"] == "local (epoch 0)"
    assert local["at"] == "Approve" and "cloud status" not in local
    assert "local (epoch 0)" in list_row(site, "where-1")
    assert "WHERE" in command_output(site.cli("list").stdout).splitlines()[0]

    site.cli("failover", "--to", "aws", "where-1")
    world.wait_for_waiter("where-1", "approval")
    shown = rows(site.cli("status", "where-1").stdout)
    assert shown["where"].startswith("aws (epoch 1, since 20") and shown["where"].endswith(" UTC)")
    assert shown["cloud status"] == "RUNNING"
    assert shown["cloud at"] == "Approve"
    assert shown["cloud run"] == execution_arn("where-1", 1)
    assert shown["at"] == "Approve (the site's view at failover time)"
    assert "aws (epoch 1)" in list_row(site, "where-1")

    summary = site.cli_json("status", "where-1")
    assert (summary["owner"], summary["epoch"]) == ("aws", 1)
    assert summary["owner_since"] == site.store.info("where-1").owner_since
    assert summary["cloud"] == {
        "cloud": "aws",
        "asked": True,
        "status": "RUNNING",
        "positions": ["Approve"],
        "where": execution_arn("where-1", 1),
        "seq": None,
        "problem": None,
    }
    (listed,) = [row for row in site.cli_json("list") if row["instance_id"] == "where-1"]
    assert (listed["owner"], listed["epoch"]) == ("aws", 1)

    # the execution moves on in AWS: status follows it there, the site's view stays
    site.cli("signal", "where-1", "approval", "--data", json.dumps(APPROVAL))
    wait_until("the execution to rest", lambda: in_rest(world, execution_arn("where-1", 1)))
    moved = rows(site.cli("status", "where-1").stdout)
    assert (moved["cloud status"], moved["cloud at"]) == ("RUNNING", "Rest")
    assert moved["at"].startswith("Approve")

    # AWS unreachable: one row says so, the site's view is still there, no traceback
    cut_off = site.cli("status", "where-1", env=UNREACHABLE)
    offline = rows(cut_off.stdout)
    assert offline["cloud"].startswith("could not be asked: AWS could not be reached")
    assert "cloud status" not in offline
    assert offline["where"].startswith("aws (epoch 1")
    assert offline["at"] == "Approve (the site's view at failover time)"
    unasked = site.cli_json("status", "where-1", env=UNREACHABLE)["cloud"]
    assert (unasked["asked"], unasked["status"]) == (False, None)


def test_history_shows_the_failover_and_the_failback(site: Site, world: LambdaWorld) -> None:
    waiting_site(site, "where-2")
    site.cli("failover", "--to", "aws", "where-2")
    world.wait_for_waiter("where-2", "approval")
    site.cli("signal", "where-2", "approval", "--data", json.dumps(APPROVAL))
    wait_until("the execution to rest", lambda: in_rest(world, execution_arn("where-2", 1)))
    site.cli("failback", "--from", "aws", "where-2")
    assert site.wait_finished("where-2").state.output == EXPECTED

    history = site.cli_json("history", "where-2")
    moves = [entry for entry in history if entry["kind"] in ("FailedOver", "FailedBack")]
    assert [(entry["kind"], entry["detail"]) for entry in moves] == [
        ("FailedOver", {"cloud": "aws", "epoch": 1}),
        ("FailedBack", {"cloud": "aws", "epoch": 2}),
    ]
    kinds = [entry["kind"] for entry in history]
    assert kinds.index("FailedOver") < kinds.index("FailedBack") < kinds.index("FlowSucceeded")
    timeline = command_output(site.cli("history", "where-2").stdout)
    assert "FailedOver" in timeline and "FailedBack" in timeline
    assert rows(site.cli("status", "where-2").stdout)["where"].startswith("local (epoch 2, since")


def test_force_needs_a_reason(site: Site) -> None:
    waiting_site(site, "where-3")
    bare = site.cli("failback", "--from", "aws", "where-3", "--force", ok=False)
    assert bare.exit_code == 2
    assert "--force needs --reason" in bare.stderr and "Traceback" not in bare.stderr
    alone = site.cli("failback", "--from", "aws", "where-3", "--reason", "x", ok=False)
    assert alone.exit_code == 2
    assert "--reason goes with --force" in alone.stderr


def test_force_with_aws_unreachable_takes_the_site_snapshot_and_refuses_late_answers(
    site: Site, world: LambdaWorld, caplog: pytest.LogCaptureFixture
) -> None:
    waiting_site(site, "lost-1")
    site.cli("failover", "--to", "aws", "lost-1")
    world.wait_for_waiter("lost-1", "approval")
    fenced = site.store.load("lost-1", fresh=True)  # what the site held at failover time
    # AWS moves on, then is cut off: the site never hears of the approval there
    site.cli("signal", "lost-1", "approval", "--data", json.dumps(APPROVAL))
    arn = execution_arn("lost-1", 1)
    wait_until("the execution to rest", lambda: in_rest(world, arn))

    caplog.set_level(logging.WARNING, logger="rustyflower.continuity")
    reason = "us-east-1 is down (incident 42)"
    result = site.cli(
        "failback", "--from", "aws", "lost-1", "--force", "--reason", reason, "--json",
        env=UNREACHABLE,
    )  # fmt: skip
    (row,) = json.loads(command_output(result.stdout))
    assert (row["result"], row["epoch"], row["status"], row["ok"]) == (
        "reclaimed",
        2,
        "running",
        True,
    )
    assert (row["detail"]["source"], row["detail"]["reason"]) == ("site", reason)
    assert "could not be reached" in row["detail"]["cloud_error"]
    assert "WARNING: lost-1 was taken back from the site's own snapshot" in result.stderr
    assert "may be done again" in result.stderr
    (logged,) = [r for r in caplog.records if r.name == "rustyflower.continuity"]
    assert logged.levelno == logging.WARNING and reason in logged.getMessage()

    info = site.store.info("lost-1")
    assert (info.owner, info.epoch, info.seq) == ("local", 2, fenced.seq)
    (entry,) = [e for e in site.store.history("lost-1") if e["kind"] == "Reclaimed"]
    assert entry["seq"] == fenced.seq
    assert {k: entry["detail"][k] for k in ("cloud", "epoch", "reason", "source")} == {
        "cloud": "aws",
        "epoch": 2,
        "reason": reason,
        "source": "site",
    }
    assert "Reclaimed" in command_output(site.cli("history", "lost-1").stdout)

    # a transition the cloud's side computed at the old epoch is refused by the store
    at_cloud_epoch = replace(fenced, epoch=1)
    late = advance(at_cloud_epoch, EventReceived("approval", APPROVAL), datetime.now(UTC))
    assert site.store.commit(fenced, late) == "fenced"
    # back at the failover point (Approve): the site runs it to its end
    assert site.store.load("lost-1", fresh=True).positions == ["Approve"]
    site.cli("signal", "lost-1", "approval", "--data", json.dumps(APPROVAL))
    assert site.wait_finished("lost-1").state.output == EXPECTED

    # AWS back: the execution's state of the old epoch (what a failback or a takeover's
    # comeback would bring) is refused ...
    cloud_state = failback_execution(
        world.stepfunctions, arn, base=at_cloud_epoch, definition=FLOW, stop=True
    )
    assert cloud_state.epoch == 1
    with pytest.raises(EpochConflictError, match="owned by epoch 2"):
        site.store.resume(cloud_state, take_ownership=True)
    note = {"seq": cloud_state.seq, "at": "2026-01-01T00:00:00Z", "kind": "TakenOver"}
    assert site.store.adopt(replace(cloud_state, epoch=0), 1, "aws", note) is False
    # ... and a normal failback afterwards
    later = site.cli("failback", "--from", "aws", "lost-1", ok=False)
    assert later.exit_code == 1
    assert "not in AWS (owner local)" in later.stderr
    final = site.store.load("lost-1", fresh=True)
    assert (final.status, final.state.output, final.epoch) == ("succeeded", EXPECTED, 2)


def test_force_with_aws_reachable_takes_the_cloud_state(site: Site, world: LambdaWorld) -> None:
    waiting_site(site, "lost-2")
    site.cli("failover", "--to", "aws", "lost-2")
    world.wait_for_waiter("lost-2", "approval")
    site.cli("signal", "lost-2", "approval", "--data", json.dumps(APPROVAL))
    arn = execution_arn("lost-2", 1)
    wait_until("the execution to rest", lambda: in_rest(world, arn))

    result = site.cli(
        "failback", "--from", "aws", "lost-2", "--force", "--reason", "drill", "--json"
    )
    (row,) = json.loads(command_output(result.stdout))
    assert (row["result"], row["epoch"], row["detail"]) == (
        "reclaimed",
        2,
        {"source": "cloud", "reason": "drill"},
    )
    assert "WARNING" not in result.stderr
    assert world.stepfunctions.describe_execution(executionArn=arn)["status"] == "ABORTED"
    assert site.store.load("lost-2", fresh=True).positions == ["Rest"]  # AWS's progress kept
    assert site.wait_finished("lost-2").state.output == EXPECTED
    kinds = [entry["kind"] for entry in site.store.history("lost-2")]
    assert kinds.count("Reclaimed") == 1 and "FailedBack" not in kinds
