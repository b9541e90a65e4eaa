"""Running a Lua script many times in one round trip, without redis-py's extra round trip.

redis-py's ``Script`` in a pipeline asks ``SCRIPT EXISTS`` before every execute: one
round trip more for every batch of commits, the worker's hottest path. Here the pipeline
sends ``EVALSHA`` at once; only when the server answers ``NOSCRIPT`` (it restarted, or
its script cache was flushed) is the script loaded and exactly the refused calls sent
again. A refused call did nothing, so sending it again applies it once.

``send_scripts`` sends such a round trip and returns at once; its ``receive`` reads the
replies later, so that the worker computes its next batch while Redis runs the last
one's commits (``adapters/redis/lanes.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError, ResponseError

Call = tuple[Sequence[Any], Sequence[Any]]
"""The keys and the arguments of one run of a script."""

ScriptCall = tuple[Script, Sequence[Any], Sequence[Any]]
"""A script with the keys and the arguments of one run."""


@dataclass
class Rider:
    """A script run that rides in the round trip of another batch (the worker's next read
    sent with its commits). It rides once: its reply, or its error, is kept here."""

    call: ScriptCall
    reply: Any = None
    answered: bool = False


def evalsha_many(
    client: redis.Redis, script: Script, calls: Sequence[Call], rider: Rider | None = None
) -> list[Any]:
    """The replies of ``script`` run once per call, in order, in one round trip; a
    ``rider`` not yet answered goes last in the same round trip."""
    runs, riding = _runs(script, calls, rider)
    return _answered(run_scripts(client, runs, raise_errors=False), riding)


class SentScripts:
    """Script runs sent in one round trip whose replies are not read yet.

    The connection stays out of the pool until ``receive``: its replies are on it. Other
    commands meanwhile take other connections of the pool.
    """

    def __init__(
        self,
        client: redis.Redis,
        runs: list[ScriptCall],
        rider: Rider | None,
    ) -> None:
        self._client = client
        self._runs = runs
        self._rider = rider
        self._connection: Any = None
        pool = client.connection_pool
        # redis-py leaves its connection interface untyped
        connection: Any = pool.get_connection()
        try:
            packed = connection.pack_commands(
                [("EVALSHA", script.sha, len(keys), *keys, *args) for script, keys, args in runs]
            )
            connection.send_packed_command(packed)
        except BaseException:
            connection.disconnect()  # part of the request may be on the wire
            pool.release(connection)
            raise
        self._connection = connection

    def receive(self) -> list[Any]:
        """The replies, as ``evalsha_many`` gives them (the rider's kept in the rider);
        a refused (NOSCRIPT) call is loaded and sent again first. Call it once."""
        connection, self._connection = self._connection, None
        if connection is None:
            raise RuntimeError("the replies of these scripts were read already")
        replies: list[Any] = []
        try:
            for _ in self._runs:
                try:
                    replies.append(connection.read_response())
                except ResponseError as error:  # an error reply: the rest still follow
                    replies.append(error)
        except BaseException:
            connection.disconnect()  # replies left unread would answer the next caller
            raise
        finally:
            self._client.connection_pool.release(connection)
        return _answered(_load_refused(self._client, self._runs, replies), self._rider)


def send_scripts(
    client: redis.Redis, script: Script, calls: Sequence[Call], rider: Rider | None = None
) -> SentScripts:
    """Send what ``evalsha_many`` would, without waiting for the replies."""
    return SentScripts(client, *_runs(script, calls, rider))


def _runs(
    script: Script, calls: Sequence[Call], rider: Rider | None
) -> tuple[list[ScriptCall], Rider | None]:
    """The runs of ``script``, with ``rider`` last when it has not ridden yet (returned
    too: it takes the last reply)."""
    runs: list[ScriptCall] = [(script, keys, args) for keys, args in calls]
    riding = rider if rider is not None and not rider.answered else None
    if riding is not None:
        runs.append(riding.call)
    return runs, riding


def _answered(replies: list[Any], riding: Rider | None) -> list[Any]:
    """The replies without the rider's (kept in it); the first error reply raised."""
    if riding is not None:
        riding.reply, riding.answered = replies.pop(), True
    _raise_first_error(replies)
    return replies


def run_scripts(
    client: redis.Redis, calls: Sequence[ScriptCall], *, raise_errors: bool = True
) -> list[Any]:
    """The replies of several script runs, in order, in one round trip.

    An error reply of any call (other than NOSCRIPT, which is handled) is raised once
    every call has been answered, as ``pipeline.execute(raise_on_error=True)`` would;
    ``raise_errors`` False returns it among the replies instead.
    """
    if not calls:
        return []
    replies = _load_refused(client, calls, _send(client, calls))
    if raise_errors:
        _raise_first_error(replies)
    return replies


def _load_refused(
    client: redis.Redis, calls: Sequence[ScriptCall], replies: list[Any]
) -> list[Any]:
    """``replies`` with each NOSCRIPT refusal replaced by the reply of the call sent again
    once its script is loaded."""
    refused = [index for index, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if refused:
        for script in {calls[index][0].sha: calls[index][0] for index in refused}.values():
            client.script_load(script.script)
        again = _send(client, [calls[index] for index in refused])
        for index, reply in zip(refused, again, strict=True):
            replies[index] = reply
    return replies


def _raise_first_error(replies: Sequence[Any]) -> None:
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply


def _send(client: redis.Redis, calls: Sequence[ScriptCall]) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for script, keys, args in calls:
        pipe.evalsha(script.sha, len(keys), *keys, *args)
    return list(pipe.execute(raise_on_error=False))
