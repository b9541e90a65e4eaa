"""Exit codes, and how an error a command lets through reads: one line, one exit code.

Every command raises; none prints its own error. The ``rustyflower`` group
(``main.RustyFlowerGroup``) hands what it catches to ``describe_error``, so the same
fault reads the same way and exits with the same code whichever command met it.
README.md "Exit codes" is the user-facing copy of this table.
"""

from __future__ import annotations

import redis

from rustyflower.adapters.redis.connection import RedisUnavailableError
from rustyflower.core.errors import DefinitionError, EpochConflictError, RustyFlowerError

EXIT_OK = 0
EXIT_FLOW_FAILED = 1
"""The flow failed or was cancelled (``run``, ``start --wait``), or a failover/failback item."""
EXIT_BAD_INPUT = 2
"""A file, argument or option cannot be used; typer's usage errors exit 2 as well."""
EXIT_ENVIRONMENT = 3
"""Redis unusable (URL, reachability, credentials), bad settings, ``start --wait --timeout``."""
EXIT_INTERRUPTED = 130
"""Ctrl-C while ``start --wait`` follows an instance (which carries on), as shells count it."""


class CliInputError(RustyFlowerError):
    """A file or argument given on the command line cannot be used (exit 2)."""


class CliEnvironmentError(RustyFlowerError):
    """The environment (settings, a server) is not usable (exit 3)."""


class TimedOutError(RustyFlowerError):
    """``start --wait --timeout`` ran out before the instance finished (exit 3)."""


def describe_error(error: BaseException, where: str | None = None) -> tuple[int, list[str]] | None:
    """The exit code and message lines for an expected error; None for a bug.

    ``where`` is the (already redacted) address of the Redis the command used, for the
    errors redis-py raises mid-command, which do not say which server they mean.
    """
    server = where or "(unknown)"
    if isinstance(error, DefinitionError):
        source = error.source or "flow"
        return EXIT_BAD_INPUT, [f"{source}: {problem}" for problem in error.problems]
    if isinstance(error, RedisUnavailableError | CliEnvironmentError | TimedOutError):
        return EXIT_ENVIRONMENT, [str(error)]
    if isinstance(error, EpochConflictError):
        return EXIT_BAD_INPUT, [f"refused: {error}"]
    if isinstance(error, RustyFlowerError):
        return EXIT_BAD_INPUT, [str(error)]
    if isinstance(error, redis.AuthenticationError):
        return EXIT_ENVIRONMENT, [f"Redis at {server} refused the credentials: {error}"]
    if isinstance(error, redis.ConnectionError | redis.TimeoutError):
        return EXIT_ENVIRONMENT, [f"Redis at {server} went away ({error})"]
    if isinstance(error, redis.ResponseError):
        return EXIT_ENVIRONMENT, [f"Redis at {server} answered: {error}"]
    return None
