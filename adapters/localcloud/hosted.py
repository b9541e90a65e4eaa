"""The activities the local AWS's activity function runs.

The activity handler finds its registry by name (``RUSTYFLOWER_ACTIVITIES`` =
``module:attribute``, as Terraform configures it); the local AWS loads the user's
activities the way ``rustyflower worker`` does (modules or files, several merged into one)
and puts the result here, under a name the handler can import.
"""

from __future__ import annotations

from rustyflower.core.activities import ActivityRegistry

__all__ = ["SPEC", "registry"]

SPEC = "rustyflower.adapters.localcloud.hosted:registry"
"""``RUSTYFLOWER_ACTIVITIES`` of the local activity function."""

registry = ActivityRegistry()
"""Replaced by ``LocalAws.start`` with the user's activities."""
