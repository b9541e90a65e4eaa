"""The lifeboat part of `make demo`: one order fails over to a local AWS and back.

`rustyflower cloud aws` runs as a subprocess (a user's second terminal): moto with Step
Functions executing, a state machine for the site's flows, the real Lambda handlers
running the order's activities. It prints the settings to export "from a program"
(docs/failover.md, Rehearse on your laptop); the demo exports them in its own process and
drives the failover, the approval and the failback through the public client. It stops
the cloud with Ctrl-C (SIGINT) whatever happens, and kills it if that does not work.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from rustyflower import NoWaiterError
from rustyflower.client import Client, HistoryEntry, InstanceHandle

CLOUD_ACTIVITIES = "examples.order.activities"
READY_LINE = "stop with Ctrl-C"
"""The last line of `cloud aws`'s banner: its machines are deployed, its exports printed."""
READY_TIMEOUT = 60.0
LOCAL_EXTRA = "pip install 'rustyflower[local]' (make demo installs .[dev], which has it)"
STOP_TIMEOUT = 20.0


class DemoError(Exception):
    """The demo could not go on; the message says why (and what to do)."""


class LocalAws:
    """`rustyflower cloud aws --data-dir DIR --port 0` as a subprocess, its output in files
    (a pipe nobody reads could fill and stall it)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.stdout = data_dir / "cloud-aws.out"
        self.stderr = data_dir / "cloud-aws.err"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with (
            self.stdout.open("wb") as out,
            self.stderr.open("wb") as errors,
            translated(FileNotFoundError, "no `rustyflower` command: install RustyFlower"),
        ):
            self.process = subprocess.Popen(
                [
                    *rustyflower_command(),
                    "cloud",
                    "aws",
                    "--port",
                    "0",
                    "--refresh",
                    "0.5",
                    "--activities",
                    CLOUD_ACTIVITIES,
                    "--data-dir",
                    str(self.data_dir),
                ],
                stdout=out,
                stderr=errors,
                stdin=subprocess.DEVNULL,
            )

    def output(self) -> str:
        return self.stdout.read_text() if self.stdout.is_file() else ""

    def wait_deployed(self, flow: str) -> dict[str, str]:
        """Wait until it is ready and deployed ``flow``; the settings it printed to export."""
        assert self.process is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            printed = self.output()
            if READY_LINE in printed and f"deployed {flow}@" in printed:
                return exported(printed)
            if self.process.poll() is not None:
                raise DemoError(self.failure())
            time.sleep(0.1)
        raise DemoError(f"`rustyflower cloud aws` was not ready in {READY_TIMEOUT:.0f} s")

    def failure(self) -> str:
        said = self.stderr.read_text().strip() if self.stderr.is_file() else ""
        code = None if self.process is None else self.process.returncode
        last = said.splitlines()[-1] if said else f"exit code {code}"
        if "moto" in said or "rustyflower[local]" in said:
            return f"the local AWS needs the 'local' extra: {LOCAL_EXTRA}\n  ({last})"
        return f"`rustyflower cloud aws` stopped: {last}"

    def stop(self) -> None:
        """Ctrl-C, as in its terminal: it stops its executions and removes its record."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def translated(error: type[Exception], message: str) -> Iterator[None]:
    try:
        yield
    except error as raised:
        raise DemoError(f"{message} ({raised})") from None


def rustyflower_command() -> list[str]:
    """The `rustyflower` script beside this Python (the venv's), else on PATH."""
    script = Path(sys.executable).with_name("rustyflower")
    return [str(script)] if script.is_file() else ["rustyflower"]


def exported(printed: str) -> dict[str, str]:
    settings: dict[str, str] = {}
    for line in printed.splitlines():
        if line.startswith("export ") and "=" in line:
            name, value = line.removeprefix("export ").split("=", 1)
            settings[name] = value
    return settings


@contextlib.contextmanager
def environment(settings: dict[str, str]) -> Iterator[None]:
    """These variables set for the block (the public client reads the cloud's settings
    from the environment), as they were afterwards."""
    before = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def cloud_status(instance_id: str, data_dir: Path) -> str | None:
    """What AWS says of the instance (`rustyflower status --json` asks the cloud)."""
    done = subprocess.run(
        [*rustyflower_command(), "status", instance_id, "--json", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise DemoError(f"rustyflower status {instance_id}: {done.stderr.strip()}")
    view: dict[str, Any] = json.loads(done.stdout).get("cloud") or {}
    if view.get("problem"):
        raise DemoError(f"AWS could not be asked about {instance_id}: {view['problem']}")
    status = view.get("status")
    return None if status is None else str(status)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise DemoError(f"timed out waiting for {what}")


def sail(
    client: Client, cloud: LocalAws, order: dict[str, Any], console: Console
) -> InstanceHandle:
    """Start ``order`` here, fail it over to the local AWS, approve it there, and fail it
    back once AWS finished it: the instance, ended on the site again."""
    settings = cloud.wait_deployed("order")
    instance = client.start("order", order)
    console.print(f"\nthe lifeboat: started order [cyan]{instance.id}[/] for {order['total']:.2f}")
    wait_for(lambda: "Await approval" in instance.status().positions, 30, "the approval step")
    with environment(settings):
        for outcome in client.failover([instance.id], to="aws"):
            if not outcome.ok:
                raise DemoError(f"failover of {instance.id}: {outcome.error}")
        console.print(f"failed it over to the local AWS at {settings['AWS_ENDPOINT_URL']}")
        receipt = approve(instance)
        console.print(f"approved it: the approval went to [bold]{receipt.cloud}[/]")
        wait_for(
            lambda: cloud_status(instance.id, cloud.data_dir) != "RUNNING",
            30,
            "AWS to finish the order",
        )
        for outcome in client.failback([instance.id], source="aws"):
            if not outcome.ok:
                raise DemoError(f"failback of {instance.id}: {outcome.error}")
        console.print("AWS finished it; failed it back: the site has its result")
    return instance


def approve(instance: InstanceHandle) -> Any:
    """Signal the approval in AWS once its execution waits for it (it stores a task token
    when it reaches the wait, moments after the failover)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return instance.signal("approval", {"approved": True, "by": "demo"})
        except NoWaiterError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def where_each_step_ran(history: list[HistoryEntry]) -> Table:
    """Each entry of the history with where it happened: the site until a FailedOver, the
    cloud it names until the FailedBack."""
    table = Table(title="where each step of the lifeboat order ran", title_justify="left")
    for column in ("seq", "what", "step", "ran in"):
        table.add_column(column)
    where = "site"
    for entry in history:
        detail = entry.detail if isinstance(entry.detail, dict) else {}
        ran_in = where
        if entry.kind == "FailedOver":
            where = str(detail.get("cloud", "cloud"))
            ran_in = f"→ {where} (epoch {detail.get('epoch')})"
        elif entry.kind == "FailedBack":
            where = "site"
            ran_in = f"→ site (epoch {detail.get('epoch')})"
        table.add_row(str(entry.seq), entry.kind, entry.position, ran_in)
    return table
