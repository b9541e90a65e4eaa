"""`rustyflower cloud aws` as a user runs it: a subprocess, stopped by Ctrl-C, and a
failover, a signal and a failback through the CLI against it, beside `rustyflower dev`.

Nothing is exported: every command finds the dev server through ``server.url`` and the
local AWS through ``cloud-aws.json``, both in the one ``--data-dir``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from rustyflower.adapters.aws import execution_name
from rustyflower.core.model import parse_definition
from tests.continuity.kit import APPROVAL, EXPECTED, FLOW, INPUT
from tests.dev_process import REPO, RUSTYFLOWER, dev_server, env
from tests.localcloud.cloud_process import ACTIVITIES, cloud_aws, port_free

pytestmark = pytest.mark.emulator

REST_SECONDS = 15
"""The kit's flow, resting long enough for a failback to find it resting (each command
here is a process of its own, a second or two)."""
_document = FLOW.document()
LIFEBOAT = parse_definition(
    {
        **_document,
        "states": {
            **_document["states"],
            "Rest": {**_document["states"]["Rest"], "seconds": REST_SECONDS},
        },
    }
)


def run(data_dir: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [RUSTYFLOWER, *args, "--data-dir", str(data_dir)],
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if ok:
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def run_json(data_dir: Path, *args: str) -> Any:
    return json.loads(run(data_dir, *args, "--json").stdout)


def wait_for(what: str, check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_ctrl_c_stops_the_local_aws_and_leaves_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with cloud_aws(data_dir, "--port", "0") as cloud:
        record = cloud.wait_ready()
        port = cloud.port
        assert not port_free(port)
        # what a user exports elsewhere is printed, and the same is recorded here
        printed = cloud.stdout.read_text()
        for name, value in record.environment.items():
            assert f"export {name}={value}\n" in printed
        assert record.environment["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{port}"
        assert record.environment["RUSTYFLOWER_TOKENS_TABLE"] == "rustyflower-tokens"
        dynamodb = boto3.client(
            "dynamodb",
            endpoint_url=record.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        assert sorted(dynamodb.list_tables()["TableNames"]) == [
            "rustyflower-idempotency",
            "rustyflower-tokens",
        ]
        # one local AWS per data directory: a second one says which runs
        second = run(tmp_path / "data", "cloud", "aws", "--port", "0", ok=False)
        assert second.returncode == 3, second.stderr
        assert f"a local AWS for {data_dir} is already running (pid {record.pid})" in second.stderr
        assert cloud.interrupt() == 0, cloud.output()
    assert port_free(port)
    assert not cloud.record_file.exists()
    assert "local AWS stopped" in cloud.stderr.read_text()


def test_a_taken_port_is_one_clear_line(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with cloud_aws(data_dir, "--port", str(port)) as cloud:
            assert cloud.process.wait(timeout=60) == 3, cloud.output()
    errors = cloud.stderr.read_text()
    assert f"cannot serve the local AWS on 127.0.0.1:{port}" in errors, errors
    assert "choose another --port" in errors
    assert "Traceback" not in errors
    assert not cloud.record_file.exists()


def test_failover_signal_and_failback_through_the_cli(tmp_path: Path) -> None:
    """An instance waits for an approval on premises; it fails over to the local AWS, is
    approved there, fails back while it rests, and finishes here with the output of an
    uninterrupted run."""
    data_dir = tmp_path / "data"
    flow_file = tmp_path / "lifeboat.json"
    flow_file.write_text(json.dumps(LIFEBOAT.document()))
    with (
        dev_server(data_dir, ACTIVITIES),
        cloud_aws(data_dir, "--port", "0", "--refresh", "0.5") as cloud,
    ):
        wait_for("the dev server", (data_dir / "server.url").is_file)
        run(data_dir, "flows", "register", str(flow_file), "--activities", ACTIVITIES)
        record = cloud.wait_ready()
        wait_for("the flow's machine", lambda: "deployed lifeboat@1" in cloud.stdout.read_text())
        run(data_dir, "start", "lifeboat", "--input", json.dumps(INPUT), "--id", "order-1")
        wait_for(
            "order-1 to wait for its approval",
            lambda: run_json(data_dir, "status", "order-1")["positions"] == ["Approve"],
        )

        (moved,) = run_json(data_dir, "failover", "--to", "aws", "order-1")
        arn = (
            f"arn:aws:states:us-east-1:123456789012:execution:rustyflower-lifeboat-v1:"
            f"{execution_name('order-1', moved['epoch'])}"
        )
        assert (moved["result"], moved["where"]) == ("started", arn), moved

        def signalled() -> bool:  # the wait's token is stored a moment after the state begins
            sent = run(
                data_dir, "signal", "order-1", "approval", "--data", json.dumps(APPROVAL), ok=False
            )
            if sent.returncode == 0:
                assert "lives in aws" in sent.stdout, sent.stdout
                return True
            assert "no live wait" in sent.stderr, sent.stderr
            return False

        wait_for("the approval to reach AWS", signalled)
        stepfunctions = boto3.client(
            "stepfunctions",
            endpoint_url=record.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

        def resting() -> bool:
            events = stepfunctions.get_execution_history(executionArn=arn)["events"]
            return any(
                e["type"] == "WaitStateEntered"
                and e["stateEnteredEventDetails"]["name"].startswith("Rest")
                for e in events
            )

        wait_for("the execution to rest", resting)
        (back,) = run_json(data_dir, "failback", "--from", "aws", "order-1")
        assert (back["result"], back["epoch"]) == ("resumed", moved["epoch"] + 1), back
        assert stepfunctions.describe_execution(executionArn=arn)["status"] == "ABORTED"
        # the activity and the approval happened in AWS; the rest goes on here
        assert run_json(data_dir, "status", "order-1")["positions"] == ["Rest"]

        finished = wait_for(
            "order-1 to finish on premises",
            timeout=REST_SECONDS + 60,
            check=lambda: (
                (s := run_json(data_dir, "status", "order-1"))["status"] == "succeeded" and s
            ),
        )
        assert finished["output"] == EXPECTED
        assert cloud.interrupt() == 0, cloud.output()
    assert not cloud.record_file.exists()


def test_outside_a_checkout_the_missing_handlers_are_one_clear_line(tmp_path: Path) -> None:
    """The Lambda handlers (lambda_aws) ship with the checkout, not the package."""
    outside = {k: v for k, v in env().items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [RUSTYFLOWER, "cloud", "aws", "--port", "0", "--data-dir", str(tmp_path / "data")],
        cwd=tmp_path,
        env=outside,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert "handler lambda_aws.activity.handler: No module named 'lambda_aws'" in done.stderr
    assert "run it from a RustyFlower checkout" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data" / "cloud-aws.json").exists()
