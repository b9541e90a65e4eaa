"""What ``pip install rustyflower`` puts on a machine: one package, ``rustyflower``.

pyproject.toml maps the repository's folders to import names (``rustyflower`` ->
adapters/public, ``rustyflower.core`` -> core/, ``rustyflower.adapters`` -> adapters/) and
lists every package explicitly; these tests keep that list whole and install the real
wheel into a fresh virtual environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIG = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
PUBLIC_FACE = REPO / "adapters" / "public"
DASHBOARD = REPO / "adapters" / "web" / "dashboard" / "static"


def package_folders() -> dict[str, Path]:
    """Every folder with an ``__init__.py`` under core/ and adapters/, by its import name."""
    found = {"rustyflower": PUBLIC_FACE}
    for folder, name in (
        (REPO / "core", "rustyflower.core"),
        (REPO / "adapters", "rustyflower.adapters"),
    ):
        for init in folder.rglob("__init__.py"):
            package = init.parent
            if package == PUBLIC_FACE or "__pycache__" in package.parts:
                continue
            relative = package.relative_to(folder).parts
            found[".".join((name, *relative))] = package
    return found


def test_every_package_folder_is_listed_for_the_wheel() -> None:
    assert sorted(CONFIG["packages"]) == sorted(package_folders())


def test_the_public_face_is_typed() -> None:
    assert (PUBLIC_FACE / "py.typed").is_file()
    assert "py.typed" in CONFIG["package-data"]["rustyflower"]


@pytest.mark.slow
def test_the_wheel_adds_only_rustyflower_and_its_command_works(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(wheels),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("rustyflower-*.whl")
    environment = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(environment)
    python = environment / "bin" / "python"
    before = set(os.listdir(site_packages(python)))
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
        check=True,
        capture_output=True,
    )
    record = next(site_packages(python).glob("rustyflower-*.dist-info")) / "RECORD"
    tops = {
        line.split(",")[0].split("/")[0]
        for line in record.read_text().splitlines()
        if not line.startswith("../")  # the console script, in the venv's bin/
    }
    assert tops == {"rustyflower", record.parent.name}
    assert not {"core", "adapters", "functions_azure", "lambda_aws"} & (
        set(os.listdir(site_packages(python))) - before
    )
    clean_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    shown = subprocess.run(
        [str(environment / "bin" / "rustyflower"), "--help"],
        cwd=tmp_path,
        env=clean_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert "validate" in shown.stdout
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import rustyflower, rustyflower.core.engine; print(rustyflower.__file__)",
        ],
        cwd=tmp_path,
        env=clean_env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip().startswith(str(site_packages(python)))
    installed = site_packages(python) / "rustyflower"
    assert (installed / "py.typed").is_file()
    assert not (installed / "adapters" / "public").exists()
    # the dashboard's pages ship as they are (no build step): every one, nothing else
    shipped = installed / "adapters" / "web" / "dashboard" / "static"
    assert sorted(p.name for p in shipped.iterdir()) == sorted(p.name for p in DASHBOARD.iterdir())


def test_the_dashboards_pages_are_package_data() -> None:
    patterns = CONFIG["package-data"]["rustyflower.adapters.web.dashboard"]
    unlisted = [
        path.name
        for path in DASHBOARD.iterdir()
        if not any(path.match(pattern.removeprefix("static/")) for pattern in patterns)
    ]
    assert unlisted == []  # a new kind of file (an SVG, a font) needs its pattern


def site_packages(python: Path) -> Path:
    found = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(found.stdout.strip())
