"""Internal: the runtimes and drivers of RustyFlower (Redis, AWS, Azure, local, CLI, continuity).

Nothing here is public API: it may change in any release. Programs import the public face,
``rustyflower``, ``rustyflower.client`` and ``rustyflower.worker``, and run the
``rustyflower`` command; README.md, "Public API", lists what is public. (The public face
itself lives in ``adapters/public``, installed as ``rustyflower``.)
"""
