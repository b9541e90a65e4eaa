#!/usr/bin/env python3
"""The container's health check (the image's HEALTHCHECK): healthy when its role works.

One image runs every role, so the check first finds the role in the container's main
command (``/proc/1/cmdline``: ``rustyflower serve ...`` or ``rustyflower worker ...``),
or takes it as its argument (``api`` or ``worker``):

- ``api`` (``serve``): ``GET /healthz`` on the port ``serve`` listens on answers
  ``{"ok": true}``, which it does only while Redis answers;
- ``worker`` (``worker``, with or without ``--scheduler``): a worker of this host renewed
  its heartbeat within 15 s and calls itself healthy (``rustyflower workers --json``);
  a worker whose threads keep failing exits on its own, this catches one that hangs.

Exit 0 when healthy, 1 otherwise with one line saying why (Docker keeps it in
``docker inspect``). Standard library only: it runs with the image's Python.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

ALIVE_SECONDS = 15.0  # as `rustyflower workers` counts a worker alive
DEFAULT_PORT = 8080  # `rustyflower serve --port`
TIMEOUT_SECONDS = 5.0


def role_of(command: Sequence[str]) -> tuple[str, int] | None:
    """``("api", port)`` or ``("worker", 0)`` from a main command line; None if neither."""
    for index, word in enumerate(command):
        if word == "worker":
            return "worker", 0
        if word in ("serve", "dev"):  # dev serves the API too (--api-port)
            return "api", _port(command[index + 1 :])
    return None


def _port(options: Sequence[str]) -> int:
    for index, word in enumerate(options):
        if word in ("--port", "--api-port") and index + 1 < len(options):
            return int(options[index + 1])
        if word.startswith(("--port=", "--api-port=")):
            return int(word.split("=", 1)[1])
    return DEFAULT_PORT


def check_api(port: int) -> str | None:
    """None when the API answers healthy, else what is wrong."""
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as answer:
            body = json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return f"{url} answered {error.code}"
    except (OSError, ValueError) as error:
        return f"{url}: {error}"
    return None if body.get("ok") is True else f"{url} answered {body}"


def check_worker(host: str, now: float) -> str | None:
    """None when a worker of ``host`` beats and is healthy, else what is wrong."""
    try:
        done = subprocess.run(
            ["rustyflower", "workers", "--json"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS * 2,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"rustyflower workers: {error}"
    if done.returncode != 0:
        return f"rustyflower workers: {done.stderr.strip() or done.returncode}"
    ours = [w for w in json.loads(done.stdout)["workers"] if w.get("host") == host]
    if not ours:
        return f"no worker of host {host} has a heartbeat"
    for worker in ours:
        age = now - float(worker.get("at") or 0.0)
        if age <= ALIVE_SECONDS and worker.get("healthy"):
            return None
    return "; ".join(
        f"worker {w.get('name')}: heartbeat {now - float(w.get('at') or 0.0):.0f} s old, "
        f"{'healthy' if w.get('healthy') else 'unhealthy: ' + '; '.join(w.get('problems') or [])}"
        for w in ours
    )


def main(arguments: Sequence[str]) -> int:
    if arguments and arguments[0] in ("api", "worker"):
        role = (arguments[0], _port(arguments[1:]))
    else:
        try:
            command = Path("/proc/1/cmdline").read_bytes().decode().split("\0")
        except OSError as error:
            print(f"unhealthy: cannot read the main command: {error}")
            return 1
        found = role_of(command)
        if found is None:
            print(f"unhealthy: the main command runs neither serve nor worker: {command}")
            return 1
        role = found
    problem = (
        check_api(role[1]) if role[0] == "api" else check_worker(socket.gethostname(), time.time())
    )
    if problem is not None:
        print(f"unhealthy: {problem}")
        return 1
    print(f"healthy ({role[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
