"""The HTTP API app as the CLI builds it (``serve``, ``dev``), and whether it can.

The API needs the ``server`` extra (FastAPI, uvicorn, prometheus-client, httpx); a
command that needs it and does not find it says how to install it (exit 3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rustyflower.adapters.cli.context import Connection
from rustyflower.adapters.cli.errors import CliEnvironmentError

if TYPE_CHECKING:
    from fastapi import FastAPI

SERVER_EXTRA = "pip install 'rustyflower[server]'"


def server_module() -> Any:
    """``adapters.web.settings`` when the server extra is installed; else exit 3 saying how."""
    try:
        import fastapi  # noqa: F401, PLC0415
        import prometheus_client  # noqa: F401, PLC0415
        import uvicorn  # noqa: F401, PLC0415

        from rustyflower.adapters.web import settings  # noqa: PLC0415
    except ImportError as error:
        raise CliEnvironmentError(
            f"the HTTP API needs the server extra ({error.name} is missing): {SERVER_EXTRA}"
        ) from None
    return settings


def build_app(connection: Connection, settings: Any) -> FastAPI:
    """The API app over this run's connection settings (its own client and pool)."""
    from rustyflower.adapters.web import create_app  # noqa: PLC0415
    from rustyflower.client import AsyncClient  # noqa: PLC0415

    connection.client  # noqa: B018 - fail fast (exit 3) when Redis is unreachable
    client = AsyncClient.connect(
        connection.url, prefix=connection.prefix, data_dir=connection.data_dir
    )
    return create_app(client, settings)


def server_extra_missing() -> str | None:
    """Why the API cannot be served here (the extra is missing), or None."""
    try:
        server_module()
    except CliEnvironmentError as error:
        return str(error)
    return None
