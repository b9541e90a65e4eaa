"""The site's lifeboat agent: one replicator per site ships, renews the leases, reports.

Any number of processes may run it (every ``rustyflower worker --replicate``, or
``rustyflower replicate``): they share the work through a leadership lease in the
site's store, so exactly one at a time ships to each target (a thread per target) and
renews the site lease in each cloud (one thread), and it publishes the status
(``report``: lag, backlog, leases) every second, where ``rustyflower replicate --status``
and the operations API read it (``Keyspace.lifeboat_status`` in Redis).

Before a process runs anything, ``prepare`` checks the lease in every cloud and applies
a takeover it finds there (``site_lease``): a site that comes back never advances an
instance a cloud took over.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rustyflower.adapters.continuity.replication import Replicator
from rustyflower.adapters.continuity.site_lease import LeaseState, SiteLeaseKeeper
from rustyflower.core.errors import RustyFlowerError
from rustyflower.core.lifeboat.feed import ReplicationFeed
from rustyflower.core.timeutil import format_timestamp

__all__ = ["AgentOptions", "SiteAgent"]

log = logging.getLogger("rustyflower.lifeboat")


@dataclass(frozen=True)
class AgentOptions:
    name: str
    """This process (the leadership holder)."""
    renew_interval: float = 5.0
    """Seconds between renewals of the site lease in each cloud."""
    leader_ttl: float = 15.0
    report_interval: float = 1.0
    idle: float = 0.05
    """Seconds a replicator waits when its backlog is empty."""


class SiteAgent:
    def __init__(
        self,
        site: str,
        feed: ReplicationFeed,
        replicator: Replicator,
        keeper: SiteLeaseKeeper,
        options: AgentOptions,
    ) -> None:
        self.site = site
        self.feed = feed
        self.replicator = replicator
        self.keeper = keeper
        self.options = options
        self.leading = False
        self._threads: list[threading.Thread] = []
        self._term_stop = threading.Event()

    # --- before anything runs -------------------------------------------------------------

    def prepare(self, stop: threading.Event, *, log_every: float = 10.0) -> dict[str, LeaseState]:
        """Check the lease in every cloud (applying any takeover) and switch replication on.

        Waits while a cloud cannot be reached or a takeover is in progress there: running
        instances the cloud may have taken would be a split brain. Returns the states
        (empty when ``stop`` was set first).
        """
        self.replicator.enable()
        states: dict[str, LeaseState] = {}
        last_log = 0.0
        for cloud in self.keeper.clouds:
            while not stop.is_set():
                state = self.keeper.renew(cloud, self.replicator.highest_epoch)
                if state.state == "held":
                    states[cloud] = state
                    break
                if time.monotonic() - last_log >= log_every:
                    last_log = time.monotonic()
                    log.warning(
                        "site %s: waiting for its lease in %s before running anything: %s",
                        self.site,
                        cloud,
                        state.last_error,
                    )
                stop.wait(min(self.options.renew_interval, 2.0))
        return states

    # --- the loop -------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Lead when no one else does; ship, renew and report while leading."""
        try:
            while not stop.is_set():
                try:
                    leading = self.feed.lead(self.options.name, self.options.leader_ttl)
                except Exception as error:  # the store is down: stop leading, try again
                    log.warning("lifeboat leadership: %s", error)
                    leading = False
                if leading and not self.leading:
                    self._begin_term()
                elif not leading and self.leading:
                    log.warning("lifeboat: %s lost the replicator's leadership", self.options.name)
                    self._end_term()
                if self.leading:
                    self._publish()
                stop.wait(self.options.report_interval)
        finally:
            if self.leading:
                self._end_term()
                try:
                    self.feed.resign(self.options.name)
                except Exception as error:
                    log.debug("could not give up the leadership: %s", error)

    def _begin_term(self) -> None:
        log.info("lifeboat: %s ships for site %s", self.options.name, self.site)
        self.leading = True
        self._term_stop = threading.Event()
        for target in self.replicator.targets:
            self._spawn(f"rustyflower-replicate-{target}", functools.partial(self._ship, target))
            self._spawn(f"rustyflower-compact-{target}", functools.partial(self._compact, target))
        self._spawn("rustyflower-site-lease", self._renew_loop)

    def _end_term(self) -> None:
        self.leading = False
        self._term_stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        def supervised() -> None:
            while not self._term_stop.is_set():
                try:
                    target()
                    return
                except Exception:  # never die silently: log, back off, go again
                    log.exception("%s failed; starting it again in 1 s", name)
                    self._term_stop.wait(1.0)

        thread = threading.Thread(target=supervised, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _ship(self, target: str) -> None:
        self.replicator.run(target, self._term_stop, self.options.idle)

    def _compact(self, target: str) -> None:
        self.replicator.run_compaction(target, self._term_stop)

    def _renew_loop(self) -> None:
        while not self._term_stop.is_set():
            for cloud in self.keeper.clouds:
                state = self.keeper.renew(cloud, self.replicator.highest_epoch)
                if state.state != "held":
                    log.warning("site lease in %s: %s (%s)", cloud, state.state, state.last_error)
            self._term_stop.wait(self.options.renew_interval)

    # --- the status -----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "agent": self.options.name,
            "leader": self.leading,
            "at": format_timestamp(datetime.now(UTC)),
            "targets": self.replicator.report(),
            "leases": self.keeper.report(),
        }

    def _publish(self) -> None:
        try:
            self.feed.report(self.status(), ttl_seconds=3 * self.options.report_interval + 5)
        except (RustyFlowerError, OSError, ConnectionError) as error:
            log.warning("lifeboat: could not publish the status: %s", error)
        except Exception as error:  # the status is best effort; the shipping goes on
            log.warning("lifeboat: could not publish the status: %s", error)
