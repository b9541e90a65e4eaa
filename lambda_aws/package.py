"""Build the Lambda artifacts: ``python -m lambda_aws.package OUT.zip [--layer LAYER.zip]``.

* ``OUT.zip``, the **function package** (every RustyFlower function uses the same one):
  ``rustyflower/`` with ``rustyflower.core`` and ``rustyflower.adapters.aws`` (nothing of the
  other runtimes), ``lambda_aws/``, and every ``--with`` package (your activities module:
  ``--with myapp/activities``). The zip is
  reproducible (sorted entries, fixed times): the same sources give the same bytes, so
  Terraform's ``source_code_hash`` changes only when the code does.
* ``--layer LAYER.zip``, the **dependency layer**: ``lambda_aws/requirements.txt``
  installed by pip under ``python/`` as binary wheels for the Lambda platform
  (``--arch arm64|x86_64``, ``--python 3.12``), whatever the machine building it.

Terraform (infra/terraform/aws) takes both paths: ``function_zip`` and ``layer_zip``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from rustyflower.adapters.vendoring import package_files

REPO = Path(__file__).resolve().parent.parent
VENDORED_PACKAGES = (
    "rustyflower.core",
    "rustyflower.adapters.aws",
    "rustyflower.adapters.services",
)
PACKAGES = ("lambda_aws",)
REQUIREMENTS = REPO / "lambda_aws" / "requirements.txt"
PLATFORMS = {"arm64": "manylinux2014_aarch64", "x86_64": "manylinux2014_x86_64"}
DEFAULT_ARCH = "arm64"
DEFAULT_PYTHON = "3.12"
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_SKIP_DIRS = frozenset({"__pycache__", ".mypy_cache", ".pytest_cache"})
_SKIP_SUFFIXES = (".pyc", ".pyo")

Runner = Callable[[Sequence[str]], None]


def _files_of(relative: str, root: Path = REPO) -> list[tuple[Path, str]]:
    """(source, archive name) of every file of a package, and its parents' __init__.py."""
    source = root / relative
    if not source.exists():
        raise FileNotFoundError(f"{relative}: no such package under {root}")
    found: list[tuple[Path, str]] = []
    for parent in reversed(Path(relative).parents):
        init = root / parent / "__init__.py"
        if str(parent) != "." and init.is_file():
            found.append((init, (parent / "__init__.py").as_posix()))
    if source.is_file():
        return [*found, (source, Path(relative).as_posix())]
    for path in sorted(source.rglob("*")):
        if not path.is_file() or path.suffix in _SKIP_SUFFIXES:
            continue
        if _SKIP_DIRS & set(path.relative_to(root).parts):
            continue
        found.append((path, path.relative_to(root).as_posix()))
    return found


def write_zip(out: Path, files: Iterable[tuple[Path, str]]) -> Path:
    """A reproducible zip: sorted names, fixed times and modes."""
    entries = dict((name, source) for source, name in files)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, entries[name].read_bytes())
    return out


def build_function(out: Path, extra: Sequence[str] = ()) -> Path:
    """The function package: RustyFlower's code and the ``extra`` packages."""
    files = package_files(VENDORED_PACKAGES)
    for package in (*PACKAGES, *extra):
        files.extend(_files_of(package))
    return write_zip(out, files)


def layer_command(target: Path, arch: str, python: str) -> list[str]:
    """The pip command that installs the requirements for the Lambda platform."""
    if arch not in PLATFORMS:
        raise ValueError(f"--arch must be one of {sorted(PLATFORMS)}, got {arch!r}")
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--target",
        str(target),
        "--platform",
        PLATFORMS[arch],
        "--implementation",
        "cp",
        "--python-version",
        python,
        "--only-binary=:all:",
        "--upgrade",
        "--requirement",
        str(REQUIREMENTS),
    ]


def _run(command: Sequence[str]) -> None:
    subprocess.run(command, check=True, env={**os.environ, "PIP_NO_INPUT": "1"})


def build_layer(
    out: Path, *, arch: str = DEFAULT_ARCH, python: str = DEFAULT_PYTHON, run: Runner = _run
) -> Path:
    """The dependency layer: ``python/<packages>`` for the Lambda platform."""
    with tempfile.TemporaryDirectory(prefix="rf-layer-") as folder:
        target = Path(folder) / "python"
        target.mkdir()
        run(layer_command(target, arch, python))
        files = [
            (path, path.relative_to(folder).as_posix())
            for path in sorted(target.rglob("*"))
            if path.is_file()
            and path.suffix not in _SKIP_SUFFIXES
            and not _SKIP_DIRS & set(path.parts)
        ]
        if not files:
            raise RuntimeError("pip installed nothing into the layer")
        return write_zip(out, files)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("out", type=Path, help="the function package to write (a .zip)")
    parser.add_argument(
        "--with",
        dest="extra",
        action="append",
        default=[],
        help="a package (path relative to the repository) to include, e.g. myapp/activities",
    )
    parser.add_argument("--layer", type=Path, help="also build the dependency layer zip")
    parser.add_argument("--arch", default=DEFAULT_ARCH, choices=sorted(PLATFORMS))
    parser.add_argument("--python", default=DEFAULT_PYTHON, help="the Lambda Python version")
    arguments = parser.parse_args(argv)
    print(build_function(arguments.out, arguments.extra))
    if arguments.layer is not None:
        print(build_layer(arguments.layer, arch=arguments.arch, python=arguments.python))


if __name__ == "__main__":
    main()
