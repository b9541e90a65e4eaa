"""The dashboard in a real browser (Debian's headless Chromium, driven by Playwright).

`rustyflower dev` runs as a subprocess with the order example's activities; an order big
enough to need approval and a small one are started through the CLI. The browser opens
the dashboard at the URL `dev` printed, finds the waiting order among the running ones,
approves it from its page and watches the graph draw it to its end. Screenshots are
saved under ``build/test-artifacts/`` (``RUSTYFLOWER_TEST_ARTIFACTS`` to choose) for CI
to keep; docs/dashboard.png is one of them.
"""

from __future__ import annotations

import contextlib
import json
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

import pytest

from tests.tooling import REPO, chromium, missing_tool

pytestmark = [pytest.mark.slow, pytest.mark.emulator]

RUSTYFLOWER = str(Path(sys.executable).parent / "rustyflower")
ORDER = REPO / "examples" / "order"
ACTIVITIES = "examples.order.activities"
WAITING_ID = "order-A-1001"
SMALL_ID = "order-B-7"
ARTIFACTS = Path(os.environ.get("RUSTYFLOWER_TEST_ARTIFACTS", REPO / "build" / "test-artifacts"))
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DASHBOARD_LINE = re.compile(r"Dashboard at (http://127\.0\.0\.1:\d+/ui/)")
WAIT_MS = 30_000


def env() -> dict[str, str]:
    """No RUSTYFLOWER_* from the caller (a token would lock the dashboard), and nothing
    that could make Playwright fetch a browser."""
    found = {k: v for k, v in os.environ.items() if not k.startswith("RUSTYFLOWER_")}
    found["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    return found


def rustyflower(data_dir: Path, *args: str | Path) -> str:
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
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def dashboard_url(self, timeout: float = 60) -> str:
        """The URL `dev` printed: what a user would open."""
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
        raise AssertionError(f"dev printed no dashboard URL: {''.join(self.seen)!r}")


@contextlib.contextmanager
def dev_server(data_dir: Path) -> Iterator[Dev]:
    """`rustyflower dev` (API on a free port) until the block ends; SIGTERM, exit 0."""
    process = subprocess.Popen(
        [
            RUSTYFLOWER,
            "dev",
            "--data-dir",
            str(data_dir),
            "--activities",
            ACTIVITIES,
            "--api-port",
            "0",
        ],
        cwd=REPO,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    dev = Dev(process)
    reader = threading.Thread(target=dev.read, name="dev-stdout", daemon=True)
    reader.start()
    try:
        yield dev
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        assert process.returncode == 0, process.stderr.read() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=5)
        url_file = data_dir / "server.url"
        if url_file.is_file():  # the embedded server outlived `dev`: stop it (ours only)
            import redis  # noqa: PLC0415

            with contextlib.suppress(redis.RedisError):
                redis.Redis.from_url(url_file.read_text().strip()).shutdown(nosave=True)


def test_approve_a_waiting_order_from_the_dashboard_and_watch_it_finish(tmp_path: Path) -> None:
    browser_path = chromium()
    try:
        from playwright.sync_api import expect, sync_playwright  # noqa: PLC0415
    except ImportError:
        missing_tool(
            "playwright is not installed (it is in the dev extra: pip install -e '.[dev]')"
        )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    data_dir = tmp_path / ".rustyflower"

    with dev_server(data_dir) as dev:
        url = dev.dashboard_url()
        rustyflower(data_dir, "flows", "register", ORDER / "flow.yaml", "--activities", ACTIVITIES)
        rustyflower(
            data_dir,
            "start",
            "order",
            "--id",
            WAITING_ID,
            "--input",
            "@" + str(ORDER / "input.json"),
        )
        small = '{"order_id": "B-7", "total": 20.0, "items": ["cup"]}'
        rustyflower(data_dir, "start", "order", "--id", SMALL_ID, "--input", small)

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(browser_path), args=CHROMIUM_FLAGS, headless=True
            )
            try:
                page = browser.new_page(viewport={"width": 1440, "height": 960})
                problems: list[str] = []
                page.on("pageerror", lambda error: problems.append(str(error)))
                page.goto(url)
                expect(page.locator("h1")).to_have_text("Instances", timeout=WAIT_MS)
                # both orders are listed; the small one finishes on its own
                small_row = page.locator(f'#instances tr[data-id="{SMALL_ID}"]')
                expect(small_row).to_have_attribute("data-status", "succeeded", timeout=WAIT_MS)

                # find the waiting one: running orders only
                page.select_option("select[name=status]", "running")
                expect(page.locator("#instances tbody tr[data-id]")).to_have_count(
                    1, timeout=WAIT_MS
                )
                waiting_row = page.locator(f'#instances tr[data-id="{WAITING_ID}"]')
                expect(waiting_row).to_have_attribute("data-status", "running")
                page.screenshot(path=ARTIFACTS / "dashboard-instances.png", full_page=True)
                waiting_row.get_by_role("link", name=WAITING_ID).click()

                # its page: the graph shows it waiting at the approval
                waiting_node = page.locator('#graph [data-node="Await approval"]')
                expect(waiting_node).to_have_class(re.compile(r"\bcurrent\b"), timeout=WAIT_MS)
                expect(page.locator('#graph [data-node="Charge"]')).to_have_class(
                    re.compile(r"\bvisited\b")
                )
                expect(page.locator('#graph [data-node="Done"]')).not_to_have_class(
                    re.compile(r"\bvisited\b")
                )
                expect(page.locator("input[name=event]")).to_have_value("approval")
                page.fill("textarea[name=data]", '{"approved": true}')
                page.screenshot(path=ARTIFACTS / "dashboard-waiting.png", full_page=True)
                page.get_by_role("button", name="Signal").click()

                # approved: it finishes, and the graph shows the path to its end
                expect(page.locator("h1 .badge").first).to_have_text("succeeded", timeout=WAIT_MS)
                done = page.locator('#graph [data-node="Done"]')
                expect(done).to_have_class(re.compile(r"\bvisited\b"), timeout=WAIT_MS)
                expect(page.locator('#graph [data-node="(end)"]')).to_have_class(
                    re.compile(r"\bvisited\b")
                )
                for edge in ("Await approval>Approved?", "Approved?>Fulfil", "Fulfil>Done"):
                    expect(page.locator(f'#graph path[data-edge="{edge}"]')).to_have_class(
                        re.compile(r"\btaken\b")
                    )
                expect(page.locator('#graph [data-node="Refund"]')).not_to_have_class(
                    re.compile(r"\bvisited\b")
                )
                expect(page.locator("#graph .current")).to_have_count(0)
                page.locator('#graph [data-node="Approved?"]').click()
                expect(page.locator(".io")).to_contain_text('"approved": true')
                expect(page.locator("#toast .note")).to_have_count(0, timeout=WAIT_MS)
                page.screenshot(path=ARTIFACTS / "dashboard.png", full_page=True)
                assert problems == []
            finally:
                browser.close()

        status = json.loads(rustyflower(data_dir, "status", WAITING_ID, "--json"))
        assert status["status"] == "succeeded", status
        assert status["output"]["approval"] == {"approved": True}
