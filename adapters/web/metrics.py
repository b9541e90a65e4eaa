"""``GET /metrics``: the runner's figures in Prometheus' text format (prometheus-client).

The figures are read from Redis at each scrape (``Client.stats``), so any API process
gives the whole runner's counts whichever worker did the work, and a restart loses none.
What only this process knows (its webhook deliveries) comes from its own registry.

Worker thread health comes from each worker's heartbeat key (``rustyflower workers``
shows the same). Not exposed yet: replication lag (no continuous replication exists).
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
from rustyflower.client import AsyncClient, Histogram, RunnerStats

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
    if webhook_backlog is not None:
        found.append(
            GaugeMetricFamily(
                "rustyflower_webhook_backlog",
                "Webhook deliveries waiting (due now, or retries due later).",
                value=webhook_backlog,
            )
        )
    return found


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
