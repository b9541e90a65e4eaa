"""``GET /metrics``: the runner's figures in Prometheus' text format (prometheus-client).

The figures are read from Redis at each scrape (``Client.stats``), so any API process
gives the whole runner's counts whichever worker did the work, and a restart loses none.
What only this process knows (its webhook deliveries) comes from its own registry.

Worker thread health comes from each worker's heartbeat key (``rustyflower workers``
shows the same). Replication lag and the site lease come from the leading replicator's
status key (``rustyflower replicate --status`` shows the same; docs/failover.md).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Iterator, Mapping

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from rustyflower.adapters.web.auth import require_token
from rustyflower.client import AsyncClient, Histogram, ReplicationStats, RunnerStats

router = APIRouter(dependencies=[Depends(require_token)], tags=["metrics"])


class ProcessMetrics:
    """What this API process counts itself (registered in its own registry)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.deliveries = Counter(
            "rustyflower_webhook_deliveries",
            "Webhook delivery attempts made by this process, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.dispatcher_failures = Counter(
            "rustyflower_webhook_dispatcher_failures",
            "Rounds of this process's webhook dispatcher that failed (and were retried).",
            registry=self.registry,
        )


def families(stats: RunnerStats, webhook_backlog: int | None = None) -> list[Metric]:
    """The metric families of one reading."""
    found: list[Metric] = []
    started = CounterMetricFamily(
        "rustyflower_flows_started", "Instances started, by flow.", labels=["flow"]
    )
    for flow, count in sorted(stats.started.items()):
        started.add_metric([flow], count)
    found.append(started)
    finished = CounterMetricFamily(
        "rustyflower_flows_finished",
        "Instances finished, by flow and status.",
        labels=["flow", "status"],
    )
    for (flow, status), count in sorted(stats.finished.items()):
        finished.add_metric([flow, status], count)
    found.append(finished)
    steps = CounterMetricFamily(
        "rustyflower_steps_finished",
        "Step attempts (tasks, sub-flow calls) finished, by flow, step and outcome.",
        labels=["flow", "step", "outcome"],
    )
    for (flow, step, outcome), count in sorted(stats.steps.items()):
        steps.add_metric([flow, step, outcome], count)
    found.append(steps)
    found.append(
        _histograms(
            "rustyflower_step_duration_seconds",
            "Seconds from a step's scheduling to its result, by flow and step.",
            ["flow", "step"],
            ((list(key), histogram) for key, histogram in sorted(stats.step_durations.items())),
        )
    )
    found.append(
        _histograms(
            "rustyflower_flow_duration_seconds",
            "Seconds from an instance's start to its end, by flow.",
            ["flow"],
            (([flow], histogram) for flow, histogram in sorted(stats.flow_durations.items())),
        )
    )
    found.append(
        _gauges(
            "rustyflower_instances",
            "Instances in the store, by status.",
            "status",
            stats.instances,
        )
    )
    found.append(
        _gauges(
            "rustyflower_queue_waiting",
            "Work queued and not yet taken by a worker, by priority (queue depth).",
            "priority",
            stats.queue_waiting,
        )
    )
    found.append(
        _gauges(
            "rustyflower_queue_in_progress",
            "Work taken by a worker and not yet acknowledged, by priority.",
            "priority",
            stats.queue_in_progress,
        )
    )
    for name, text, value in (
        ("rustyflower_queue_deferred", "Work parked by a concurrency or rate limit.",
         stats.deferred),
        ("rustyflower_timers_scheduled", "Timers waiting to fire.", stats.timers_scheduled),
        ("rustyflower_timers_overdue", "Timers past their time, not fired yet (backlog).",
         stats.timers_overdue),
        ("rustyflower_timers_lag_seconds", "How late the most overdue timer is.",
         stats.oldest_overdue_seconds),
        ("rustyflower_dead_letters", "Work messages no worker could process.", stats.dead_letters),
        ("rustyflower_workers_alive", "Workers whose heartbeat is recent (15 s).",
         stats.workers_alive),
    ):  # fmt: skip
        found.append(GaugeMetricFamily(name, text, value=value))
    found.append(
        _gauges(
            "rustyflower_worker_heartbeat_age_seconds",
            "Seconds since each worker's last heartbeat (workers heard from in the last hour).",
            "worker",
            stats.worker_heartbeat_ages,
        )
    )
    healthy = GaugeMetricFamily(
        "rustyflower_worker_thread_healthy",
        "1 when a worker thread is alive and its last round succeeded, 0 when it is failing.",
        labels=["worker", "thread"],
    )
    restarts = CounterMetricFamily(
        "rustyflower_worker_thread_restarts",
        "Times a worker thread was started again after its loop escaped.",
        labels=["worker", "thread"],
    )
    failures = CounterMetricFamily(
        "rustyflower_worker_thread_failed_rounds",
        "Rounds of a worker thread that failed (each was logged and retried).",
        labels=["worker", "thread"],
    )
    for (worker, thread), report in sorted(stats.worker_threads.items()):
        healthy.add_metric([worker, thread], 1.0 if report.healthy else 0.0)
        restarts.add_metric([worker, thread], report.restarts)
        failures.add_metric([worker, thread], report.failures)
    found += [healthy, restarts, failures]
    found += _replication(stats.replication)
    if webhook_backlog is not None:
        found.append(
            GaugeMetricFamily(
                "rustyflower_webhook_backlog",
                "Webhook deliveries waiting (due now, or retries due later).",
                value=webhook_backlog,
            )
        )
    return found


