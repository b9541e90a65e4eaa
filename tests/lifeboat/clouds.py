"""The clouds of the lifeboat tests: moto's server and Azurite, each behind a cable.

``CloudSide`` is what the site reaches in one cloud (its replica store and lease store,
made by the product's own settings: ``LifeboatSettings.links``) and what the test reads
there directly. moto runs as a real HTTP server (``ThreadedMotoServer``) so the site's
requests cross a real socket that the test can unplug; Azurite is the session's.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from unittest import mock

import boto3
from botocore.config import Config

from rustyflower.adapters.aws.lifeboat import DynamoLeaseStore, S3ReplicaStore
from rustyflower.adapters.azure.lifeboat import BlobLeaseStore, BlobReplicaStore, replica_container
from rustyflower.adapters.continuity.lifeboat_setup import LifeboatSettings
from rustyflower.adapters.continuity.site_lease import CloudLink
from rustyflower.core.lifeboat.replica import ReplicaHeader
from tests.azure.azurite import Azurite, connection_string
from tests.lifeboat.cable import Cable, cable

REGION = "us-east-1"
BUCKET = "rf-lifeboat-tests"
TABLE = "rf-lifeboat-leases"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class CloudSide:
    kind: str
    settings: dict[str, str]
    """The site's lifeboat settings for this cloud (environment names)."""
    cable: Cable
    direct: Any
    """A client of the cloud that does not go through the cable (the test's eyes)."""

    def lifeboat(self, site: str) -> LifeboatSettings:
        return LifeboatSettings.from_env({**self.settings, "RUSTYFLOWER_SITE_ID": site})

    def link(self, site: str) -> CloudLink:
        return self.lifeboat(site).links()[self.kind]

    def replicas(self, site: str) -> dict[str, ReplicaHeader]:
        """Every replica of ``site`` as the cloud holds it, by instance id."""
        store = self.direct_link(site).replicas
        return {header.instance_id: header for header in store.headers()}

    def direct_link(self, site: str) -> CloudLink:
        """The site's stores, reached without the cable."""
        if self.kind == "aws":
            s3, dynamodb = self.direct
            return CloudLink(S3ReplicaStore(s3, BUCKET, site), DynamoLeaseStore(dynamodb, TABLE))
        return CloudLink(BlobReplicaStore(self.direct, site), BlobLeaseStore(self.direct))


def create_aws_resources(s3: Any, dynamodb: Any) -> None:
    s3.create_bucket(Bucket=BUCKET)
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "site", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "site", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


class MotoServer:
    """moto's server (``python -m moto.server``) in a process of its own: the site's
    requests cross a real socket, and its CPU is not the test's."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1)
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError("moto's server did not start") from None
                time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@contextlib.contextmanager
def aws_side(server: MotoServer) -> Iterator[CloudSide]:
    """An empty account on moto's server with the bucket and the lease table, reached by
    the site through a cable."""
    server.reset()
    with mock.patch.dict(os.environ, CREDENTIALS), cable(server.port) as wire:
        pool = Config(max_pool_connections=32)
        s3 = boto3.client("s3", region_name=REGION, endpoint_url=server.url, config=pool)
        dynamodb = boto3.client("dynamodb", region_name=REGION, endpoint_url=server.url)
        create_aws_resources(s3, dynamodb)
        settings = {
            "RUSTYFLOWER_REPLICATE_TO": "aws",
            "RUSTYFLOWER_REPLICA_BUCKET": BUCKET,
            "RUSTYFLOWER_LEASE_TABLE": TABLE,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": wire.url,
            **CREDENTIALS,
        }
        with mock.patch.dict(os.environ, {"AWS_ENDPOINT_URL": wire.url}):
            yield CloudSide("aws", settings, wire, (s3, dynamodb))


@contextlib.contextmanager
def azure_side(azurite: Azurite, container: str) -> Iterator[CloudSide]:
    """A container of the session's Azurite, reached by the site through a cable."""
    direct = replica_container(container, connection_string=azurite.connection_string)
    direct.create_container()
    with cable(azurite.port) as wire:
        settings = {
            "RUSTYFLOWER_REPLICATE_TO": "azure",
            "RUSTYFLOWER_AZURE_STORAGE": connection_string(wire.port),
            "RUSTYFLOWER_REPLICA_CONTAINER": container,
        }
        try:
            yield CloudSide("azure", settings, wire, direct)
        finally:
            direct.delete_container()
