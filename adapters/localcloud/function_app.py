"""Find and load the Function App (``functions_azure``) the local Azure runs.

The Function App is a deployable, not part of the installed package: pip installs
``rustyflower`` only, and ``python -m functions_azure.build OUT`` assembles the folder
that is published to Azure. So the local host loads it the way the Functions host does,
from a folder, by its module name (never by an import statement: adapters do not import
the deployables, tests/unit/test_layers.py). The folder is either

* a RustyFlower checkout (it holds ``functions_azure/function_app.py``), or
* an app folder built by ``python -m functions_azure.build OUT`` (it holds the same
  package beside its ``function_app.py``).

Without ``--app`` (or ``RUSTYFLOWER_AZURE_APP``) the working directory and its parents
are searched, then the checkout this package runs from (an editable install).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from rustyflower.core.activities import ActivityRegistry
from rustyflower.core.errors import RustyFlowerError

__all__ = [
    "APP_MODULE",
    "ENV_APP",
    "FunctionAppNotFoundError",
    "find_app_folder",
    "load_function_app",
    "provide_activities",
]

ENV_APP = "RUSTYFLOWER_AZURE_APP"
APP_MODULE = "functions_azure.function_app"
APP_FILE = Path("functions_azure") / "function_app.py"
BUILD_HINT = (
    "run it in a RustyFlower checkout, or give --app PATH (a checkout, or a folder built "
    "with `python -m functions_azure.build OUT`)"
)
ACTIVITIES_MODULE = "rustyflower_local_azure_activities"
"""The module name under which the activities given to the command are offered to the app."""
_CHECKOUT = Path(__file__).resolve().parents[2]
"""The folder above ``adapters/``: a checkout when installed editable (site-packages else)."""


class FunctionAppNotFoundError(RustyFlowerError):
    """No Function App where it was looked for, or it cannot be loaded."""


def _holds_app(folder: Path) -> bool:
    return (folder / APP_FILE).is_file()


def find_app_folder(given: Path | None, start: Path | None = None) -> Path:
    """The folder holding ``functions_azure/function_app.py``: ``given``, else the first of
    ``start`` (default: the working directory) and its parents, else this checkout."""
    if given is not None:
        folder = given.expanduser().resolve()
        if not _holds_app(folder):
            raise FunctionAppNotFoundError(f"--app {given}: no {APP_FILE} there; {BUILD_HINT}")
        return folder
    here = (start or Path.cwd()).resolve()
    candidates: Iterable[Path] = (here, *here.parents, _CHECKOUT)
    for folder in candidates:
        if _holds_app(folder):
            return folder
    raise FunctionAppNotFoundError(
        f"the Function App ({APP_FILE}) was not found from {here}: {BUILD_HINT}"
    )


def load_function_app(folder: Path) -> Any:
    """The app's ``DFApp`` object, imported from ``folder`` (its settings read from the
    process environment: set them first, the app reads some at import)."""
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    try:
        module: ModuleType = importlib.import_module(APP_MODULE)
    except ImportError as error:
        raise FunctionAppNotFoundError(
            f"the Function App in {folder} cannot be loaded: {error} (the local Azure needs "
            "the Azure extra: pip install 'rustyflower[azure]')"
        ) from None
    loaded_from = Path(str(module.__file__)).resolve()
    if not loaded_from.is_relative_to(folder):
        raise FunctionAppNotFoundError(
            f"{APP_MODULE} is already loaded from {loaded_from.parent.parent}, not {folder}"
        )
    return module.app


def provide_activities(registry: ActivityRegistry) -> str:
    """Offer ``registry`` (the activities the command loaded, as ``worker`` loads them:
    modules or .py files, several merged) to the app's activity function; the value of
    its ``RUSTYFLOWER_ACTIVITIES`` setting that names it.

    The app loads its registry by module name (``core.activities.load_registry``), so the
    registry is put in ``sys.modules`` under a name of its own, as an import would."""
    module = ModuleType(ACTIVITIES_MODULE, "The activities of `rustyflower cloud azure`.")
    module.registry = registry  # type: ignore[attr-defined]
    sys.modules[ACTIVITIES_MODULE] = module
    return ACTIVITIES_MODULE