def _replication(replication: ReplicationStats | None) -> list[Metric]:
    """The lifeboat's figures: the lag is the RPO; alert on it, on ``reachable`` 0, on a
    lease not held, and on ``rustyflower_replication_reporting`` 0 (no replicator)."""
    reporting = GaugeMetricFamily(
        "rustyflower_replication_reporting",
        "1 when a replicator reported in the last seconds (the figures below exist), else 0.",
        value=0.0 if replication is None else 1.0,
    )
    if replication is None:
        return [reporting]
    lag = GaugeMetricFamily(
        "rustyflower_replication_lag_seconds",
        "Age of the oldest change the cloud has not confirmed: the RPO now (0: none waits).",
        labels=["cloud"],
    )
    backlog = GaugeMetricFamily(
        "rustyflower_replication_backlog",
        "Instances with a change waiting to be shipped to the cloud.",
        labels=["cloud"],
    )
    writes = GaugeMetricFamily(
        "rustyflower_replication_write_lag_seconds",
        "Lag of the last minute's writes (commit to the cloud's answer), by quantile "
        "(0.5, 0.99, 1 = max).",
        labels=["cloud", "quantile"],
    )
    reachable = GaugeMetricFamily(
        "rustyflower_replication_reachable",
        "1 when the replicator's last writes reached the cloud, 0 while it cannot.",
        labels=["cloud"],
    )
    shipped = CounterMetricFamily(
        "rustyflower_replication_shipped",
        "Snapshots shipped to the cloud (in segments) by the leading replicator "
        "(since it started).",
        labels=["cloud"],
    )
    failures = CounterMetricFamily(
        "rustyflower_replication_failures",
        "Writes to the cloud that failed and wait to be retried (since it started).",
        labels=["cloud"],
    )
    for cloud, target in sorted(replication.targets.items()):
        lag.add_metric([cloud], target.lag_seconds)
        backlog.add_metric([cloud], target.backlog)
        for name, quantile in (("p50", "0.5"), ("p99", "0.99"), ("max", "1")):
            if name in target.write_lag_seconds:
                writes.add_metric([cloud, quantile], target.write_lag_seconds[name])
        reachable.add_metric([cloud], 1.0 if target.reachable else 0.0)
        shipped.add_metric([cloud], target.shipped)
        failures.add_metric([cloud], target.failures)
    lease = GaugeMetricFamily(
        "rustyflower_site_lease_held",
        "1 when the site holds its lease in the cloud (renewed), 0 otherwise "
        "(the state label says why: waiting for a takeover, unreachable).",
        labels=["cloud", "state"],
    )
    for cloud, state in sorted(replication.leases.items()):
        lease.add_metric([cloud, state], 1.0 if state == "held" else 0.0)
    return [reporting, lag, backlog, writes, reachable, shipped, failures, lease]


def _gauges(name: str, text: str, label: str, values: Mapping[str, float]) -> Metric:
    family = GaugeMetricFamily(name, text, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def _histograms(
    name: str,
    text: str,
    labels: list[str],
    readings: Iterable[tuple[list[str], Histogram]],
) -> Metric:
    family = HistogramMetricFamily(name, text, labels=labels)
    for values, histogram in readings:
        buckets = [
            ("+Inf" if math.isinf(bound) else _bound(bound), count)
            for bound, count in histogram.cumulative()
        ]
        family.add_metric(values, buckets, histogram.total_seconds)
    return family


def _bound(value: float) -> str:
    return repr(float(value))


class _Reading(Collector):
    def __init__(self, found: list[Metric]) -> None:
        self._found = found

    def collect(self) -> Iterator[Metric]:
        return iter(self._found)


def render(found: list[Metric], local: CollectorRegistry) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Reading(found))
    return generate_latest(registry) + generate_latest(local)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
async def metrics(request: Request) -> Response:
    client: AsyncClient = request.app.state.client
    local: ProcessMetrics = request.app.state.metrics
    stats = await client.stats()
    backlog = await asyncio.to_thread(lambda: client.sync.webhooks().backlog())
    return Response(
        render(families(stats, backlog), local.registry), media_type=CONTENT_TYPE_LATEST
    )
