"""RustyFlower: durable workflows that run on your servers and continue in the cloud.

This folder is installed as the ``rustyflower`` package itself (pyproject.toml maps it);
``rustyflower.core`` and ``rustyflower.adapters`` are the internals beneath it.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rustyflower")
except PackageNotFoundError:  # pragma: no cover - vendored into a deployable without metadata
    __version__ = "0+unknown"

__all__ = ["__version__"]
