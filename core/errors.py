"""Every error RustyFlower raises on bad input, in one hierarchy.

Callers (CLI, runners, cloud handlers) catch ``RustyFlowerError`` to print one clear
line; the subclasses let them react precisely (for example a runner ignores a
``StaleEventError`` for a timer that lost its race).
"""

from __future__ import annotations

from dataclasses import dataclass


class RustyFlowerError(Exception):
    """Base class of every error raised on purpose by RustyFlower."""


# --- flow definitions -------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a flow definition, located as a human reads it."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class DefinitionError(RustyFlowerError):
    """A flow definition is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: list[Problem], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        prefix = f"{source}: " if source else ""
        lines = "\n".join(f"  - {prefix}{problem}" for problem in problems)
        super().__init__(f"invalid flow definition ({len(problems)} problem(s)):\n{lines}")


class ExpressionError(RustyFlowerError, ValueError):
    """A path, template or condition is not valid syntax (raised while parsing)."""


class PathNotFoundError(RustyFlowerError):
    """A path selected nothing in the document at run time (ASL: States.Runtime)."""

    def __init__(self, path: str, detail: str = "") -> None:
        self.path = path
        super().__init__(f"path {path!r} selected nothing" + (f": {detail}" if detail else ""))


# --- schedules ------------------------------------------------------------------------


class InvalidScheduleError(RustyFlowerError, ValueError):
    """A schedule is not valid: its name, cron expression, time zone or options."""


# --- activities ---------------------------------------------------------------------------


class UnknownActivityError(RustyFlowerError, LookupError):
    """No activity is registered under the requested name."""

    def __init__(self, name: str, suggestions: list[str]) -> None:
        self.name = name
        self.suggestions = suggestions
        hint = f" (did you mean {', '.join(repr(s) for s in suggestions)}?)" if suggestions else ""
        super().__init__(f"unknown activity {name!r}{hint}")


# --- engine events --------------------------------------------------------------------


class EventRejectedError(RustyFlowerError):
    """An event does not apply to the instance; the snapshot is left unchanged."""


class UnknownCallError(EventRejectedError):
    """The event names a call, timer or wait that this instance never issued."""


class StaleEventError(EventRejectedError):
    """The event names a call that already finished (a duplicate or a lost race)."""


class NoWaiterError(EventRejectedError):
    """An external event arrived that no state of the instance is waiting for."""


class InstanceFinishedError(EventRejectedError):
    """The instance already finished; it takes no more events."""


class InvalidControlError(EventRejectedError):
    """A control event (hold, release, cancel, signal) makes no sense in this state."""


# --- snapshots ---------------------------------------------------------------------------


class SnapshotError(RustyFlowerError):
    """A snapshot could not be loaded."""


class MalformedSnapshotError(SnapshotError):
    """The bytes are not a snapshot (bad JSON, missing or ill-typed fields)."""


class UnsupportedFormatError(SnapshotError):
    """The snapshot's format version is unknown to this release."""


class DigestMismatchError(SnapshotError):
    """The embedded definition does not match the digest the snapshot claims."""


class SignatureMissingError(SnapshotError):
    """Signing is required but the snapshot carries no signature."""


class SignatureInvalidError(SnapshotError):
    """The signature does not verify: the snapshot was altered or signed with another key."""


class UnknownKeyError(SnapshotError):
    """The snapshot names a signing or encryption key id that is not configured."""


class DecryptionError(SnapshotError):
    """Encrypted snapshot data could not be decrypted (wrong key or altered ciphertext)."""


class EpochConflictError(SnapshotError):
    """An instance is owned by a newer epoch than the snapshot being applied."""


# --- stores -------------------------------------------------------------------------------


class UnknownFlowError(RustyFlowerError, LookupError):
    """No flow of that name (or version) is registered."""


class UnknownInstanceError(RustyFlowerError, LookupError):
    """No instance with that id is in the store."""
