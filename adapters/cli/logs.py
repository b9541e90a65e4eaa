"""How the long-running commands (``dev``, ``worker``, ``replicate``) log."""

from __future__ import annotations

import logging
import sys

from rustyflower.adapters.cli.render import err

__all__ = ["configure_logging"]


def configure_logging(verbose: bool) -> None:
    """Rich lines on a terminal; one plain line per record otherwise (files, collectors)."""
    from rich.logging import RichHandler  # noqa: PLC0415

    handler: logging.Handler
    if err.is_terminal:
        handler = RichHandler(console=err, show_path=False, rich_tracebacks=False, markup=False)
    else:  # logs to a file or a collector: one plain line per record
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("rustyflower").setLevel(logging.DEBUG if verbose else logging.INFO)
