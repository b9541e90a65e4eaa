"""``rustyflower drill`` run as a user runs it: a subprocess from the checkout (the local
AWS hosts lambda_aws's handlers from there, the local Azure loads functions_azure from
there), its --json report parsed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["drill"]

ROOT = Path(__file__).resolve().parents[2]


def drill(cloud: str, instances: int, *options: str, work: Path) -> tuple[int, dict[str, Any], str]:
    """The exit code, the report and the progress lines of one drill."""
    command = [
        str(Path(sys.executable).with_name("rustyflower")),
        "drill",
        "--to",
        cloud,
        "--instances",
        str(instances),
        "--work-dir",
        str(work),
        "--json",
        *options,
    ]
    ran = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=400, check=False
    )
    assert ran.returncode in (0, 1), ran.stderr[-3000:]
    return ran.returncode, json.loads(ran.stdout), ran.stderr
