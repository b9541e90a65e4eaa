"""README.md's "Testing your flows" example, run as a user runs it: pytest from the project root."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SECTION = "## Testing your flows"


def readme_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert SECTION in text, "README.md lost its testing section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, "the testing section should hold one Python example"
    return blocks[0]


def test_the_example_imports_only_the_public_face_and_the_users_own_code() -> None:
    modules = re.findall(r"^(?:from|import) ([\w.]+)", readme_example(), flags=re.MULTILINE)
    assert modules == ["examples.order.activities", "rustyflower", "rustyflower.testing"]


def test_the_readme_example_passes(tmp_path: Path) -> None:
    example = tmp_path / "test_order_example.py"
    example.write_text(readme_example(), encoding="utf-8")
    finished = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(example)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "3 passed" in finished.stdout
