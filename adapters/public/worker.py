"""Run the Redis runner's work side in this process: a ``Worker`` and the ``EmbeddedServer``.

    from rustyflower.client import Client
    from rustyflower.worker import EmbeddedServer, Worker

    with EmbeddedServer(".rustyflower/demo") as server:
        client = Client.connect(server.url)
        with Worker(client, registry, concurrency=2):
            ...

The same as ``rustyflower dev`` (server, worker and scheduler) and ``rustyflower worker``
from the command line, which is how production runs them.
"""

from __future__ import annotations

from rustyflower.adapters.redis._serving import EmbeddedServer, Worker

__all__ = ["EmbeddedServer", "Worker"]
