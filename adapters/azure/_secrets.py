"""Keeping secrets out of messages: connection strings, SAS tokens and function keys."""

from __future__ import annotations

import re
from collections.abc import Iterable

_PATTERNS = (
    # connection string members
    re.compile(r"(?i)((?:AccountKey|SharedAccessSignature|SharedAccessKey)=)[^;\s'\"]+"),
    # SAS signature and function / system keys in query strings
    re.compile(r"(?i)([?&](?:sig|code)=)[^&\s'\"#]+"),
    # keys sent as headers, when a library echoes the request
    re.compile(r"(?i)(x-functions-key['\"]?\s*[:=]\s*['\"]?)[^'\"\s,}]+"),
)
_MASK = "***"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every known secret and every secret-looking member masked."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, _MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda match: match.group(1) + _MASK, text)
    return text


def redact_connection_string(connection_string: str) -> str:
    """The connection string with its account key / SAS masked, for messages."""
    return redact(connection_string)


def parse_connection_string(connection_string: str) -> dict[str, str]:
    """``Name=value;`` members (case-insensitive names, first ``=`` splits)."""
    members: dict[str, str] = {}
    for part in connection_string.split(";"):
        name, sep, value = part.partition("=")
        if sep and name.strip():
            members[name.strip().lower()] = value.strip()
    return members
