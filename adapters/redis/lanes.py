"""What each executor thread of a worker carries from one round to the next: the messages
read ahead and the batch whose commits Redis is still running.

- **Read ahead.** The thread's next read rides in the round trip of its commits
  (``scripting.Rider``); what it claims is the thread's next batch, so a step costs one
  round trip, not two (a read, then a commit).
- **Sent ahead.** While activities are quick, a batch's commits are sent and the thread
  goes on with its next batch while Redis runs them; it reads their replies once that
  batch is planned. A thread otherwise waits idle for every batch's replies: about a
  fifth of its time in W1 (bench/README.md, "Commits sent ahead").

Why apart from the worker: the worker decides what a message means; this module decides
only when a batch's commits are sent and their replies read, and it changes with that.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from redis.commands.core import Script

from rustyflower.adapters.redis.conductor import PendingEvent, PlannedBatch
from rustyflower.adapters.redis.keys import CONSUMER_GROUP
from rustyflower.adapters.redis.reading import Batch, batch_of, own_pending
from rustyflower.adapters.redis.scripting import Rider

if TYPE_CHECKING:
    from rustyflower.adapters.redis.worker import Worker

log = logging.getLogger("rustyflower.worker")


@dataclass
class SentBatch:
    """A batch whose commits were sent and whose replies are not read yet: its messages
    stay in flight (the heartbeat keeps them claimed) until they are."""

    planned: PlannedBatch
    results: list[PendingEvent]
    holders: list[str]
    rider: Rider | None
    shard: int
    sent_at: float = field(default_factory=time.monotonic)


class Lanes:
    """The read-ahead and sent-ahead batches of a worker's threads, one lane per consumer
    (each thread has its own and only that thread changes it; the heartbeat only reads
    which lanes have commits unanswered)."""

    def __init__(self, worker: Worker, read_by_priority: Script, *, send_ahead: bool) -> None:
        self._worker = worker
        self._read_by_priority = read_by_priority
        self.send_ahead = send_ahead
        """False: every batch waits for its commits' replies (a cluster client, or the
        ``send_ahead`` option off)."""
        self.read_ahead: dict[str, Batch] = {}
        self.sent: dict[str, SentBatch] = {}
        self._suspect: dict[str, int] = {}
        """Consumers (and their shard) whose last round failed on Redis: a read riding
        with it may have claimed messages whose reply was lost (``recover``)."""

    def busy(self, consumer: str) -> bool:
        """Whether the lane holds messages or unanswered commits."""
        return bool(self.read_ahead.get(consumer)) or consumer in self.sent

    def take(self, consumer: str) -> Batch | None:
        """Messages read ahead; when none are in hand but commits are in flight, their
        reply (which brings the next messages) is read first. None: no read rode with
        the last commits; an empty batch: it found nothing a moment ago."""
        shard = self._suspect.get(consumer)
        if shard is not None and self.recover(consumer, shard):
            del self._suspect[consumer]
        ahead = self.read_ahead.pop(consumer, None)
        if not ahead and consumer in self.sent:
            self.finish(consumer)
            ahead = self.read_ahead.pop(consumer, None)
        return ahead

    def unanswered_reads(self, older_than: float) -> list[tuple[str, int]]:
        """(consumer, shard) of each lane whose commits, sent more than ``older_than``
        seconds ago, are still unanswered with a read riding them: the server has run that
        read, so the consumer holds messages the thread does not know yet (it reads the
        reply when its batch in hand is planned, which a long activity can delay past the
        visibility timeout). The heartbeat keeps them claimed (``Maintenance``)."""
        now = time.monotonic()
        return [
            (consumer, sent.shard)
            for consumer, sent in list(self.sent.items())
            if sent.rider is not None and now - sent.sent_at > older_than
        ]

    def keep(self, consumer: str, messages: Batch) -> None:
        """Put messages back in hand, ahead of what later reads bring."""
        self.read_ahead[consumer] = messages + self.read_ahead.get(consumer, [])

    def rider(self, consumer: str, shard: int, count: int) -> Rider | None:
        """The thread's next read, to ride with its commits (none when stopping)."""
        if not consumer or self._worker.stopping:
            return None
        read = [CONSUMER_GROUP, consumer, count]
        return Rider((self._read_by_priority, self._worker.keys.streams(shard), read))

    def answered(self, consumer: str, rider: Rider | None) -> None:
        """Keep what a rider claimed, after what is in hand."""
        if rider is None or not rider.answered:
            return
        if isinstance(rider.reply, Exception):  # e.g. NOGROUP: the next round reads (and says so)
            log.warning("%s: the read sent with the commits failed: %s", consumer, rider.reply)
            return
        messages = batch_of(rider.reply) if rider.reply else []
        self._hold(consumer, rider.call[1], messages)

    def send(
        self, consumer: str, shard: int, results: list[PendingEvent], holders: list[str]
    ) -> bool:
        """Plan the results' commits, read the replies of the lane's last batch (Redis ran
        its commits meanwhile), then send these with the next read and return without
        their replies: the thread works on its next batch while Redis runs them.

        The read asks for two batches when the lane has none in hand, so that one is
        always ready. A batch that touches an instance whose commit is still unanswered
        first waits for that answer: every batch is planned on confirmed values. False:
        applied here and now instead (nothing to send, or planning or sending failed),
        as when nothing is sent ahead.
        """
        worker = self._worker
        previous = self.sent.get(consumer)
        if previous is not None and not previous.planned.instances().isdisjoint(
            result.instance_id for result in results
        ):
            self.finish(consumer)
        try:
            planned = worker.conductor.plan_many(results)
        except Exception as error:  # e.g. Redis gone: applied as before, with retries
            log.debug("%s: planning a batch failed (%s); applying it now", consumer, error)
            self.finish(consumer)
            self.apply_now(consumer, results, self.rider(consumer, shard, worker.batch_size()))
            return False
        self.finish(consumer)
        count = worker.batch_size()
        in_hand = len(self.read_ahead.get(consumer) or ())
        rider = self.rider(consumer, shard, max(count, 2 * count - in_hand))
        try:
            sending = worker.conductor.send_many(planned, rider)
        except Exception as error:  # part of it may have run: the read's claims too
            log.debug("%s: sending a batch's commits failed (%s); applying it now", consumer, error)
            self._suspect[consumer] = shard
            sending = False
        if not sending:
            self.apply_now(consumer, results, rider)
            return False
        self.sent[consumer] = SentBatch(planned, results, holders, rider, shard)
        return True

    def apply_now(self, consumer: str, results: list[PendingEvent], rider: Rider | None) -> None:
        """Apply the results, waiting for their commits; keep what the ``rider`` claimed."""
        try:
            self._worker.apply_results(results, rider)
        finally:
            self.answered(consumer, rider)

    def finish(self, consumer: str) -> None:
        """Read the replies of the lane's sent commits and settle them. When they cannot
        be read (the connection broke), the results are applied again from the stored
        values: each commit is a compare-and-set, so one that did land is not applied
        twice (its events are judged stale and their messages acknowledged)."""
        sent = self.sent.pop(consumer, None)
        if sent is None:
            return
        worker = self._worker
        try:
            try:
                worker.conductor.finish_many(sent.planned)
            except Exception as error:
                log.warning(
                    "%s: the replies of a batch's commits were lost (%s: %s); applying its "
                    "results again",
                    consumer,
                    type(error).__name__,
                    error,
                )
                try:
                    worker.apply_results(sent.results)
                except Exception:  # its messages stay claimed: taken back when Redis answers
                    self._suspect[consumer] = sent.shard
                    raise
                self.recover(consumer, sent.shard)
        finally:
            worker.release(sent.holders)
            self.answered(consumer, sent.rider)

    def round_failed(self, consumer: str, shard: int) -> None:
        """The thread's round failed on Redis: its next round first takes back what a lost
        reply may have claimed (once Redis answers again)."""
        self._suspect[consumer] = shard

    def recover(self, consumer: str, shard: int) -> bool:
        """Take back the messages a read whose reply was lost claimed for this consumer.

        The server ran the read (it rode with commits whose reply the broken connection
        took with it): the messages sit in the consumer's pending list, in nobody's
        hands, and would wait out the visibility timeout before a reclaim. Those neither
        in hand nor in flight go back in hand now. False: Redis could not be read (the
        reclaim after the visibility timeout remains).
        """
        worker = self._worker
        with worker.in_flight_lock:
            known = {flight.message_id for flight in worker.in_flight.values()}
        known.update(message_id for _, message_id, _ in self.read_ahead.get(consumer, []))
        try:
            found = own_pending(worker.client, worker.keys, shard, consumer)
        except Exception as error:  # Redis still away: the failed round has said so
            log.debug("%s: could not read its own pending messages: %s", consumer, error)
            return False
        lost = [message for message in found if message[1] not in known]
        if lost:
            log.warning("%s: took back %d messages a lost reply had claimed", consumer, len(lost))
            self._hold(consumer, worker.keys.streams(shard), lost)
        return True

    def _hold(self, consumer: str, streams: Sequence[str], messages: Batch) -> None:
        """Put messages in hand, after what is there; they count as in flight from now."""
        self._worker.hold([(streams[priority], message_id) for priority, message_id, _ in messages])
        self.read_ahead.setdefault(consumer, []).extend(messages)
