"""Which files make up parts of the ``rustyflower`` package, for a deployable to vendor.

The Lambda zip and the Function App folder carry only the parts of RustyFlower they run
(``rustyflower.core`` and one cloud adapter), under their import names. The parts are
found where Python imports them from, so the same code works from a checkout (an editable
install maps ``rustyflower.core`` to ``core/``) and from an installed wheel.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Iterator
from pathlib import Path

_SKIP_DIRS = frozenset({"__pycache__", ".mypy_cache", ".pytest_cache"})
_SKIP_SUFFIXES = (".pyc", ".pyo")


class VendoringError(LookupError):
    """A package to vendor cannot be found where Python would import it from."""


def package_folder(name: str) -> Path:
    """The folder Python imports the package ``name`` from."""
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise VendoringError(f"{name}: not an importable package (is rustyflower installed?)")
    return Path(next(iter(spec.submodule_search_locations)))


def package_files(names: Iterable[str]) -> list[tuple[Path, str]]:
    """(source, archive name) of every file of each package, and its parents' ``__init__.py``.

    Archive names are import paths (``rustyflower/core/engine/machine.py``); a parent
    package contributes only its ``__init__.py`` (and ``py.typed``), not its other modules.
    """
    found: dict[str, Path] = {}
    for name in names:
        parts = name.split(".")
        for depth in range(1, len(parts)):
            parent = ".".join(parts[:depth])
            folder = package_folder(parent)
            for marker in ("__init__.py", "py.typed"):
                if (folder / marker).is_file():
                    found["/".join([*parts[:depth], marker])] = folder / marker
        prefix = "/".join(parts)
        for source, relative in _walk(package_folder(name)):
            found[f"{prefix}/{relative}"] = source
    return [(found[archive], archive) for archive in sorted(found)]


def _walk(folder: Path) -> Iterator[tuple[Path, str]]:
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if not path.is_file() or path.suffix in _SKIP_SUFFIXES:
            continue
        if _SKIP_DIRS & set(relative.parts):
            continue
        yield path, relative.as_posix()
