"""Assemble a deployable Function App folder: ``python -m functions_azure.build OUT [--with PKG]``.

The folder gets, at its root: ``function_app.py``, ``host.json``, ``requirements.txt``
(from functions_azure/), and the vendored packages ``functions_azure/`` and ``rustyflower/``
with ``rustyflower.core`` and ``rustyflower.adapters.azure`` (the Blob snapshot store), plus
every ``--with`` package (your activities module, for example ``--with myapp/activities``).
Publish that folder with ``func azure functionapp publish <app> --python`` (remote build
installs requirements.txt) or zip-deploy it.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from rustyflower.adapters.vendoring import package_files

REPO = Path(__file__).resolve().parent.parent
ROOT_FILES = ("function_app.py", "host.json", "requirements.txt")
VENDORED_PACKAGES = (
    "rustyflower.core",
    "rustyflower.adapters.azure",
    "rustyflower.adapters.services",
)
PACKAGES = ("functions_azure",)
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "local.settings.json")


def _copy_package(relative: str, out: Path) -> None:
    source = REPO / relative
    if not source.exists():
        return
    # parents of a nested package need their __init__.py
    for parent in Path(relative).parents:
        if str(parent) != ".":
            init = REPO / parent / "__init__.py"
            (out / parent).mkdir(parents=True, exist_ok=True)
            if init.exists():
                shutil.copy2(init, out / parent / "__init__.py")
    shutil.copytree(source, out / relative, ignore=_IGNORE, dirs_exist_ok=True)


def build(out: Path, extra: list[str]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for name in ROOT_FILES:
        shutil.copy2(REPO / "functions_azure" / name, out / name)
    for source, name in package_files(VENDORED_PACKAGES):
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    for package in (*PACKAGES, *extra):
        _copy_package(package, out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the folder to create or refresh")
    parser.add_argument(
        "--with",
        dest="extra",
        action="append",
        default=[],
        help="a package (path relative to the repository) to vendor too",
    )
    arguments = parser.parse_args(argv)
    print(build(arguments.out, arguments.extra))


if __name__ == "__main__":
    main()
