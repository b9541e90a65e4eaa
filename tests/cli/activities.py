"""Activities for the CLI tests: used by in-thread workers and by `rustyflower dev/worker`.

``fragile`` fails while ``FAILING`` holds its name (an in-thread worker shares the module
with the test, which clears it before `rustyflower retry`) or while its input asks to.
"""

from __future__ import annotations

import time
from typing import Any

from rustyflower.core.activities import ActivityRegistry

registry = ActivityRegistry()

FAILING: set[str] = set()


class Boom(Exception):
    """The fragile activity's failure."""


@registry.activity
def greet(payload: Any) -> dict[str, Any]:
    name = payload.get("name", "world") if isinstance(payload, dict) else "world"
    return {"greeting": f"hello {name}"}


@registry.activity
def fragile(payload: Any) -> dict[str, Any]:
    if "fragile" in FAILING or (isinstance(payload, dict) and payload.get("fail")):
        raise Boom("it broke")
    return {"fixed": True}


@registry.activity
def nap(payload: Any) -> dict[str, Any]:
    time.sleep(float(payload.get("seconds", 0.2)) if isinstance(payload, dict) else 0.2)
    return {"slept": True}
