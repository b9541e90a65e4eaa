"""Reading environment-style settings (a mapping passed in, so this does no I/O).

The runner, the Function App and the Lambda functions read their ``RUSTYFLOWER_*``
settings with these, so a value means the same thing, and is refused the same way,
wherever it is set.
"""

from __future__ import annotations

from collections.abc import Mapping

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


class SettingsError(ValueError):
    """A setting has a value that cannot be used (the message names the setting)."""


def setting_text(environ: Mapping[str, str], name: str) -> str | None:
    """The setting without surrounding blanks; None when unset or blank."""
    return environ.get(name, "").strip() or None


def setting_switch(environ: Mapping[str, str], name: str) -> bool | None:
    """``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off``; None when unset."""
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return None
    if raw in TRUE_WORDS:
        return True
    if raw in FALSE_WORDS:
        return False
    raise SettingsError(f"{name} must be on or off (1/true/yes/on or 0/false/no/off), got {raw!r}")


def setting_whole_number(environ: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    """A whole number of at least ``minimum``; ``default`` when unset."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value
