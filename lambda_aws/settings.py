"""Names the Lambda functions are wired with: handlers, environment variables, table keys.

What the site shares with the functions (the token table's keys, S3 prefixes, machine
names, the variables the site reads too) is in ``adapters.aws.deployment``.

The Terraform in ``infra/terraform/aws`` and its contract tests read these names; the code
reads the values through :class:`LambdaSettings`, built from the process environment (or
any mapping, in tests). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rustyflower.adapters.aws.deployment import (
    DEFAULT_TOKEN_TTL,
    ENV_LEASE_TABLE,
    ENV_REPLICA_BUCKET,
    ENV_SNAPSHOT_BUCKET,
    ENV_STATE_MACHINE_PREFIX,
    ENV_TOKENS_TABLE,
    state_machine_name,
)
from rustyflower.core.settings import (
    SettingsError,
    setting_switch,
    setting_text,
    setting_whole_number,
)
from rustyflower.core.snapshot import keys as snapshot_keys

# --- handlers (the ``handler`` of each aws_lambda_function) -------------------------------

ACTIVITY_HANDLER = "lambda_aws.activity.handler"
TOKENS_HANDLER = "lambda_aws.tokens.handler"
CONTINUE_HANDLER = "lambda_aws.continuation.handler"
FAILBACK_HANDLER = "lambda_aws.failback.handler"
WATCHDOG_HANDLER = "lambda_aws.watchdog.handler"
TRIGGERS_HANDLER = "lambda_aws.triggers.handler"

HANDLERS: dict[str, str] = {
    "activity": ACTIVITY_HANDLER,
    "tokens": TOKENS_HANDLER,
    "continue": CONTINUE_HANDLER,
    "failback": FAILBACK_HANDLER,
    "watchdog": WATCHDOG_HANDLER,
    "triggers": TRIGGERS_HANDLER,
}
"""Terraform's function key -> handler path."""

# --- environment -----------------------------------------------------------------------------

ENV_ACTIVITIES = "RUSTYFLOWER_ACTIVITIES"
"""``module`` (its ``registry``) or ``module:attribute`` of the ActivityRegistry to run."""
ENV_IDEMPOTENCY_TABLE = "RUSTYFLOWER_IDEMPOTENCY_TABLE"
ENV_IDEMPOTENCY = "RUSTYFLOWER_IDEMPOTENCY"
"""``on`` or ``off``; default: on when the idempotency table is set."""
ENV_IDEMPOTENCY_TTL = "RUSTYFLOWER_IDEMPOTENCY_TTL_SECONDS"
ENV_TOKEN_TTL = "RUSTYFLOWER_TOKEN_TTL_SECONDS"
ENV_TRIGGERS = "RUSTYFLOWER_TRIGGERS"
"""The deployed triggers (JSON), as adapters.aws.triggers reads them."""
ENV_KEYS_SECRET = "RUSTYFLOWER_KEYS_SECRET"
"""Secrets Manager secret (ARN or name) holding the snapshot key settings as JSON."""
ENV_SITE_ID = "RUSTYFLOWER_SITE_ID"
"""The site the watchdog watches (its lease and replicas are named after it)."""
ENV_TAKEOVER_AFTER = "RUSTYFLOWER_TAKEOVER_AFTER_SECONDS"
"""Seconds without a lease renewal after which the watchdog takes the site over."""
ENV_SIGNING_KEYS = snapshot_keys.ENV_SIGNING_KEYS
ENV_ENCRYPTION_KEYS = snapshot_keys.ENV_ENCRYPTION_KEYS
ENV_REQUIRE_SIGNATURE = snapshot_keys.ENV_REQUIRE_SIGNATURE

KEY_SETTINGS: tuple[str, ...] = (ENV_SIGNING_KEYS, ENV_ENCRYPTION_KEYS, ENV_REQUIRE_SIGNATURE)
"""What the keys secret may hold (a JSON object of these names)."""

