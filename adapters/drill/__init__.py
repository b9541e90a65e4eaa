"""The disaster drill (``rustyflower drill``): a site of its own, a local cloud, a kill of
the site at a seeded moment, the cloud's watchdog taking over, the site coming back and
failing back, and a check of every instance against its reference run.

It composes the Redis runner, continuity and the local clouds, so it lives beside them
(docs/architecture.md): nothing but the ``drill`` command imports it.
"""
