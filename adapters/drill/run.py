"""The drill, step by step (docs/failover.md, "Drill"): a site and a local cloud, N
instances, a kill of the site at a seeded moment, the watchdog's takeover, the pending
events delivered to the cloud, the site's comeback and failback, and the check."""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rustyflower.adapters.continuity.replication import DEFAULT_SETTLE
from rustyflower.adapters.drill.check import (
    Outcome,
    Report,
    duplicate_executions,
    duplicate_transitions,
    effective_history,
    honoured_repeats,
    reference_outputs,
)
from rustyflower.adapters.drill.cloud import (
    CLOUDS,
    EXTRAS,
    DrillCloud,
    DrillError,
    continued_by,
    first_continued,
)
from rustyflower.adapters.drill.flows import (
    EVENT,
    FLOWS,
    LEDGER_VARIABLE,
    MAIN,
    event_data,
    flow_input,
    registry,
)
from rustyflower.adapters.drill.site import DrillSite
from rustyflower.adapters.redis.conductor import Conductor
from rustyflower.core.activities import ActivityRegistry
from rustyflower.core.lifeboat.takeover import TakeoverReport
from rustyflower.core.snapshot import SnapshotKeys, generate_signing_key

__all__ = ["DrillError", "DrillOptions", "open_cloud", "run_drill"]

SITE = "drill-site"
TAKEOVER_AFTER = 10
"""Seconds of silence after which the watchdog takes the site over (the least the
watchdog function accepts)."""
SETTLE_TIMEOUT = 60.0

Progress = Callable[[str], None]


class DrillOptions:
    def __init__(
        self,
        cloud: str,
        instances: int,
        seed: int,
        *,
        redis_url: str | None = None,
        kill_after: float | None = None,
        work_dir: Path | None = None,
        settle: float = DEFAULT_SETTLE,
    ) -> None:
        self.cloud = cloud
        self.instances = instances
        self.seed = seed
        self.redis_url = redis_url
        self.kill_after = kill_after
        self.work_dir = work_dir
        self.settle = settle
        """Seconds a change waits before the site's replicator ships it (its own default:
        the drill rehearses the RPO the site runs with)."""


