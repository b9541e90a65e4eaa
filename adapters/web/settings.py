"""How the API is configured: who may call it, how large a request may be, webhooks."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from rustyflower.core.errors import RustyFlowerError

TOKENS_VARIABLE = "RUSTYFLOWER_API_TOKENS"
MAX_BODY_BYTES = 1024 * 1024
"""A request body may hold this much (the flow definition limit; Step Functions takes
256 KiB of input)."""


class ApiSettingsError(RustyFlowerError):
    """The API cannot be served with these settings (no token for a public address...)."""


@dataclass(frozen=True)
class WebhookPolicy:
    """How deliveries are retried: ``first_delay`` seconds, times ``factor`` after each
    failure, at most ``max_delay``, ``max_attempts`` in all; ``timeout`` per attempt."""

    max_attempts: int = 8
    first_delay: float = 2.0
    factor: float = 4.0
    max_delay: float = 3600.0
    timeout: float = 10.0
    poll_seconds: float = 0.5
    """How often the dispatcher looks for finished instances and retries that are due."""

    def delay_after(self, attempt: int) -> float:
        """Seconds before the attempt after ``attempt`` (which failed)."""
        return float(min(self.max_delay, self.first_delay * self.factor ** (attempt - 1)))


@dataclass(frozen=True)
class ApiSettings:
    tokens: frozenset[str] = frozenset()
    """Bearer tokens that may call the API; empty: nobody needs one (only on loopback)."""
    max_body_bytes: int = MAX_BODY_BYTES
    webhooks: bool = True
    """Run the webhook dispatcher in this process."""
    webhook_policy: WebhookPolicy = field(default_factory=WebhookPolicy)

    @property
    def anonymous(self) -> bool:
        return not self.tokens

    def check_bind(self, host: str) -> None:
        """Refuse to serve without tokens anywhere but loopback."""
        if self.anonymous and not is_loopback(host):
            raise ApiSettingsError(
                f"the API on {host} needs bearer tokens ({TOKENS_VARIABLE}=token1,token2 "
                "or --token-file): without them it is served on loopback only"
            )


def tokens_from(environ: Mapping[str, str], text: str | None = None) -> frozenset[str]:
    """Tokens from ``text`` (a file's content: one a line, ``#`` comments) or the setting
    (comma-separated). A token is at least 16 characters: a short one is guessable."""
    raw = text if text is not None else environ.get(TOKENS_VARIABLE, "").replace(",", "\n")
    tokens = {
        line.strip()
        for line in raw.splitlines()
        if line.strip() and not line.strip().startswith("#")
    }
    short = [token for token in tokens if len(token) < 16]
    if short:
        raise ApiSettingsError(
            f"{len(short)} API token(s) shorter than 16 characters; use long random tokens "
            "(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return frozenset(tokens)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def environ_tokens() -> frozenset[str]:
    return tokens_from(os.environ)
