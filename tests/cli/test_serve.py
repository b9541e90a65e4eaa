"""`rustyflower serve`: the HTTP API for production, as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import httpx
import pytest

from tests.cli.conftest import REPO, RUSTYFLOWER
from tests.redis.servers import ServerProcess, free_port

pytestmark = pytest.mark.emulator

TOKEN = "serve-token-0123456789abcdef"


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RUSTYFLOWER_")}
    return base | extra


def test_serve_refuses_to_start_without_tokens(valkey: ServerProcess) -> None:
    done = subprocess.run(
        [RUSTYFLOWER, "serve", "--redis-url", valkey.url, "--port", str(free_port())],
        cwd=REPO, env=env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 3
    assert done.stderr.startswith("error: serve needs bearer tokens")
    short = subprocess.run(
        [RUSTYFLOWER, "serve", "--redis-url", valkey.url],
        cwd=REPO, env=env(RUSTYFLOWER_API_TOKENS="short"), capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert short.returncode == 3 and "shorter than 16 characters" in short.stderr


def test_serve_answers_with_a_token_and_stops_on_sigterm(valkey: ServerProcess) -> None:
    port = free_port()
    process = subprocess.Popen(
        [RUSTYFLOWER, "serve", "--redis-url", valkey.url, "--port", str(port), "--prefix",
         f"serve{port}"],
        cwd=REPO, env=env(RUSTYFLOWER_API_TOKENS=TOKEN), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "serve did not answer"
            time.sleep(0.1)
        assert httpx.get(f"{url}/v1/flows").status_code == 401
        authorised = httpx.get(f"{url}/v1/flows", headers={"Authorization": f"Bearer {TOKEN}"})
        assert (authorised.status_code, authorised.json()) == (200, [])
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr
        assert "Traceback" not in stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
