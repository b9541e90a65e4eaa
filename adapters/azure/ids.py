"""Flow instance ids as Durable instance ids.

A Durable instance id is 1 to 100 characters, must not start with ``@`` and must not hold
``/ \\ # ?`` or control characters. A flow instance id is 1 to 256 characters without
control characters (``core.ids``), and a child flow's id is ``parent/call-id`` (with
``/``). So:

* an id Durable accepts is used as it is: the orchestration of instance ``order-42`` is
  the Durable instance ``order-42``, which makes a repeated failover idempotent;
* any other id is mapped to ``<readable prefix>~h<32 hex of its SHA-256>``: stable (a
  re-issued child flow attaches to the same orchestration) and without collisions in
  practice. The flow id itself is kept in the orchestration's input and custom status.
"""

from __future__ import annotations

import hashlib
import re

MAX_DURABLE_ID = 100
_FORBIDDEN = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")
_PREFIX = 60


def is_durable_id(value: str) -> bool:
    """Whether Durable Functions accepts ``value`` as an instance id as it is."""
    return (
        0 < len(value) <= MAX_DURABLE_ID
        and not value.startswith("@")
        and _FORBIDDEN.search(value) is None
    )


def durable_instance_id(flow_instance_id: str) -> str:
    """The Durable instance id of a flow instance (itself when Durable accepts it)."""
    if is_durable_id(flow_instance_id):
        return flow_instance_id
    readable = _FORBIDDEN.sub("_", flow_instance_id)[:_PREFIX].lstrip("@")
    digest = hashlib.sha256(flow_instance_id.encode("utf-8")).hexdigest()[:32]
    return f"{readable}~h{digest}"
