"""`make demo` (examples/demo.py) end to end, as a user runs it: twice, in a fresh folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.emulator


def run_demo(folder: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "examples.demo"],
        cwd=folder,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_demo_approves_the_order_and_keeps_it_for_the_next_run(tmp_path: Path) -> None:
    first = run_demo(tmp_path)
    assert "the order waits for approval: approving it" in first
    assert "succeeded after 7 transitions" in first
    assert '"tracking": "TRK-A-1001"' in first
    assert "1 order instance(s) in the store so far" in first
    assert "2 order instance(s) in the store so far" in run_demo(tmp_path)
    assert not (tmp_path / ".rustyflower" / "demo" / "server.url").exists()  # server stopped
