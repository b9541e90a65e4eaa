"""``rustyflower cloud``: local clouds to rehearse failover and failback on one machine.

Each subcommand lives in its own module (``cloud_azure``); this one only groups them.
"""

from __future__ import annotations

import typer

from rustyflower.adapters.cli import cloud_azure
from rustyflower.adapters.cli.cloud_settings import LocalCloudCommand
from rustyflower.adapters.cli.options import Group

__all__ = ["cloud_app", "install"]

cloud_app = typer.Typer(
    help="Local clouds to rehearse failover on this machine (docs/failover.md).",
    no_args_is_help=True,
    cls=Group,
)
cloud_app.command("azure", cls=LocalCloudCommand)(cloud_azure.azure)


def install(app: typer.Typer) -> None:
    """Add the ``cloud`` group to the ``rustyflower`` app."""
    app.add_typer(cloud_app, name="cloud")
