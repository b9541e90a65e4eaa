"""The site's lifeboat settings, and the agent built from them (clients made here).

Read from the environment (options win): ``RUSTYFLOWER_SITE_ID``, ``RUSTYFLOWER_REPLICATE_TO``
(``aws``, ``azure`` or both), ``RUSTYFLOWER_TAKEOVER_CLOUD`` (whose watchdog may take the
site over: default the one target; ``none`` for none), then per cloud: AWS
``RUSTYFLOWER_REPLICA_BUCKET``, ``RUSTYFLOWER_LEASE_TABLE`` (+ ``AWS_REGION`` and the
usual credentials chain; ``AWS_ENDPOINT_URL`` reaches a local cloud); Azure
``RUSTYFLOWER_AZURE_STORAGE`` (a connection string) or ``RUSTYFLOWER_REPLICA_ACCOUNT_URL``
(an Entra ID identity), and ``RUSTYFLOWER_REPLICA_CONTAINER``.

The SDKs are optional extras: each cloud's is imported only when a link to it is made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rustyflower.adapters.aws.deployment import ENV_LEASE_TABLE, ENV_REPLICA_BUCKET
from rustyflower.adapters.continuity.errors import ContinuityConfigError
from rustyflower.adapters.continuity.outcomes import CLOUDS, Cloud
from rustyflower.adapters.continuity.replication import (
    DEFAULT_COMPACT_EVERY,
    DEFAULT_PARALLEL,
    DEFAULT_SETTLE,
    Replicator,
)
from rustyflower.adapters.continuity.site_agent import AgentOptions, SiteAgent
from rustyflower.adapters.continuity.site_lease import CloudLink, SiteLeaseKeeper
from rustyflower.core.instance_store import InstanceStore
from rustyflower.core.lifeboat.feed import ReplicationFeed
from rustyflower.core.lifeboat.lease import check_site_id
from rustyflower.core.settings import setting_text
from rustyflower.core.snapshot import SnapshotKeys

__all__ = [
    "ENV_REPLICATE_TO",
    "ENV_SITE_ID",
    "ENV_TAKEOVER_CLOUD",
    "LifeboatSettings",
    "build_agent",
]

ENV_SITE_ID = "RUSTYFLOWER_SITE_ID"
ENV_REPLICATE_TO = "RUSTYFLOWER_REPLICATE_TO"
ENV_TAKEOVER_CLOUD = "RUSTYFLOWER_TAKEOVER_CLOUD"
ENV_AZURE_STORAGE = "RUSTYFLOWER_AZURE_STORAGE"
# the same names as adapters.azure.lifeboat's (not imported: that loads the Azure SDK)
ENV_REPLICA_ACCOUNT_URL = "RUSTYFLOWER_REPLICA_ACCOUNT_URL"
ENV_REPLICA_CONTAINER = "RUSTYFLOWER_REPLICA_CONTAINER"
DEFAULT_REPLICA_CONTAINER = "rustyflower-lifeboat"
NONE = "none"


def parse_targets(text: str | None) -> tuple[Cloud, ...]:
    """``aws``, ``azure``, ``aws,azure``: the clouds to replicate to (empty: none)."""
    found: list[Cloud] = []
    for part in (text or "").replace(" ", ",").split(","):
        name = part.strip().lower()
        if not name:
            continue
        if name == "aws":
            found.append("aws")
        elif name == "azure":
            found.append("azure")
        else:
            raise ContinuityConfigError(
                f"{ENV_REPLICATE_TO} / --to: {part.strip()!r} is not a cloud (aws, azure)"
            )
    return tuple(dict.fromkeys(found))


@dataclass(frozen=True)
class LifeboatSettings:
    site: str
    targets: tuple[Cloud, ...]
    takeover_by: Cloud | None
    region: str | None = None
    replica_bucket: str | None = None
    lease_table: str | None = None
    azure_connection_string: str | None = None
    azure_account_url: str | None = None
    azure_container: str = DEFAULT_REPLICA_CONTAINER

    @classmethod
    def configured(cls, environ: Mapping[str, str], to: str | None = None) -> bool:
        """Whether the site replicates (``--to`` or ``RUSTYFLOWER_REPLICATE_TO`` names a cloud)."""
        return bool(
            parse_targets(to if to is not None else setting_text(environ, ENV_REPLICATE_TO))
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> LifeboatSettings:
        """Settings from ``environ``; ``overrides`` that are not None win (``to``, ``site``,
        ``takeover_by``, and the fields). Raises ``ContinuityConfigError`` naming what is
        missing."""
        given = {name: value for name, value in overrides.items() if value is not None}

        def text(name: str) -> str | None:
            return setting_text(environ, name)

        targets = parse_targets(given.pop("to", None) or text(ENV_REPLICATE_TO))
        if not targets:
            raise ContinuityConfigError(
                f"no cloud to replicate to: give --to aws|azure or set {ENV_REPLICATE_TO}"
            )
        site = given.pop("site", None) or text(ENV_SITE_ID)
        if not site:
            raise ContinuityConfigError(
                f"no site id: give --site or set {ENV_SITE_ID} (it names the site's lease and "
                "replicas in the clouds)"
            )
        try:
            check_site_id(site)
        except ValueError as error:
            raise ContinuityConfigError(str(error)) from None
        takeover = (given.pop("takeover_by", None) or text(ENV_TAKEOVER_CLOUD) or "").lower()
        takeover_by: Cloud | None
        if takeover == NONE:
            takeover_by = None
        elif takeover in CLOUDS:
            takeover_by = "aws" if takeover == "aws" else "azure"
            if takeover_by not in targets:
                raise ContinuityConfigError(
                    f"the takeover cloud {takeover_by} is not one the site replicates to "
                    f"({', '.join(targets)}): its watchdog would have nothing to continue"
                )
        elif not takeover and len(targets) == 1:
            takeover_by = targets[0]
        elif not takeover:
            raise ContinuityConfigError(
                f"the site replicates to {' and '.join(targets)}: say whose watchdog may take "
                f"it over with --takeover-cloud or {ENV_TAKEOVER_CLOUD} (aws, azure or none); "
                "two watchdogs continuing the same instances would be a split brain"
            )
        else:
            raise ContinuityConfigError(
                f"{ENV_TAKEOVER_CLOUD} / --takeover-cloud: {takeover!r} (use aws, azure or none)"
            )
        values: dict[str, Any] = {
            "region": text("AWS_REGION") or text("AWS_DEFAULT_REGION"),
            "replica_bucket": text(ENV_REPLICA_BUCKET),
            "lease_table": text(ENV_LEASE_TABLE),
            "azure_connection_string": text(ENV_AZURE_STORAGE),
            "azure_account_url": text(ENV_REPLICA_ACCOUNT_URL),
            "azure_container": text(ENV_REPLICA_CONTAINER) or DEFAULT_REPLICA_CONTAINER,
        }
        values.update(given)
        settings = cls(site=site, targets=targets, takeover_by=takeover_by, **values)
        settings.check()
        return settings

    def check(self) -> None:
        missing: list[str] = []
        if "aws" in self.targets:
            if not self.replica_bucket:
                missing.append(f"{ENV_REPLICA_BUCKET} (the S3 bucket of the replicas)")
            if not self.lease_table:
                missing.append(f"{ENV_LEASE_TABLE} (the DynamoDB table of the site lease)")
        if "azure" in self.targets and not (self.azure_connection_string or self.azure_account_url):
            missing.append(
                f"{ENV_AZURE_STORAGE} (a storage connection string) or {ENV_REPLICA_ACCOUNT_URL}"
            )
        if missing:
            raise ContinuityConfigError("replication needs " + "; ".join(missing))

    def links(self) -> dict[str, CloudLink]:
        """The replica and lease stores of every target (their SDK clients made here)."""
        links: dict[str, CloudLink] = {}
        for target in self.targets:
            links[target] = self._aws() if target == "aws" else self._azure()
        return links

    def _aws(self) -> CloudLink:
        # imported here: boto3 is the aws extra, needed only when replicating to AWS
        import boto3  # type: ignore[import-untyped, unused-ignore]  # noqa: PLC0415
        from botocore.config import Config  # type: ignore[import-untyped, unused-ignore]  # noqa: PLC0415

        from rustyflower.adapters.aws.lifeboat import DynamoLeaseStore, S3ReplicaStore  # noqa: PLC0415

        config = Config(
            retries={"max_attempts": 2, "mode": "standard"},
            connect_timeout=5,
            read_timeout=15,
            max_pool_connections=32,
        )
        assert self.replica_bucket and self.lease_table
        s3 = boto3.client("s3", region_name=self.region, config=config)
        dynamodb = boto3.client("dynamodb", region_name=self.region, config=config)
        return CloudLink(
            S3ReplicaStore(s3, self.replica_bucket, self.site),
            DynamoLeaseStore(dynamodb, self.lease_table),
        )

    def _azure(self) -> CloudLink:
        from azure.storage.blob import ExponentialRetry  # noqa: PLC0415

        from rustyflower.adapters.azure.lifeboat import (  # noqa: PLC0415
            BlobLeaseStore,
            BlobReplicaStore,
            replica_container,
        )

        container = replica_container(
            self.azure_container,
            connection_string=self.azure_connection_string,
            account_url=self.azure_account_url,
            # a few quick retries: the replicator backs off on its own and keeps its
            # backlog (the SDK's default waits 15 s and more before each retry)
            retry_policy=ExponentialRetry(
                initial_backoff=1, increment_base=2, retry_total=2, random_jitter_range=1
            ),
            connection_timeout=5,
            read_timeout=15,
        )
        return CloudLink(BlobReplicaStore(container, self.site), BlobLeaseStore(container))


def build_agent(
    settings: LifeboatSettings,
    store: InstanceStore,
    *,
    feed: ReplicationFeed,
    keys: SnapshotKeys,
    options: AgentOptions,
    links: Mapping[str, CloudLink] | None = None,
    parallel: int = DEFAULT_PARALLEL,
    settle: float = DEFAULT_SETTLE,
    compact_every: float = DEFAULT_COMPACT_EVERY,
) -> SiteAgent:
    """The site's agent: a replicator to every target, the lease keeper of every cloud."""
    made = dict(links) if links is not None else settings.links()
    replicator = Replicator(
        feed,
        {name: link.replicas for name, link in made.items()},
        keys,
        parallel=parallel,
        settle=settle,
        compact_every=compact_every,
    )
    keeper = SiteLeaseKeeper(settings.site, made, store, keys, takeover_by=settings.takeover_by)
    return SiteAgent(settings.site, feed, replicator, keeper, options)
