"""Control events: what an operator (or the lifeboat) raises to a running instance.

On the Azure runtime an orchestration listens for these names next to the events its
``wait_for_event`` states wait for, and turns them into the engine's ``CancelRequested``,
``HoldRequested`` and ``ReleaseRequested``; a parent sends ``CANCEL`` to a child it no
longer waits for. The Redis runner and the local runner get the engine events directly.
"""

from __future__ import annotations

from typing import Final


class ControlEvent:
    """Reserved event names: raised to an instance, they cancel, hold or release it."""

    CANCEL: Final = "rustyflower.cancel"
    HOLD: Final = "rustyflower.hold"
    RELEASE: Final = "rustyflower.release"


CONTROL_EVENTS: Final = frozenset({ControlEvent.CANCEL, ControlEvent.HOLD, ControlEvent.RELEASE})

RESULT_KIND: Final = "rustyflower.result"
"""The ``kind`` of the value a finished orchestration returns (status, output, error,
cause): what a parent orchestration and the failback reader recognise it by."""
