"""Internal: the pure core of RustyFlower (model, expressions, engine, snapshots, activities).

Nothing here is public API: it may change in any release. Programs import the public face,
``rustyflower`` (and ``rustyflower.client``, ``rustyflower.worker``), which re-exports what
users need from here; README.md, "Public API", lists it.
"""
