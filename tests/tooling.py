"""Tools the tests need from outside Python (redis-server, Azurite, checkov, Chromium).

Missing one skips the tests that need it on a developer's machine, and **fails** them in
CI (``CI=true``): ``.ci/run`` installs every tool, so a skip there would hide a test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECKOV_VENV = Path(os.environ.get("RUSTYFLOWER_CHECKOV_VENV", REPO / ".ci" / "checkov-venv"))
CHECKOV_INSTALL = "bash .ci/tools.sh  (a venv of its own: its pinned parsers clash with ours)"
CHECKOV_SKIP = re.compile(r"checkov:skip=([A-Z0-9_]+)(?::(.*))?")
MIN_SKIP_REASON = 40
CHROMIUM = Path(os.environ.get("RUSTYFLOWER_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_INSTALL = "apt-get install -y chromium  (Debian's package; .ci/run installs it)"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing_tool(message: str) -> NoReturn:
    """Skip the test here; fail it in CI, where every tool is installed."""
    if in_ci():
        pytest.fail(f"CI=true but {message}", pytrace=False)
    pytest.skip(message)


def chromium() -> Path:
    """Debian's Chromium for the browser tests (Playwright drives it; it never downloads
    a browser of its own)."""
    if not os.access(CHROMIUM, os.X_OK):
        missing_tool(f"Chromium is not at {CHROMIUM}; install it with: {CHROMIUM_INSTALL}")
    return CHROMIUM


def justified_checkov_skips(files: Iterable[Path], comment: str) -> int:
    """How many ``checkov:skip`` there are in ``files``; each must be a whole-line
    ``<comment>checkov:skip=CKV...:<reason>`` comment with a reason of some length."""
    skips = 0
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            found = CHECKOV_SKIP.search(line)
            if found:
                skips += 1
                reason = (found.group(2) or "").strip()
                where = f"{path.relative_to(REPO)}:{number}"
                assert line.lstrip().startswith(f"{comment}checkov:skip=CKV"), where
                assert len(reason) >= MIN_SKIP_REASON, f"{where}: {found.group(1)} needs a reason"
    return skips


def assert_checkov_passes(directory: Path, framework: str) -> None:
    """checkov on ``directory``: no parsing error, no failed check, something checked."""
    checkov = CHECKOV_VENV / "bin" / "checkov"
    if not checkov.exists():
        missing_tool(f"checkov is not in {CHECKOV_VENV}; install it with: {CHECKOV_INSTALL}")
    result = subprocess.run(
        [
            str(checkov),
            "-d",
            str(directory.relative_to(REPO)),
            "--framework",
            framework,
            "--output",
            "json",
            "--quiet",
            "--skip-download",  # no platform calls: offline, and deterministic
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.stdout.strip(), result.stderr[-3000:]
    report = json.loads(result.stdout)
    for one in report if isinstance(report, list) else [report]:
        summary = one["summary"]
        assert summary["parsing_errors"] == 0, summary
        failed = [
            f"{check['check_id']} {check['resource']} ({check['file_path']})"
            for check in one.get("results", {}).get("failed_checks", [])
        ]
        assert summary["failed"] == 0, failed
        assert summary["resource_count"] > 0
    assert result.returncode == 0, result.stderr[-3000:]
