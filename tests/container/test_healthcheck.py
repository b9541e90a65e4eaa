"""The image's health check (container/healthcheck.py): it finds the container's role in
its main command, and says healthy only while that role works. Run here against a real
`rustyflower dev` (its API and its worker), as the container would run it."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from tests.dev_process import dev_server, env

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "container" / "healthcheck.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("container_healthcheck", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


healthcheck = load_script()


@pytest.mark.parametrize(
    ("command", "role"),
    [
        (["/usr/bin/python3", "/usr/bin/rustyflower", "serve", "--port", "9000"], ("api", 9000)),
        (["rustyflower", "serve", "--host", "0.0.0.0", "--port=8081"], ("api", 8081)),
        (["/sbin/docker-init", "--", "rustyflower", "worker", "--scheduler"], ("worker", 0)),
        (["rustyflower", "dev", "--api-port", "8090"], ("api", 8090)),
        (["rustyflower", "flows", "list"], None),
        ([""], None),
    ],
)  # fmt: skip
def test_the_role_comes_from_the_main_command(
    command: list[str], role: tuple[str, int] | None
) -> None:
    assert healthcheck.role_of(command) == role


def test_every_command_the_image_and_compose_run_has_a_role() -> None:
    parser = DockerfileParser(fileobj=io.BytesIO((REPO / "Dockerfile").read_bytes()))
    default = json.loads(next(i["value"] for i in parser.structure if i["instruction"] == "CMD"))
    assert healthcheck.role_of(["rustyflower", *default]) == ("api", 8080)
    services = yaml.safe_load((REPO / "compose.yaml").read_text())["services"]
    roles = {
        name: healthcheck.role_of(["rustyflower", *service["command"]])
        for name, service in services.items()
        if name != "redis"
    }
    assert roles == {"api": ("api", 8080), "scheduler": ("worker", 0), "worker": ("worker", 0)}


def run_check(*arguments: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    variables = env() | {
        "RUSTYFLOWER_DATA_DIR": str(data_dir),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return subprocess.run(
        [sys.executable, str(SCRIPT), *arguments],
        cwd=data_dir.parent,
        env=variables,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.emulator
def test_healthy_while_the_api_and_the_worker_run_and_not_after(tmp_path: Path) -> None:
    data_dir = tmp_path / ".rustyflower"
    with dev_server(data_dir, "examples.order.activities") as dev:
        port = dev.dashboard_url().split(":")[2].split("/")[0]
        api = run_check("api", "--port", port, data_dir=data_dir)
        assert (api.returncode, api.stdout) == (0, "healthy (api)\n"), api.stderr
        deadline = time.monotonic() + 20
        while (worker := run_check("worker", data_dir=data_dir)).returncode != 0:
            assert time.monotonic() < deadline, worker.stdout  # the first heartbeat comes soon
            time.sleep(0.5)
        assert worker.stdout == "healthy (worker)\n"
    api = run_check("api", "--port", port, data_dir=data_dir)
    assert api.returncode == 1 and api.stdout.startswith("unhealthy: http://127.0.0.1:")
    worker = run_check("worker", data_dir=data_dir)
    assert worker.returncode == 1 and worker.stdout.startswith("unhealthy: rustyflower workers")
