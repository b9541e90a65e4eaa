"""The dashboard in a real browser (Debian's headless Chromium, driven by Playwright).

`rustyflower dev` runs as a subprocess with the order example's activities; an order big
enough to need approval, a small one and one whose card is declined are started through
the CLI. The browser opens the dashboard at the URL `dev` printed, finds the waiting order
among the running ones, holds and releases it from its page, approves it and watches the
graph draw it to its end; then it opens the Reports view and checks every figure shown
against ``GET /v1/reports``. Screenshots are saved under ``build/test-artifacts/``
(``RUSTYFLOWER_TEST_ARTIFACTS`` to choose) for CI to keep; docs/dashboard.png is one of
them.
"""

from __future__ import annotations

import json
import math
import os
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.dev_process import dev_server, rustyflower
from tests.tooling import REPO, chromium, missing_tool

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.slow, pytest.mark.emulator]

ORDER = REPO / "examples" / "order"
ACTIVITIES = "examples.order.activities"
WAITING_ID = "order-A-1001"
SMALL_ID = "order-B-7"
DECLINED_ID = "order-C-0"
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
        api = url.removesuffix("/ui/")
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
        declined = '{"order_id": "C-0", "total": 0, "items": ["cup"]}'  # the card is refused
        rustyflower(data_dir, "start", "order", "--id", DECLINED_ID, "--input", declined)
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
                # the orders are listed; the small one finishes on its own, the declined fails
                small_row = page.locator(f'#instances tr[data-id="{SMALL_ID}"]')
                expect(small_row).to_have_attribute("data-status", "succeeded", timeout=WAIT_MS)
                declined_row = page.locator(f'#instances tr[data-id="{DECLINED_ID}"]')
                expect(declined_row).to_have_attribute("data-status", "failed", timeout=WAIT_MS)

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
                hold_and_release(page, api)
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

                # the reports: every figure shown is the API's, for each span chosen
                page.get_by_role("link", name="Reports").click()
                known = check_report(page, api, "24h")
                order = next(flow for flow in known["flows"] if flow["flow"] == "order")
                assert (order["started"], order["finished"]) == (3, 3), order
                assert (order["succeeded"], order["failed"]) == (2, 1), order
                charge = next(s for s in known["most_failing_steps"] if s["step"] == "Charge")
                assert (charge["attempts"], charge["failures"]) == (6, 4), charge
                assert charge["top_error"] == "GatewayUnavailable"
                assert known["slowest_steps"], known
                page.screenshot(path=ARTIFACTS / "dashboard-reports.png", full_page=True)
                page.select_option("select[name=since]", "7d")
                expect(page).to_have_url(re.compile(r"#/reports/7d$"))
                check_report(page, api, "7d")
                page.select_option("select[name=since]", "1h")
                check_report(page, api, "1h")
                assert problems == []
            finally:
                browser.close()

        status = json.loads(rustyflower(data_dir, "status", WAITING_ID, "--json"))
        assert status["status"] == "succeeded", status
        assert status["output"]["approval"] == {"approved": True}


def hold_and_release(page: Page, api: str) -> None:
    """Hold the waiting order from its page, then release it: the status shown follows."""
    from playwright.sync_api import expect  # noqa: PLC0415

    held = page.locator("h1 .badge.held")
    expect(held).to_have_count(0)
    page.get_by_role("button", name="Hold").click()
    expect(held).to_have_text("held", timeout=WAIT_MS)
    assert httpx.get(f"{api}/v1/instances/{WAITING_ID}").json()["held"] is True
    expect(page.locator("h1 .badge").first).to_have_text("running")
    expect(page.get_by_role("button", name="Hold")).to_be_disabled()
    expect(page.get_by_role("button", name="Release")).to_be_enabled()
    page.get_by_role("button", name="Release").click()
    expect(held).to_have_count(0, timeout=WAIT_MS)
    assert httpx.get(f"{api}/v1/instances/{WAITING_ID}").json()["held"] is False
    expect(page.get_by_role("button", name="Release")).to_be_disabled()
    expect(page.get_by_role("button", name="Hold")).to_be_enabled()


FLOW_FIGURES = ("started", "finished", "succeeded", "failed", "cancelled")
FLOW_FIGURES += ("success_rate", "p50_seconds", "p95_seconds")
STEP_FIGURES = ("attempts", "failures", "failure_rate", "p50_seconds", "p95_seconds")
STEP_FIGURES += ("max_seconds", "top_error")
SHOWN = """rows => rows.map(row => ({
  flow: row.dataset.flow, step: row.dataset.step ?? null,
  cells: Object.fromEntries([...row.querySelectorAll("td[data-figure]")]
    .map(td => [td.dataset.figure, [td.dataset.value, td.textContent]]))}))"""


def check_report(page: Page, api: str, span: str) -> dict[str, Any]:
    """The Reports view for ``span`` shows ``GET /v1/reports?since=span``'s figures: each
    cell's exact value (data-value) and its text, formatted as the page formats it."""
    from playwright.sync_api import expect  # noqa: PLC0415

    window = page.locator("#report-window")
    expect(window).to_have_attribute("data-span", span, timeout=WAIT_MS)
    expect(page.locator("select[name=since]")).to_have_value(span)
    since = datetime.fromisoformat(window.get_attribute("data-since") or "")
    until = datetime.fromisoformat(window.get_attribute("data-until") or "")
    assert until - since == timedelta(seconds=_SPANS[span]), (since, until)
    report: dict[str, Any] = httpx.get(f"{api}/v1/reports", params={"since": span}).json()
    assert report["flows"], report
    assert _shown(page, "report-flows") == [
        (flow["flow"], None, _cells(flow, FLOW_FIGURES)) for flow in report["flows"]
    ]
    for table, key in (
        ("report-slowest", "slowest_steps"),
        ("report-failing", "most_failing_steps"),
    ):
        assert _shown(page, table) == [
            (step["flow"], step["step"], _cells(step, STEP_FIGURES)) for step in report[key]
        ], table
    return report


_SPANS = {"1h": 3600, "24h": 86400, "7d": 7 * 86400}


def _shown(page: Page, table: str) -> list[tuple[str, str | None, dict[str, tuple[Any, str]]]]:
    rows = page.locator(f"#{table} tbody tr[data-flow]").evaluate_all(SHOWN)
    return [
        (
            row["flow"],
            row["step"],
            {name: (_value(raw), text) for name, (raw, text) in row["cells"].items()},
        )
        for row in rows
    ]


def _value(raw: str) -> Any:
    """data-value back to the API's value: "" for none, a number, else the text."""
    if raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        return raw


def _cells(summary: dict[str, Any], names: tuple[str, ...]) -> dict[str, tuple[Any, str]]:
    found = {}
    for name in names:
        value = summary[name]
        found[name] = (value, _text(name, value))
    return found


def _text(name: str, value: Any) -> str:
    """A figure as reports.js shows it (the formats of dom.js's duration and toFixed)."""
    if value is None:
        return "—"
    if name.endswith("_rate"):
        return f"{value * 100:.1f}%"
    if name.endswith("_seconds"):
        return _duration(value * 1000)
    return str(value)


def _duration(ms: float) -> str:
    if ms < 1000:
        return f"{max(0, math.floor(ms + 0.5))} ms"
    seconds = ms / 1000
    assert seconds < 60, "the known run's steps take seconds, not minutes"
    return f"{seconds:.1f} s"
