"""`make demo` (examples/demo.py) end to end, as a user runs it: twice, in a fresh folder.

Each run also sails the lifeboat: a second order fails over to `rustyflower cloud aws`
(a subprocess of the demo), is approved there and fails back; the demo prints where each
step ran and stops the local AWS, whatever happens.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.emulator

WHERE_EACH_STEP_RAN = [
    ("FlowStarted", "", "site"),
    ("TaskScheduled", "Charge", "site"),
    ("TaskFailed", "Charge", "site"),
    ("RetryScheduled", "Charge", "site"),
    ("RetryStarted", "Charge", "site"),
    ("TaskScheduled", "Charge", "site"),
    ("TaskSucceeded", "Charge", "site"),
    ("EventAwaited", "Await approval", "site"),
    ("FailedOver", "", "→ aws (epoch 1)"),
    ("EventReceived", "Await approval", "aws"),
    ("ParallelStarted", "Fulfil", "aws"),
    ("TaskScheduled", "Fulfil[0]/Ship", "aws"),
    ("TaskScheduled", "Fulfil[1]/Invoice", "aws"),
    ("TaskSucceeded", "Fulfil[0]/Ship", "aws"),
    ("TaskSucceeded", "Fulfil[1]/Invoice", "aws"),
    ("JoinCompleted", "Fulfil", "aws"),
    ("FlowSucceeded", "", "aws"),
    ("FailedBack", "", "→ site (epoch 2)"),
]
"""The lifeboat order's table, row by row (the seq column aside): the two Task
succeeded rows of the parallel branches may come in either order."""


def run_demo(folder: Path, *, pythonpath: str = str(REPO), ok: bool = True) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "examples.demo"],
        cwd=folder,
        env={**os.environ, "PYTHONPATH": pythonpath, "COLUMNS": "120"},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert (done.returncode == 0) is ok, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    return done.stdout


def table_rows(printed: str) -> list[tuple[str, str, str]]:
    rows = []
    for line in printed.splitlines():
        cells = [cell.strip() for cell in line.split("│")]
        if len(cells) == 6 and cells[1].isdigit():
            rows.append((cells[2], cells[3], cells[4]))
    return rows


def cloud_listens(folder: Path) -> bool:
    """Whether anything still listens where the demo's local AWS did (a bind would fail
    on the connections it closed, still in TIME_WAIT: a connection says it better)."""
    printed = (folder / ".rustyflower" / "demo" / "cloud-aws.out").read_text()
    found = re.search(r"export AWS_ENDPOINT_URL=http://127\.0\.0\.1:(\d+)", printed)
    assert found, printed
    try:
        socket.create_connection(("127.0.0.1", int(found.group(1))), timeout=5).close()
    except ConnectionRefusedError:
        return False
    return True


def test_the_demo_approves_the_order_sails_the_lifeboat_and_keeps_both(tmp_path: Path) -> None:
    first = run_demo(tmp_path)
    assert "the order waits for approval: approving it" in first
    assert "succeeded after 7 transitions" in first
    assert '"tracking": "TRK-A-1001"' in first
    # the lifeboat: failed over, approved in AWS, finished there, failed back
    assert "failed it over to the local AWS at http://127.0.0.1:" in first
    assert "approved it: the approval went to aws" in first
    assert "where each step of the lifeboat order ran" in first
    rows = table_rows(first)
    assert sorted(rows) == sorted(WHERE_EACH_STEP_RAN), first
    assert rows[:13] == WHERE_EACH_STEP_RAN[:13], first
    assert rows[-3:] == WHERE_EACH_STEP_RAN[-3:], first
    assert "succeeded on the site again, with the same output as the on-premises order" in first
    assert "2 order instance(s) in the store so far" in first
    # the local AWS is gone: nothing listens on its port, its record is removed
    assert not cloud_listens(tmp_path)
    assert not (tmp_path / ".rustyflower" / "demo" / "cloud-aws.json").exists()
    assert "4 order instance(s) in the store so far" in run_demo(tmp_path)
    assert not (tmp_path / ".rustyflower" / "demo" / "server.url").exists()  # server stopped


def test_without_the_local_extra_the_demo_says_how_to_get_it(tmp_path: Path) -> None:
    # moto missing as on an install without the `local` extra: its import fails
    hidden = tmp_path / "hidden"
    (hidden / "moto").mkdir(parents=True)
    (hidden / "moto" / "__init__.py").write_text(
        'raise ImportError("No module named moto", name="moto")\n'
    )
    folder = tmp_path / "demo"
    folder.mkdir()
    printed = run_demo(folder, pythonpath=f"{hidden}{os.pathsep}{REPO}", ok=False)
    assert "succeeded after 7 transitions" in printed  # the on-premises part ran
    assert "the local AWS needs the 'local' extra: pip install 'rustyflower[local]'" in printed
    assert "where each step" not in printed
