"""What the app tells Application Insights about flows: one record per event, named after
the flow and the states.

Each record is a log line ``rustyflower.event {json}`` from the logger
``rustyflower.telemetry`` (the Functions host sends it to Application Insights' traces):
``{"event": ..., "flow": ..., "version": ..., "instance": ..., ...}`` with events

* ``FlowTransition`` (the orchestrator, once, not on replays): ``seq``, ``status`` and
  the ``states`` the instance stands at;
* ``FlowFinished``: ``status``, ``error``;
* ``ActivityCompleted`` / ``ActivityFailed`` (the activity function): ``state``,
  ``activity``, ``attempt``, ``error``.

The workbook of infra/bicep (modules/monitoring.bicep) reads them back with
``parse_json``: a table and charts per flow and state.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Final

PREFIX: Final = "rustyflower.event "
log = logging.getLogger("rustyflower.telemetry")


def emit(event: str, **fields: Any) -> str:
    """Log one telemetry record; the line (for tests)."""
    line = PREFIX + json.dumps({"event": event, **fields}, separators=(",", ":"), default=str)
    log.info(line)
    return line


def state_of(position: str) -> str:
    """The user state of a position (``Fork[0]/Ship`` -> ``Ship``)."""
    return position.rpartition("/")[2]
