"""The HTTP API under 100 concurrent clients: p50/p95/p99 latency of start and status.

    .venv/bin/python -m bench.api_bench [--clients 100] [--requests 20] [--json]

Starts a fresh ``redis-server`` (Debian's 7.x; the embedded Valkey without it) on a free
loopback port, then ``rustyflower serve`` as its own process (one uvicorn worker, as
documented), and drives it from this process with ``--clients`` concurrent HTTP/1.1
keep-alive connections (httpx, asyncio). Each client first starts ``--requests``
instances (``POST /v1/instances``), then reads the status of each
(``GET /v1/instances/{id}``). No worker runs: the flow's first task stays queued, so
start measures the commit of a new instance and status the read of a waiting one.
Latency is per request, from send to full answer, on the client side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from rustyflower import Flow, SnapshotKeys
from rustyflower.client import Client
from rustyflower.worker import EmbeddedServer

TOKEN = "bench-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_redis(folder: Path) -> tuple[str, Any]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        server = EmbeddedServer(folder / "valkey")
        server.start()
        return server.url, server
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
         "--save", "", "--appendonly", "yes", "--appendfsync", "everysec"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with Client.connect(url, prefix="probe", keys=SnapshotKeys.none()):
                return url, process
        except Exception:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")


def stop(server: Any) -> None:
    if isinstance(server, subprocess.Popen):
        server.terminate()
        server.wait(10)
    else:
        server.stop()


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def rank(fraction: float) -> float:
        return ordered[max(0, int(fraction * len(ordered) + 0.999999) - 1)] * 1000

    return {
        "p50_ms": round(rank(0.50), 2),
        "p95_ms": round(rank(0.95), 2),
        "p99_ms": round(rank(0.99), 2),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
    }


async def drive(url: str, clients: int, requests: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    starts: list[float] = []
    reads: list[float] = []
    errors = 0
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as http:
        await http.get("/v1/flows")  # warm up one connection and the app

        async def one_client(number: int) -> None:
            nonlocal errors
            ids = []
            for n in range(requests):
                began = time.perf_counter()
                answer = await http.post(
                    "/v1/instances", json={"flow": "bench", "input": {"c": number, "n": n}}
                )
                starts.append(time.perf_counter() - began)
                if answer.status_code != 201:
                    errors += 1
                    continue
                ids.append(answer.json()["instance_id"])
            for instance_id in ids:
                began = time.perf_counter()
                answer = await http.get(f"/v1/instances/{instance_id}")
                reads.append(time.perf_counter() - began)
                if answer.status_code != 200:
                    errors += 1

        began = time.perf_counter()
        await asyncio.gather(*(one_client(n) for n in range(clients)))
        wall = time.perf_counter() - began
    return {
        "clients": clients,
        "requests": len(starts) + len(reads),
        "errors": errors,
        "wall_seconds": round(wall, 2),
        "requests_per_second": round((len(starts) + len(reads)) / wall, 1),
        "start": percentiles(starts),
        "status": percentiles(reads),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--requests", type=int, default=20, help="starts (and reads) per client")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="rf-api-bench-"))
    redis_url, redis_server = start_redis(folder)
    api = None
    try:
        with Client.connect(redis_url, prefix="bench", keys=SnapshotKeys.none()) as client:
            client.register(Flow("bench", version="1").task("Step", "step").build())
        port = free_port()
        env = os.environ | {"RUSTYFLOWER_API_TOKENS": TOKEN}
        env.pop("RUSTYFLOWER_SIGNING_KEYS", None)
        api = subprocess.Popen(
            [sys.executable, "-m", "rustyflower.adapters.cli.main", "serve", "--port", str(port),
             "--redis-url", redis_url, "--prefix", "bench", "--no-webhooks"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if api.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the API did not start: {api.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
        result = asyncio.run(drive(url, args.clients, args.requests))
    finally:
        if api is not None:
            api.terminate()
            api.wait(15)
        stop(redis_server)
        shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{result['clients']} clients, {result['requests']} requests in "
        f"{result['wall_seconds']} s ({result['requests_per_second']}/s), "
        f"{result['errors']} errors"
    )
    for name in ("start", "status"):
        figures = result[name]
        print(
            f"  {name:<6} p50 {figures['p50_ms']:>7} ms   p95 {figures['p95_ms']:>7} ms   "
            f"p99 {figures['p99_ms']:>7} ms   mean {figures['mean_ms']:>7} ms"
        )


if __name__ == "__main__":
    main()
