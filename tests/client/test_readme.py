"""The Python in README.md runs as written, against a real server, with public imports only."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.redis.servers import ServerProcess

REPO = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)

pytestmark = pytest.mark.emulator


def readme_blocks() -> list[str]:
    return FENCE.findall((REPO / "README.md").read_text(encoding="utf-8"))


def test_the_readme_has_its_python_examples() -> None:
    blocks = readme_blocks()
    assert any("Client.connect()" in block for block in blocks)
    assert any("Flow(" in block for block in blocks)


@pytest.mark.usefixtures("client")  # its teardown removes the keys under the prefix
@pytest.mark.parametrize("index", range(len(readme_blocks())))
def test_each_python_block_of_the_readme_runs(
    index: int, server: ServerProcess, prefix: str, tmp_path: Path
) -> None:
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "RUSTYFLOWER_REDIS_URL": server.url,
        "RUSTYFLOWER_PREFIX": prefix,
    }
    environment.pop("RUSTYFLOWER_SIGNING_KEYS", None)
    done = subprocess.run(
        [sys.executable, "-c", readme_blocks()[index]],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
