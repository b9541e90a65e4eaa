"""Link the `rustyflower` package tree where mypy can read it: `python .ci/typecheck_tree.py OUT`.

The editable install maps ``rustyflower`` to adapters/public, ``rustyflower.core`` to core/
and ``rustyflower.adapters`` to adapters/ through an import hook, which mypy cannot
follow. This writes ``OUT/rustyflower`` from symbolic links to the same files, following
pyproject.toml's ``package-dir``, so mypy checks the sources under their import names.
"""

from __future__ import annotations

import shutil
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def link_tree(out: Path) -> Path:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    shutil.rmtree(out, ignore_errors=True)
    for name in sorted(mapping, key=lambda package: package.count(".")):
        target = out.joinpath(*name.split("."))
        source = REPO / mapping[name]
        if "." in name:  # a sub-package in a folder of its own: one link for the folder
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source, target_is_directory=True)
            continue
        target.mkdir(parents=True)  # the root: its files, beside the sub-packages' links
        for entry in source.iterdir():
            if entry.name != "__pycache__":
                (target / entry.name).symlink_to(entry)
    return out


if __name__ == "__main__":
    print(link_tree(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "build" / "typecheck"))
