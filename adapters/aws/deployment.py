"""What the site and the deployed AWS side agree on: names, keys and layouts.

The Lambda functions (``lambda_aws``), the Terraform (``infra/terraform/aws``) and the
site's continuity commands (``adapters/continuity``) all read these, so they live with
the AWS adapter rather than in a deployable. Nothing here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from rustyflower.core.model import FlowDefinition, version_key

# --- environment variables the site reads too ------------------------------------------------

ENV_TOKENS_TABLE = "RUSTYFLOWER_TOKENS_TABLE"
ENV_STATE_MACHINE_PREFIX = "RUSTYFLOWER_STATE_MACHINE_PREFIX"
"""ARN of the flow machines up to their name: ``arn:aws:states:R:A:stateMachine:rf-``."""
ENV_SNAPSHOT_BUCKET = "RUSTYFLOWER_SNAPSHOT_BUCKET"

ENV_REPLICA_BUCKET = "RUSTYFLOWER_REPLICA_BUCKET"
"""The S3 bucket of the lifeboat's replicas (``lifeboat/<site>/``, core.lifeboat.replica)."""
ENV_LEASE_TABLE = "RUSTYFLOWER_LEASE_TABLE"
"""The DynamoDB table of the site leases (partition key ``LEASE_PARTITION_KEY``)."""
LEASE_PARTITION_KEY = "site"

DEFAULT_TOKEN_TTL = 366 * 24 * 3600
"""A Standard execution lives at most a year; so does a task token."""

# --- the task-token table ------------------------------------------------------------------

TOKENS_PARTITION_KEY = "waiter"
"""``["<instance id>", "<event>"]`` (JSON): everything that may receive one signal."""
TOKENS_SORT_KEY = "rank"
"""``<since, UTC>#<order, 12 digits>#<wait id>``: the oldest waiter sorts first."""
TOKENS_TTL_ATTRIBUTE = "expires_at"

# --- S3 keys -------------------------------------------------------------------------------

CONTINUED_PREFIX = "continued/"
"""``continued/<execution name>/s<seq>.snapshot``: the snapshot an execution continued from."""
FAILBACK_PREFIX = "failback/"
"""``failback/<instance id>/<execution name>.snapshot``: snapshots read back from AWS."""


def base_snapshot_key(execution_name: str, seq: int) -> str:
    """Where the snapshot an execution continued from is kept in the snapshot bucket."""
    return f"{CONTINUED_PREFIX}{execution_name}/s{seq}.snapshot"


# --- state machines and executions ----------------------------------------------------------

MAX_STATE_MACHINE_NAME = 80
_MACHINE_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def state_machine_name(flow: str, version: str) -> str:
    """The name part of a flow's machine after the deployment's prefix: ``order-v1-2``.

    Terraform derives the same text from the ``flows`` key ``"order@1.2"`` with
    ``replace(replace(key, "@", "-v"), "/[^A-Za-z0-9_-]/", "-")``.
    """
    return _MACHINE_UNSAFE.sub("-", f"{flow}-v{version}")


def execution_arn(machine_arn: str, name: str) -> str:
    """``arn:aws:states:R:A:execution:<machine>:<name>`` of a machine's execution."""
    return machine_arn.replace(":stateMachine:", ":execution:", 1) + ":" + name


def flow_arns(
    definitions: Iterable[FlowDefinition], machine_arn: Callable[[FlowDefinition], str]
) -> dict[str, str]:
    """The compiler's ``flow_arns``: ``name@version`` of every definition, and ``name`` (a
    call without a version) for its highest version, each to ``machine_arn`` of it."""
    arns: dict[str, str] = {}
    highest: dict[str, FlowDefinition] = {}
    for definition in definitions:
        arns[f"{definition.name}@{definition.version}"] = machine_arn(definition)
        best = highest.get(definition.name)
        if best is None or version_key(definition.version) > version_key(best.version):
            highest[definition.name] = definition
    for name, definition in highest.items():
        arns[name] = machine_arn(definition)
    return arns
