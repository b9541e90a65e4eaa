"""Running a Lua script many times in one round trip, without redis-py's extra round trip.

redis-py's ``Script`` in a pipeline asks ``SCRIPT EXISTS`` before every execute: one
round trip more for every batch of commits, the worker's hottest path. Here the pipeline
sends ``EVALSHA`` at once; only when the server answers ``NOSCRIPT`` (it restarted, or
its script cache was flushed) is the script loaded and exactly the refused calls sent
again. A refused call did nothing, so sending it again applies it once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

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
    runs: list[ScriptCall] = [(script, keys, args) for keys, args in calls]
    riding = rider if rider is not None and not rider.answered else None
    if riding is not None:
        runs.append(riding.call)
    replies = run_scripts(client, runs, raise_errors=False)
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
    replies = _send(client, calls)
    refused = [index for index, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if refused:
        for script in {calls[index][0].sha: calls[index][0] for index in refused}.values():
            client.script_load(script.script)
        again = _send(client, [calls[index] for index in refused])
        for index, reply in zip(refused, again, strict=True):
            replies[index] = reply
    if raise_errors:
        _raise_first_error(replies)
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