FUNCTION_ENV: dict[str, tuple[str, ...]] = {
    "activity": (ENV_ACTIVITIES, ENV_IDEMPOTENCY_TABLE, ENV_IDEMPOTENCY, ENV_IDEMPOTENCY_TTL),
    "tokens": (ENV_TOKENS_TABLE, ENV_TOKEN_TTL),
    "continue": (
        ENV_STATE_MACHINE_PREFIX,
        ENV_SNAPSHOT_BUCKET,
        ENV_KEYS_SECRET,
        ENV_REQUIRE_SIGNATURE,
    ),
    "failback": (
        ENV_STATE_MACHINE_PREFIX,
        ENV_SNAPSHOT_BUCKET,
        ENV_KEYS_SECRET,
        ENV_REQUIRE_SIGNATURE,
    ),
    "watchdog": (
        ENV_SITE_ID,
        ENV_TAKEOVER_AFTER,
        ENV_REPLICA_BUCKET,
        ENV_LEASE_TABLE,
        ENV_STATE_MACHINE_PREFIX,
        ENV_SNAPSHOT_BUCKET,
        ENV_KEYS_SECRET,
        ENV_REQUIRE_SIGNATURE,
    ),
    "triggers": (
        ENV_TRIGGERS,
        ENV_IDEMPOTENCY_TABLE,
        ENV_IDEMPOTENCY_TTL,
        ENV_TOKENS_TABLE,
        ENV_TOKEN_TTL,
    ),
}
"""The RustyFlower settings each function reads (Terraform sets exactly these)."""

DEFAULT_ACTIVITIES = "lambda_aws.activities"
DEFAULT_TAKEOVER_AFTER = 300
DEFAULT_IDEMPOTENCY_TTL = 7 * 24 * 3600
"""A week: long enough for a failover, a failback and a second failover of one call."""

SERVICE = "rustyflower"
METRICS_NAMESPACE = "RustyFlower"

# --- DynamoDB tables ------------------------------------------------------------------------

IDEMPOTENCY_KEY_ATTRIBUTE = "id"
IDEMPOTENCY_TTL_ATTRIBUTE = "expiration"
IDEMPOTENCY_KEY_PREFIX = "rustyflower.activity"
"""Records are keyed ``rustyflower.activity#<hash of the call's idempotency key>``, the
same whatever the function's name or version."""


# --- placeholders in ASL exported for Terraform ---------------------------------------------

ASL_ACTIVITY_ARN = "${activity_function_arn}"
ASL_TOKEN_ARN = "${token_function_arn}"
ASL_STATE_MACHINE_PREFIX = "${state_machine_arn_prefix}"
ASL_SERVICE_QUEUE_URL_BASE = "${service_queue_url_base}"
ASL_SERVICE_PREFIX = "${service_prefix}"
"""Terraform replaces these three literal texts in each compiled ASL file (no other
template processing happens, so user data in the ASL is never interpreted)."""


@dataclass(frozen=True)
class LambdaSettings:
    """The RustyFlower settings of the Lambda functions (secrets stay out of it)."""

    activities: str = DEFAULT_ACTIVITIES
    idempotency_table: str | None = None
    idempotency: bool = False
    idempotency_ttl: int = DEFAULT_IDEMPOTENCY_TTL
    tokens_table: str | None = None
    token_ttl: int = DEFAULT_TOKEN_TTL
    state_machine_prefix: str | None = None
    snapshot_bucket: str | None = None
    keys_secret: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> LambdaSettings:
        table = setting_text(environ, ENV_IDEMPOTENCY_TABLE)
        switch = setting_switch(environ, ENV_IDEMPOTENCY)
        if switch and table is None:
            raise SettingsError(f"{ENV_IDEMPOTENCY}=on needs {ENV_IDEMPOTENCY_TABLE}")
        return cls(
            activities=setting_text(environ, ENV_ACTIVITIES) or DEFAULT_ACTIVITIES,
            idempotency_table=table,
            idempotency=table is not None if switch is None else switch,
            idempotency_ttl=setting_whole_number(
                environ, ENV_IDEMPOTENCY_TTL, DEFAULT_IDEMPOTENCY_TTL, 60
            ),
            tokens_table=setting_text(environ, ENV_TOKENS_TABLE),
            token_ttl=setting_whole_number(environ, ENV_TOKEN_TTL, DEFAULT_TOKEN_TTL, 60),
            state_machine_prefix=setting_text(environ, ENV_STATE_MACHINE_PREFIX),
            snapshot_bucket=setting_text(environ, ENV_SNAPSHOT_BUCKET),
            keys_secret=setting_text(environ, ENV_KEYS_SECRET),
        )

    def require(self, value: str | None, name: str) -> str:
        """``value``, or a SettingsError naming the unset variable ``name``."""
        if not value:
            raise SettingsError(f"{name} is not set")
        return value

    def state_machine_arn(self, flow: str, version: str) -> str:
        """The ARN of the machine compiled from ``flow`` version ``version``."""
        prefix = self.require(self.state_machine_prefix, ENV_STATE_MACHINE_PREFIX)
        return prefix + state_machine_name(flow, version)