def _until(what: str, check: Callable[[], Any], timeout: float, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise DrillError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def open_cloud(
    cloud: str,
    registry: ActivityRegistry,
    *,
    site: str,
    key_setting: str,
    threshold: int,
    work: Path,
) -> DrillCloud:
    """The drill's local ``cloud``; its module is imported here, so only the chosen
    cloud's SDKs are needed (DrillError naming the extra when they are missing)."""
    try:
        if cloud == "aws":
            from rustyflower.adapters.drill.aws import DrillAws  # noqa: PLC0415

            return DrillAws(registry, site, key_setting, threshold)
        if cloud == "azure":
            from rustyflower.adapters.drill.azure import DrillAzure  # noqa: PLC0415

            return DrillAzure(registry, site, key_setting, threshold, work)
    except ModuleNotFoundError as error:
        raise DrillError(
            f"the drill on {cloud} needs the local {cloud} ({error.name} is missing): "
            f"pip install 'rustyflower[{EXTRAS[cloud]}]'"
        ) from None
    raise DrillError(f"--to {cloud}: the drill runs on {', '.join(CLOUDS)}")


def run_drill(options: DrillOptions, progress: Progress) -> Report:
    rng = random.Random(options.seed)
    work = options.work_dir or Path(tempfile.mkdtemp(prefix="rustyflower-drill-"))
    ids = [f"drill-{options.seed}-{index:04d}" for index in range(options.instances)]
    progress(f"reference outputs of {len(ids)} instances (in-process, virtual time)")
    reference = reference_outputs(options.seed, ids)
    signing = generate_signing_key(f"drill-{options.seed}")
    keys = SnapshotKeys.signing_only(signing)
    key_setting = f"{signing.key_id}:{signing.to_base64()}"
    ledger = work / "executions.jsonl"
    kill_after = options.kill_after if options.kill_after is not None else rng.uniform(0.5, 3.0)
    with _environment({LEDGER_VARIABLE: str(ledger)}):
        cloud = open_cloud(
            options.cloud,
            registry,
            site=SITE,
            key_setting=key_setting,
            threshold=TAKEOVER_AFTER,
            work=work,
        )
        site: DrillSite | None = None
        try:
            progress(f"starting the local {options.cloud}")
            cloud.start(FLOWS)
            site = DrillSite(
                work / "site", cloud.lifeboat(), keys, registry, options.redis_url, options.settle
            )
            url = site.open(FLOWS)
            site.run()
            progress(f"site up at {url} (data in {work / 'site'}), replicating to {options.cloud}")
            return _drill(options, cloud, site, ids, reference, kill_after, ledger, progress)
        finally:
            if site is not None:
                site.stop()
            cloud.stop()


def _drill(  # noqa: PLR0917 - the drill's one sequence, its parts named
    options: DrillOptions,
    cloud: DrillCloud,
    site: DrillSite,
    ids: list[str],
    reference: dict[str, Any],
    kill_after: float,
    ledger: Path,
    progress: Progress,
) -> Report:
    conductor = Conductor(site.store)
    for index, instance_id in enumerate(ids):
        conductor.start(MAIN.name, flow_input(options.seed, index), instance_id=instance_id)
    progress(f"started {len(ids)} instances; killing the site in {kill_after:.2f}s")
    time.sleep(kill_after)
    site.kill()
    killed, killed_at = time.monotonic(), time.time()
    progress("site killed (SIGKILL of Valkey; worker and agent stopped without a goodbye)")
    replicated = {
        instance_id: (replica.header.seq if (replica := cloud.replica(instance_id)) else None)
        for instance_id in ids
    }

    def takeover() -> tuple[TakeoverReport] | None:
        found = cloud.watchdog()  # a takeover of nothing (no instances) is one too
        return None if found is None else (found,)

    (taken_over,) = _until("the watchdog's takeover", takeover, TAKEOVER_AFTER * 4, every=0.5)
    takeover_seconds = time.monotonic() - killed
    taken = set(continued_by(taken_over)) & set(ids)
    rto = first_continued(taken_over, killed_at)
    progress(
        f"watchdog took over {len(taken)} instance(s) {takeover_seconds:.1f}s after the kill"
        + (f" (the first ran in the cloud {rto:.1f}s after it)" if rto is not None else "")
    )

    signalled: set[str] = set()

    def deliver() -> bool:
        for index, instance_id in enumerate(ids):
            waiting = instance_id in taken and instance_id not in signalled
            if waiting and cloud.signal(instance_id, EVENT, event_data(options.seed, index)):
                signalled.add(instance_id)
        return signalled == taken

    _until("the cloud's event waits", deliver, SETTLE_TIMEOUT)
    progress(f"delivered {len(signalled)} pending event(s) to the cloud")
    _until("the cloud's executions to end", lambda: cloud.running() == 0, SETTLE_TIMEOUT)

    progress("bringing the site back on its data directory")
    site.open(FLOWS)
    site_seqs = {
        instance_id: site.store.info(instance_id).seq
        for instance_id in ids
        if site.store.exists(instance_id)
    }
    site.run()  # the agent applies the takeover before anything runs
    continuity = cloud.continuity(site.store)
    failed_back: dict[str, str] = {}
    for instance_id in ids:
        if site.store.exists(instance_id) and site.store.info(instance_id).owner == cloud.cloud:
            outcome = continuity.failback(instance_id)
            failed_back[instance_id] = outcome.status or "running"
    progress(f"failed back {len(failed_back)} instance(s) from {cloud.cloud}")

    conductor = Conductor(site.store)

    def finished() -> bool:
        done = True
        for index, instance_id in enumerate(ids):
            if not site.store.exists(instance_id):
                continue
            snapshot = site.store.load(instance_id, fresh=True)
            if snapshot.status == "running":
                done = False
                if instance_id not in signalled and snapshot.positions == ["Approve"]:
                    conductor.signal(instance_id, EVENT, event_data(options.seed, index))
                    signalled.add(instance_id)
        return done

    _until("every instance to finish on the site", finished, SETTLE_TIMEOUT)
    report = Report(cloud.cloud, options.seed, kill_after, rto, takeover_seconds, options.settle)
    for instance_id in ids:
        if not site.store.exists(instance_id):
            report.outcomes.append(
                Outcome(instance_id, "lost", "nowhere", replicated[instance_id], 0, 0, False)
            )
            continue
        snapshot = site.store.load(instance_id, fresh=True)
        history = site.store.history(instance_id)
        where = "site"
        if instance_id in failed_back:
            where = (
                cloud.cloud if failed_back[instance_id] == "succeeded" else "site-after-failback"
            )
        report.outcomes.append(
            Outcome(
                instance_id,
                snapshot.status,
                where,
                replicated[instance_id],
                site_seqs.get(instance_id, 0),
                duplicate_transitions(history),
                snapshot.state.output == reference[instance_id],
                effective_history(history)[1],
            )
        )
    report.duplicate_executions = duplicate_executions(ledger)
    report.honoured_repeats = honoured_repeats(ledger)
    progress("checked every instance")
    return report
