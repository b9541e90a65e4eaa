"""`rustyflower cloud aws` as a user runs it: a subprocess, found through its record.

Helpers of the local cloud tests (no tests here). Its stdout and stderr go to files (a
pipe nobody reads could fill and stall it); the record it writes in ``--data-dir``
(``cloud-aws.json``) says it is ready and where it listens.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from rustyflower.adapters.localcloud.record import LocalCloudRecord, record_path
from tests.dev_process import REPO, RUSTYFLOWER, env

ACTIVITIES = "tests.conformance.activities"


@dataclass
class CloudProcess:
    process: subprocess.Popen[bytes]
    data_dir: Path
    stdout: Path
    stderr: Path

    @property
    def record_file(self) -> Path:
        return record_path(self.data_dir, "aws")

    def output(self) -> str:
        return (
            f"stdout: {self.stdout.read_text()[-3000:]}\nstderr: {self.stderr.read_text()[-3000:]}"
        )

    def wait_ready(self, timeout: float = 90.0) -> LocalCloudRecord:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = LocalCloudRecord.read(self.record_file)
            if record is not None and record.pid == self.process.pid:
                return record
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"`cloud aws` did not get ready: {self.output()}")

    @property
    def port(self) -> int:
        record = self.wait_ready()
        port = urlsplit(record.endpoint).port
        assert port is not None
        return port

    def interrupt(self, timeout: float = 60.0) -> int:
        """Ctrl-C, as in its terminal; its exit code."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=timeout)


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def cloud_aws(data_dir: Path, *args: str) -> Iterator[CloudProcess]:
    """`rustyflower cloud aws` for ``data_dir`` until the block ends (killed if still up)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    stdout = data_dir.parent / "cloud-aws.stdout"
    stderr = data_dir.parent / "cloud-aws.stderr"
    with stdout.open("wb") as out, stderr.open("wb") as errors:
        process = subprocess.Popen(
            [
                RUSTYFLOWER,
                "cloud",
                "aws",
                "--data-dir",
                str(data_dir),
                "--activities",
                ACTIVITIES,
                *args,
            ],
            cwd=REPO,
            env=env(),
            stdout=out,
            stderr=errors,
        )
    cloud = CloudProcess(process, data_dir, stdout, stderr)
    try:
        yield cloud
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
