"""Key names. Everything one transition touches shares a hash tag, so it works on Cluster.

An instance lives in one shard (chosen by a stable hash of its id); its snapshot, its
history, the shard's work streams, timers and indexes all carry the shard's hash tag, so
the compare-and-set script that applies a transition touches a single slot.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from rustyflower.core.instance_store import Priority

__all__ = ["CONSUMER_GROUP", "PRIORITIES", "Keyspace", "Priority"]

PRIORITIES: tuple[Priority, ...] = ("high", "normal", "low")
CONSUMER_GROUP = "workers"


@dataclass(frozen=True)
class Keyspace:
    prefix: str = "rf"
    shards: int = 1

    def __post_init__(self) -> None:
        if not self.prefix or any(ch in self.prefix for ch in "{} "):
            raise ValueError("a key prefix is non-empty and has no braces or spaces")
        if not 1 <= self.shards <= 1024:
            raise ValueError("shards must be between 1 and 1024")

    def shard_of(self, instance_id: str) -> int:
        return zlib.crc32(instance_id.encode()) % self.shards

    def tag(self, shard: int) -> str:
        return f"{self.prefix}:{{s{shard}}}"

    # --- per instance (in its shard) ------------------------------------------------------

    def instance(self, instance_id: str) -> str:
        return f"{self.tag(self.shard_of(instance_id))}:i:{instance_id}"

    def history(self, instance_id: str) -> str:
        return f"{self.tag(self.shard_of(instance_id))}:h:{instance_id}"

    def steps(self, instance_id: str) -> str:
        """The instance's step log: states entered and left, with their data (``step_log``)."""
        return f"{self.tag(self.shard_of(instance_id))}:st:{instance_id}"

    def finished_channel(self, instance_id: str) -> str:
        """The pub/sub channel on which the commit that finishes the instance announces
        its status (scripts.COMMIT derives it from the instance key: keep them in step)."""
        return f"{self.instance(instance_id)}:finished"

    # --- per shard ------------------------------------------------------------------------

    def stream(self, shard: int, priority: Priority) -> str:
        return f"{self.tag(shard)}:q:{priority}"

    def streams(self, shard: int) -> list[str]:
        return [self.stream(shard, priority) for priority in PRIORITIES]

    def activity_stream(self, shard: int, activity: str) -> str:
        """Work routed to the workers that have ``activity`` (the others lack it)."""
        return f"{self.tag(shard)}:q:a:{activity}"

    def timers(self, shard: int) -> str:
        return f"{self.tag(shard)}:timers"

    def deferred(self, shard: int) -> str:
        """Work put aside by a concurrency or rate limit, scored by when to retry it."""
        return f"{self.tag(shard)}:deferred"

    def dead_letters(self, shard: int) -> str:
        """Work messages no worker could process, kept as evidence (the worker writes it)."""
        return f"{self.tag(shard)}:dead"

    def stats(self, shard: int) -> str:
        """Counters and duration histograms written by the commits (``observing``)."""
        return f"{self.tag(shard)}:stats"

    def flow_events(self, shard: int) -> str:
        """Stream of flows started and finished (capped; reports, webhooks)."""
        return f"{self.tag(shard)}:ev:flows"

    def step_events(self, shard: int) -> str:
        """Stream of steps finished, with their durations (capped; reports)."""
        return f"{self.tag(shard)}:ev:steps"

    def status_index(self, shard: int, status: str) -> str:
        return f"{self.tag(shard)}:status:{status}"

    def flow_index(self, shard: int, flow: str) -> str:
        return f"{self.tag(shard)}:flow:{flow}"

    def started_index(self, shard: int) -> str:
        """Instance ids scored by start time (ms): listings go newest first from here."""
        return f"{self.tag(shard)}:started"

    def finished_index(self, shard: int) -> str:
        """Finished instance ids scored by finish time (ms): retention purges from here."""
        return f"{self.tag(shard)}:finished"

    def lifeboat_switch(self, shard: int) -> str:
        """Present while the site replicates: the commit script then notes every change."""
        return f"{self.tag(shard)}:lifeboat:on"

    def lifeboat_changed(self, shard: int) -> str:
        """Instance ids changed since the replicator last looked, scored by the time (ms)
        of their oldest such change (one entry per instance, however many commits)."""
        return f"{self.tag(shard)}:lifeboat:changed"

    def lifeboat_pending(self, shard: int, target: str) -> str:
        """A replication target's backlog: instance ids to ship, scored like ``changed``."""
        return f"{self.tag(shard)}:lifeboat:pending:{target}"

    def lifeboat_present(self, shard: int, target: str) -> str:
        """Instances the target may hold a replica of (added before a write, removed with
        the replica): a finished instance outside it costs the cloud no request."""
        return f"{self.tag(shard)}:lifeboat:present:{target}"

    def lifeboat_targets(self, shard: int) -> str:
        """The targets that have a backlog in this shard (set once a target is synced)."""
        return f"{self.tag(shard)}:lifeboat:targets"

    def indexes_built(self, shard: int) -> str:
        """Set once the two time indexes also hold the instances written before them."""
        return f"{self.tag(shard)}:indexes:v1"

    # --- global ---------------------------------------------------------------------------

    def definitions(self, name: str) -> str:
        return f"{self.prefix}:defs:{name}"

    def definition_names(self) -> str:
        return f"{self.prefix}:defs"

    def flow_settings(self, name: str) -> str:
        return f"{self.prefix}:flowcfg:{name}"

    def schedules(self) -> str:
        return f"{self.prefix}:schedules"

    def schedule_state(self) -> str:
        return f"{self.prefix}:schedules:state"

    def scheduler_lease(self) -> str:
        return f"{self.prefix}:scheduler:lease"

    def semaphore(self, key: str) -> str:
        return f"{self.prefix}:sem:{key}"

    def rate(self, activity: str) -> str:
        return f"{self.prefix}:rate:{activity}"

    def ledger(self, instance_id: str) -> str:
        """Where continuity records an instance's failover (a hash; not in the instance's
        slot: it is never written with a transition)."""
        return f"{self.prefix}:continuity:{instance_id}"

    def routed_activities(self) -> str:
        """Names of the activities that have a stream of routed work (in some shard)."""
        return f"{self.prefix}:routed"

    def key_check(self) -> str:
        """Signing key id -> proof of its secret, so a worker with a wrong key is refused."""
        return f"{self.prefix}:keycheck"

    def worker_health(self, name: str) -> str:
        """One worker's heartbeat: its threads' health, as JSON, expiring unless renewed."""
        return f"{self.prefix}:worker:{name}"

    def worker_health_pattern(self) -> str:
        return f"{self.prefix}:worker:*"

    def lifeboat_leader(self) -> str:
        """The replicator's leadership lease: one replicator per site ships and renews."""
        return f"{self.prefix}:lifeboat:leader"

    def lifeboat_status(self) -> str:
        """The replicator's report (JSON, expiring unless renewed): lag, backlog, leases."""
        return f"{self.prefix}:lifeboat:status"
