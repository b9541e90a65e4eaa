"""`rustyflower dev` as a user runs it: a subprocess whose printed URLs the tests open.

Used by the dashboard's browser test and the container health check's test. Its stdout
is read on a thread (so the URLs can be waited for), its stderr goes to a file (a pipe
nobody reads could fill and stall it).
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parents[1]
RUSTYFLOWER = str(Path(sys.executable).parent / "rustyflower")
FREE_PORT = ("--api-port", "0")
DASHBOARD_LINE = re.compile(r"Dashboard at (http://127\.0\.0\.1:(\d+)/ui/)")


def env() -> dict[str, str]:
    """No RUSTYFLOWER_* from the caller (a token would lock the API), and nothing that
    could make Playwright fetch a browser."""
    found = {k: v for k, v in os.environ.items() if not k.startswith("RUSTYFLOWER_")}
    found["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    return found


def rustyflower(data_dir: Path, *args: str | Path) -> str:
    """Run a `rustyflower` command against the dev server of ``data_dir``; its stdout."""
    done = subprocess.run(
        [RUSTYFLOWER, *(str(arg) for arg in args), "--data-dir", str(data_dir)],
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


@dataclass
class Dev:
    process: subprocess.Popen[str]
    stderr: Path
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def dashboard_url(self, timeout: float = 60) -> str:
        """The dashboard's URL as `dev` printed it: what a user would open."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                break
            self.seen.append(line)
            found = DASHBOARD_LINE.search(line)
            if found:
                return found.group(1)
        raise AssertionError(
            f"dev printed no dashboard URL: {''.join(self.seen)!r}; "
            f"stderr: {self.stderr.read_text()[-3000:]}"
        )


@contextlib.contextmanager
def dev_server(data_dir: Path, activities: str) -> Iterator[Dev]:
    """`rustyflower dev` (its API on a free port) until the block ends; then SIGTERM, and
    it must exit 0."""
    data_dir.mkdir(parents=True, exist_ok=True)
    stderr = data_dir.parent / "dev.stderr"
    with stderr.open("w") as errors:
        process = subprocess.Popen(
            [
                RUSTYFLOWER,
                "dev",
                "--data-dir",
                str(data_dir),
                "--activities",
                activities,
                *FREE_PORT,
            ],
            cwd=REPO,
            env=env(),
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    dev = Dev(process, stderr)
    reader = threading.Thread(target=dev.read, name="dev-stdout", daemon=True)
    reader.start()
    try:
        yield dev
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        assert process.returncode == 0, stderr.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=5)
        url_file = data_dir / "server.url"
        if url_file.is_file():  # the embedded server outlived `dev`: stop it (ours only)
            with contextlib.suppress(redis.RedisError):
                redis.Redis.from_url(url_file.read_text().strip()).shutdown(nosave=True)
