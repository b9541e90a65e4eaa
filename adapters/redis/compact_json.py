"""Compact JSON for the commit script's arguments, from encoders made once.

``json.dumps`` with any non-default option (``separators``, ``default``) builds a new
``JSONEncoder`` on every call; a commit encodes some ten small documents (history entries,
events, step-log entries, work messages), so a shared encoder saves about 1 us each. The
text is the same as ``json.dumps(value, separators=(",", ":"))`` (with ``default=str``
for ``lenient``). An encoder holds no state between calls: threads may share one.
"""

from __future__ import annotations

import json

compact = json.JSONEncoder(separators=(",", ":")).encode
"""``json.dumps(value, separators=(",", ":"))``."""

lenient = json.JSONEncoder(separators=(",", ":"), default=str).encode
"""``json.dumps(value, separators=(",", ":"), default=str)``: what JSON cannot hold
(a datetime in an entry's detail) is written as its text."""
