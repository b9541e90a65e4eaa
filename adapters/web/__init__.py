"""The HTTP API: ``create_app`` builds the ASGI application over an ``AsyncClient``.

Install it with ``pip install 'rustyflower[server]'``; ``rustyflower serve`` runs it for
production (bearer tokens required) and ``rustyflower dev`` on loopback. The endpoints
are listed in docs/api.md and served as OpenAPI at ``/openapi.json``.
"""

from __future__ import annotations

from rustyflower.adapters.web.app import create_app
from rustyflower.adapters.web.settings import ApiSettings

__all__ = ["ApiSettings", "create_app"]
