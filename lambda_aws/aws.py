"""boto3 in one place: clients (created once per process) and the error helpers.

boto3 ships no type information; everything here is typed ``Any`` on purpose, and the
rest of lambda_aws takes clients as arguments, so tests pass moto-backed ones.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

import boto3  # type: ignore[import-untyped, unused-ignore]

from lambda_aws.settings import KEY_SETTINGS
from rustyflower.adapters.aws.client_errors import ClientError, error_code
from rustyflower.core.settings import SettingsError

__all__ = ["ClientError", "client", "error_code", "key_environment"]


@functools.cache
def client(service: str) -> Any:
    """The process's boto3 client for ``service`` (region and credentials from Lambda)."""
    return boto3.client(service)


def key_environment(
    environ: Mapping[str, str], secret_id: str | None, secrets: Any = None
) -> dict[str, str]:
    """``environ`` with the snapshot key settings of the keys secret laid over it.

    The secret's value is a JSON object with any of ``RUSTYFLOWER_SIGNING_KEYS``,
    ``RUSTYFLOWER_ENCRYPTION_KEYS``, ``RUSTYFLOWER_REQUIRE_SIGNATURE``; then
    ``SnapshotKeys.from_env`` reads the merged mapping as it reads any environment.
    """
    merged = dict(environ)
    if not secret_id:
        return merged
    answer = (secrets or client("secretsmanager")).get_secret_value(SecretId=secret_id)
    try:
        document = json.loads(answer.get("SecretString") or "")
    except ValueError:
        document = None
    if not isinstance(document, dict) or not all(
        name in KEY_SETTINGS and isinstance(value, str) for name, value in document.items()
    ):
        # never echo the value: it is a secret
        raise SettingsError(
            f"the keys secret must be a JSON object of text values named among {KEY_SETTINGS}"
        )
    merged.update(document)
    return merged
