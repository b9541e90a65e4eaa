"""The Function App the continuity tests fail over to: the product's local Function App.

``rustyflower.adapters.localcloud.azure.LocalFunctionApp`` (what ``rustyflower cloud azure``
serves) over the app of this checkout: the routes call the app's wired HTTP functions with
a ``LocalDurableClient`` over a ``DurableHost``, the real SDK orchestrator runs the flow,
the app's activity and checkpoint functions run in-process (checkpoints go wherever the app
settings say: Azurite here). No ticker: the host delivers what is due by the real time
around every request, and ``run_all`` runs everything to its end on the virtual clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from functions_azure.function_app import app
from rustyflower.adapters.localcloud.azure import LocalFunctionApp, serving
from rustyflower.adapters.localcloud.durable_host import DurableHost
from tests.azure.test_client import FUNCTION_KEY

__all__ = ["FUNCTION_KEY", "ReplayFunctionApp", "running_app"]


class ReplayFunctionApp(LocalFunctionApp):
    def __init__(self) -> None:
        super().__init__(DurableHost(app, now=datetime.now(UTC)), FUNCTION_KEY)


@contextmanager
def running_app() -> Iterator[ReplayFunctionApp]:
    with serving(ReplayFunctionApp()) as server:
        yield server
