"""Upgrading snapshot documents written in an older format.

``MIGRATIONS[n]`` turns a format ``n`` document into a format ``n + 1`` document;
``migrate`` chains the steps up to ``CURRENT_FORMAT``. A format is readable when it is
``CURRENT_FORMAT`` or when an unbroken chain of steps leads from it to the current one.

Format 1 is the first format, so the registry starts empty. Introducing format 2 is:

1. set ``CURRENT_FORMAT = 2`` below (``seal`` then writes format 2);
2. register the step that upgrades a format 1 document, next to this module's code::

       @register_migration(1)
       def _format_1_to_2(document: dict[str, Any]) -> dict[str, Any]:
           state = document["state"]
           state["tokens"] = state.pop("positions")  # whatever changed
           return document

3. add a test that opens a stored format 1 snapshot.

A step receives the whole document after its signature was verified and its state was
decrypted (``"state"`` is always in clear), may change it in place, and returns it.
It need not set ``"format"``: ``migrate`` does that after each step. The header is
still checked, and the definition digest compared, after the last step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rustyflower.core.errors import UnsupportedFormatError

CURRENT_FORMAT = 1
"""The format this release writes. Kept here, with the steps that lead to it."""

Migration = Callable[[dict[str, Any]], dict[str, Any]]

MIGRATIONS: dict[int, Migration] = {}


def register_migration(from_format: int) -> Callable[[Migration], Migration]:
    """Decorator registering the step from ``from_format`` to ``from_format + 1``."""
    if isinstance(from_format, bool) or not isinstance(from_format, int):
        raise TypeError(f"from_format must be an int, got {from_format!r}")

    def decorator(step: Migration) -> Migration:
        if from_format in MIGRATIONS:
            raise ValueError(f"a migration from format {from_format} is already registered")
        MIGRATIONS[from_format] = step
        return step

    return decorator


def supported_formats() -> list[int]:
    """Formats this release reads, in increasing order."""
    formats = [CURRENT_FORMAT]
    candidate = CURRENT_FORMAT - 1
    while candidate in MIGRATIONS:
        formats.insert(0, candidate)
        candidate -= 1
    return formats


def describe_supported() -> str:
    """Human text such as ``"format 1"`` or ``"formats 0 to 2"``."""
    formats = supported_formats()
    if len(formats) == 1:
        return f"format {formats[0]}"
    return f"formats {formats[0]} to {formats[-1]}"


def check_format(fmt: int) -> None:
    """Raise ``UnsupportedFormatError`` unless ``fmt`` can be read by this release."""
    if fmt == CURRENT_FORMAT:
        return
    if fmt > CURRENT_FORMAT:
        raise UnsupportedFormatError(
            f"snapshot format {fmt} was written by a newer RustyFlower; "
            f"this release reads {describe_supported()}"
        )
    if fmt not in supported_formats():
        raise UnsupportedFormatError(
            f"snapshot format {fmt} is too old: this release has no migration from it "
            f"and reads {describe_supported()}"
        )


def migrate(document: dict[str, Any]) -> dict[str, Any]:
    """Upgrade ``document`` step by step to ``CURRENT_FORMAT`` and return it.

    The document is changed in place by the steps (pass a copy to keep the original).
    Raises ``UnsupportedFormatError`` when a step is missing or the format is newer.
    """
    fmt = document.get("format")
    if isinstance(fmt, bool) or not isinstance(fmt, int):
        raise UnsupportedFormatError(f"snapshot format must be an integer, got {fmt!r}")
    check_format(fmt)
    while fmt < CURRENT_FORMAT:
        step = MIGRATIONS.get(fmt)
        if step is None:  # only if the registry changed since check_format
            raise UnsupportedFormatError(f"no migration from snapshot format {fmt}")
        document = step(document)
        fmt += 1
        document["format"] = fmt
    return document
