"""The lifeboat's figures at ``/metrics``: the replicator's status key, typed and rendered.

The end-to-end reading (a real replicator, an unplugged cloud, the catch-up) is
``tests/lifeboat/test_replication.py::test_catch_up_after_a_cloud_outage``; here: what
each field becomes, and that a status that is not one never takes the scrape down.
"""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from rustyflower.adapters.redis.runner_stats import RunnerStats, replication_stats
from rustyflower.adapters.web.metrics import families, render

STATUS = {
    "site": "plant-1",
    "agent": "replicate-host-1",
    "leader": True,
    "targets": {
        "aws": {
            "where": "s3://bucket/lifeboat/plant-1",
            "lag_seconds": 0.25,
            "backlog": 3,
            "window": {"seconds": 60, "count": 10, "p50": 0.1, "p99": 0.4, "max": 0.6},
            "shipped": 120,
            "failures": 0,
            "reachable": True,
        },
        "azure": {
            "where": "blob",
            "lag_seconds": 42.0,
            "backlog": 17,
            "window": {"seconds": 60, "count": 0, "p50": None, "p99": None, "max": None},
            "shipped": 5,
            "failures": 9,
            "reachable": False,
        },
    },
    "leases": {"aws": {"state": "held"}, "azure": {"state": "unreachable"}},
}


def scrape(stats: RunnerStats) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = render(families(stats), CollectorRegistry()).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def empty_stats(raw: str | None) -> RunnerStats:
    return RunnerStats(
        started={},
        finished={},
        steps={},
        step_durations={},
        flow_durations={},
        instances={},
        queue_waiting={},
        queue_in_progress={},
        deferred=0,
        timers_scheduled=0,
        timers_overdue=0,
        oldest_overdue_seconds=0.0,
        dead_letters=0,
        replication=replication_stats(raw),
    )


def test_each_cloud_gets_its_lag_backlog_write_lags_reachability_and_lease() -> None:
    found = scrape(empty_stats(json.dumps(STATUS)))

    def at(name: str, **labels: str) -> float:
        return found[(name, frozenset(labels.items()))]

    assert at("rustyflower_replication_reporting") == 1
    assert at("rustyflower_replication_lag_seconds", cloud="aws") == 0.25
    assert at("rustyflower_replication_lag_seconds", cloud="azure") == 42.0
    assert at("rustyflower_replication_backlog", cloud="azure") == 17
    assert at("rustyflower_replication_write_lag_seconds", cloud="aws", quantile="0.5") == 0.1
    assert at("rustyflower_replication_write_lag_seconds", cloud="aws", quantile="0.99") == 0.4
    assert at("rustyflower_replication_write_lag_seconds", cloud="aws", quantile="1") == 0.6
    # nothing shipped in the last minute: no write lag, rather than a made-up 0
    assert not any(
        name == "rustyflower_replication_write_lag_seconds" and ("cloud", "azure") in labels
        for name, labels in found
    )
    assert at("rustyflower_replication_reachable", cloud="aws") == 1
    assert at("rustyflower_replication_reachable", cloud="azure") == 0
    assert at("rustyflower_replication_shipped_total", cloud="aws") == 120
    assert at("rustyflower_replication_failures_total", cloud="azure") == 9
    assert at("rustyflower_site_lease_held", cloud="aws", state="held") == 1
    assert at("rustyflower_site_lease_held", cloud="azure", state="unreachable") == 0


@pytest.mark.parametrize(
    "raw",
    [None, "not json", "[1, 2]", '{"targets": {"aws": {"backlog": "many"}}}', '{"targets": 3}'],
)
def test_no_status_or_a_broken_one_reads_as_nobody_replicating(raw: str | None) -> None:
    found = scrape(empty_stats(raw))
    assert found[("rustyflower_replication_reporting", frozenset())] == 0
    assert not any(name.startswith("rustyflower_replication_lag") for name, _ in found)
