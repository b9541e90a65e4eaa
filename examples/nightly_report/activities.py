"""Activities of the nightly report example (stand-ins for a database and a file share)."""

from __future__ import annotations

from typing import Any

from rustyflower import ActivityRegistry

registry = ActivityRegistry()


class ReportSourceBusy(Exception):
    """The reporting database asked us to come back later."""


@registry.activity
def list_accounts(payload: dict[str, Any]) -> list[str]:
    return [f"{payload['region']}-{number:03d}" for number in range(1, 7)]


@registry.activity
def build_report(payload: dict[str, Any]) -> dict[str, Any]:
    account = payload["account"]
    if account.endswith("005"):
        raise ValueError(f"account {account} has no ledger for yesterday")
    return {"account": account, "ok": True, "rows": 100 + payload["position"]}


@registry.activity
def publish_summary(payload: dict[str, Any]) -> dict[str, Any]:
    reports = payload["reports"]
    failed = [report["account"] for report in reports if not report["ok"]]
    return {
        "region": payload["region"],
        "published": len(reports) - len(failed),
        "failed": failed,
    }
