"""The drill's cloud when it is AWS: ``LocalAws`` (moto, the flows' machines, the real
Lambda handlers) in this process, the lifeboat's lease table and replica bucket beside
it, and the watchdog Lambda run as its schedule runs it (by its handler name)."""

from __future__ import annotations

import os
from typing import Any

from rustyflower.adapters.aws.deployment import ENV_LEASE_TABLE, ENV_REPLICA_BUCKET
from rustyflower.adapters.aws.lifeboat import S3ReplicaStore
from rustyflower.adapters.continuity.aws import AwsContinuity, AwsSettings, signal_aws
from rustyflower.adapters.continuity.lifeboat_setup import ENV_SITE_ID, LifeboatSettings
from rustyflower.adapters.localcloud.aws import LocalAws
from rustyflower.adapters.localcloud.lambdas import FunctionContext, load_handler
from rustyflower.core.activities import ActivityRegistry
from rustyflower.core.instance_store import InstanceStore
from rustyflower.core.lifeboat.replica import Replica
from rustyflower.core.lifeboat.takeover import TakeoverReport
from rustyflower.core.model import FlowDefinition
from rustyflower.core.snapshot.keys import ENV_SIGNING_KEYS

__all__ = ["WATCHDOG_HANDLER", "DrillAws"]

WATCHDOG_HANDLER = "lambda_aws.watchdog.handler"
"""The watchdog function's handler name (infra/terraform/aws's)."""
LEASE_TABLE = "rustyflower-lifeboat-leases"
REPLICA_BUCKET = "rustyflower-replicas"


class DrillAws:
    cloud = "aws"

    def __init__(
        self, registry: ActivityRegistry, site: str, key_setting: str, threshold: int
    ) -> None:
        # moto takes any credentials; boto3 wants some (the site's clients read the env)
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            os.environ.setdefault(name, "testing")
        self.local = LocalAws(registry, port=0)
        self.site = site
        self.key_setting = key_setting
        self.threshold = threshold
        self._watchdog: Any = None

    def start(self, definitions: tuple[FlowDefinition, ...]) -> None:
        self.local.start()
        self.local.deploy(definitions)
        dynamodb = self.local.client("dynamodb")
        dynamodb.create_table(
            TableName=LEASE_TABLE,
            KeySchema=[{"AttributeName": "site", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "site", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        self.local.client("s3").create_bucket(Bucket=REPLICA_BUCKET)
        # the watchdog function's settings, as Terraform sets them; its handler and the
        # site's agent read them (and the endpoint LocalAws set) from this process's env
        os.environ.update(
            {
                ENV_SITE_ID: self.site,
                ENV_REPLICA_BUCKET: REPLICA_BUCKET,
                ENV_LEASE_TABLE: LEASE_TABLE,
                "RUSTYFLOWER_TAKEOVER_AFTER_SECONDS": str(self.threshold),
                ENV_SIGNING_KEYS: self.key_setting,
            }
        )
        self._watchdog = load_handler(WATCHDOG_HANDLER)

    def lifeboat(self) -> LifeboatSettings:
        return LifeboatSettings.from_env(os.environ, to="aws", site=self.site)

    def watchdog(self) -> TakeoverReport | None:
        """One scheduled run of the watchdog function; the report its takeover wrote,
        None when it did not take over."""
        name = f"{self.local.names.prefix}-watchdog"
        context = FunctionContext(
            function_name=name, invoked_function_arn=self.local.names.function_arn("watchdog")
        )
        answer: dict[str, Any] = self._watchdog({}, context)
        if not answer.get("takeover"):
            return None
        key = f"lifeboat/{self.site}/takeovers/{answer['takeover']['id']}.json"
        body = self.local.client("s3").get_object(Bucket=REPLICA_BUCKET, Key=key)["Body"].read()
        return TakeoverReport.decode(body)

    def replica(self, instance_id: str) -> Replica | None:
        return S3ReplicaStore(self.local.client("s3"), REPLICA_BUCKET, self.site).read(instance_id)

    def settings(self) -> AwsSettings:
        return AwsSettings.from_env(self.local.site_environment())

    def signal(self, instance_id: str, event: str, data: Any) -> bool:
        """Deliver ``event`` to the instance's waiter in Step Functions; False when none
        waits yet (the execution has not reached its event wait)."""
        try:
            signal_aws(instance_id, event, data, self.settings())
        except Exception:
            return False
        return True

    def continuity(self, store: InstanceStore) -> AwsContinuity:
        return AwsContinuity(store, self.settings())

    def stop(self) -> None:
        self.local.stop()

    def running(self) -> int:
        """Executions still running in Step Functions."""
        stepfunctions = self.local.client("stepfunctions")
        return sum(
            len(
                stepfunctions.list_executions(stateMachineArn=arn, statusFilter="RUNNING")[
                    "executions"
                ]
            )
            for arn in self.local.deployed.values()
        )
