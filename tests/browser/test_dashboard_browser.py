"""The dashboard in a real browser (Debian's headless Chromium, driven by Playwright).

`rustyflower dev` runs as a subprocess with the order example's activities; an order big
enough to need approval and a small one are started through the CLI. The browser opens
the dashboard at the URL `dev` printed, finds the waiting order among the running ones,
approves it from its page and watches the graph draw it to its end. Screenshots are
saved under ``build/test-artifacts/`` (``RUSTYFLOWER_TEST_ARTIFACTS`` to choose) for CI
to keep; docs/dashboard.png is one of them.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.dev_process import dev_server, rustyflower
from tests.tooling import REPO, chromium, missing_tool

pytestmark = [pytest.mark.slow, pytest.mark.emulator]

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
WAIT_MS = 30_000


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

    with dev_server(data_dir, ACTIVITIES) as dev:
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
        nightly = ("schedule", "add", "nightly", "--flow", "order", "--cron", "0 3 * * *")
        rustyflower(data_dir, *nightly, "--input", small, "--paused")

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(browser_path), args=CHROMIUM_FLAGS, headless=True
            )
            try:
                page = browser.new_page(viewport={"width": 1440, "height": 960})
                problems: list[str] = []
                page.on("pageerror", lambda error: problems.append(str(error)))
                page.on(  # a refused Content-Security-Policy, a failed module, ...
                    "console",
                    lambda message: message.type == "error" and problems.append(message.text),
                )
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

                # the runner's views: the schedule, dev's worker and its queues
                page.get_by_role("link", name="Schedules").click()
                schedule = page.locator('#schedules tr[data-name="nightly"]')
                expect(schedule).to_contain_text("paused", timeout=WAIT_MS)
                expect(schedule).to_contain_text("0 3 * * *")
                page.get_by_role("link", name="Workers & queues").click()
                worker = page.locator("#workers tbody tr[data-name]")
                expect(worker).to_have_count(1, timeout=WAIT_MS)
                expect(worker).to_contain_text("healthy")
                expect(worker).to_contain_text("charge_card")
                expect(page.locator('#queues tr[data-priority="normal"]')).to_have_count(1)
                page.screenshot(path=ARTIFACTS / "dashboard-runner.png", full_page=True)
                assert problems == []
            finally:
                browser.close()

        status = json.loads(rustyflower(data_dir, "status", WAITING_ID, "--json"))
        assert status["status"] == "succeeded", status
        assert status["output"]["approval"] == {"approved": True}
