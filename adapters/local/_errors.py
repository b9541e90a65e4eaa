"""The errors of the in-process runtime."""

from __future__ import annotations

from rustyflower.core.errors import RustyFlowerError


class HarnessError(RustyFlowerError, AssertionError):
    """The runtime could not carry out a run: a rejected event, an endless flow, a crash.

    An ``AssertionError`` too, so a test that meets one fails as a test failure rather
    than an error of the test's own code.
    """


class EndlessFlowError(HarnessError):
    """A run went past its world's ``max_events``: an endless loop?"""


class CallCrashedError(HarnessError):
    """An activity call raised something no runtime reports as a failure (SystemExit...)."""
