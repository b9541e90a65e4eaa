"""``rustyflower replicate`` at the front door: its settings refused in one line (exit 3),
its status read back from Redis (a table for people, JSON for scripts)."""

from __future__ import annotations

import json
import threading

import pytest
from typer.testing import CliRunner, Result

from rustyflower.adapters.cli.main import app
from tests.lifeboat.clouds import CloudSide
from tests.lifeboat.site import KEY_SETTING, Site, wait_until
from tests.redis.conftest import Runtime

pytestmark = pytest.mark.emulator


def cli(runtime: Runtime, *args: str, env: dict[str, str] | None = None) -> Result:
    environment = {
        "RUSTYFLOWER_REDIS_URL": runtime.server.url,
        "RUSTYFLOWER_PREFIX": runtime.keys.prefix,
        "RUSTYFLOWER_SIGNING_KEYS": KEY_SETTING,
        **(env or {}),
    }
    return CliRunner().invoke(app, list(args), env=environment)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ((), {}, "no cloud to replicate to: give --to aws|azure or set RUSTYFLOWER_REPLICATE_TO"),
        (("--to", "gcp"), {}, "'gcp' is not a cloud (aws, azure)"),
        (("--to", "aws"), {}, "no site id: give --site or set RUSTYFLOWER_SITE_ID"),
        (("--to", "aws", "--site", "a/b"), {}, "site id 'a/b'"),
        (("--to", "aws", "--site", "s"), {}, "RUSTYFLOWER_REPLICA_BUCKET"),
        (
            ("--to", "aws,azure", "--site", "s"),
            {},
            "say whose watchdog may take it over with --takeover-cloud",
        ),
        (
            ("--to", "aws", "--site", "s", "--takeover-cloud", "azure"),
            {},
            "the takeover cloud azure is not one the site replicates to",
        ),
        (
            ("--to", "azure", "--site", "s"),
            {},
            "RUSTYFLOWER_AZURE_STORAGE (a storage connection string) or",
        ),
        (
            ("--to", "azure", "--site", "s"),
            {
                "RUSTYFLOWER_AZURE_STORAGE": "UseDevelopmentStorage=true",
                "RUSTYFLOWER_SIGNING_KEYS": "",
            },
            "replication ships signed snapshots only: set RUSTYFLOWER_SIGNING_KEYS",
        ),
    ],
)
def test_settings_it_cannot_use_are_one_line_and_exit_3(
    runtime: Runtime, args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    result = cli(runtime, "replicate", *args, env={"RUSTYFLOWER_REPLICATE_TO": "", **env})
    assert result.exit_code == 3, (result.stdout, result.stderr)
    assert message in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_status_without_a_replicator_exits_3(runtime: Runtime) -> None:
    result = cli(runtime, "replicate", "--status")
    assert result.exit_code == 3
    assert "no replicator has reported lately" in result.stderr


def test_status_shows_lag_backlog_and_leases(runtime: Runtime, cloud: CloudSide) -> None:
    site = Site(runtime)
    agent = site.agent(cloud.lifeboat(site.name))
    stop = threading.Event()
    agent.prepare(stop)
    site.conductor.start("chain", {"n": 0}, instance_id="one")
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_until(
            "a report",
            lambda: (r := site.feed.last_report()) and r["targets"][cloud.kind]["shipped"],
        )
        as_json = cli(runtime, "replicate", "--status", "--json")
        table = cli(runtime, "replicate", "--status")
    finally:
        stop.set()
        thread.join(timeout=20)
    assert as_json.exit_code == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    target = report["targets"][cloud.kind]
    assert {"lag_seconds", "backlog", "window", "reachable", "where"} <= set(target)
    assert report["leases"][cloud.kind]["state"] == "held"
    assert report["site"] == "plant-1" and report["leader"] is True
    assert table.exit_code == 0
    assert "lag s" in table.stdout and "backlog" in table.stdout and "held" in table.stdout
    assert cloud.kind in table.stdout
