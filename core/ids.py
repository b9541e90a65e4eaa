"""The rule every runtime applies to flow instance ids.

An instance id is 1 to 256 characters. Any Unicode character may appear except those
AWS Step Functions refuses in an execution name as unprintable (Step Functions API
Reference, StartExecution, ``name``): control characters (U+0000-U+001F,
U+007F-U+009F), the noncharacters U+FFFE and U+FFFF, and surrogates (U+D800-U+DFFF,
which are not text and cannot be stored as UTF-8). Runtimes rely on that: the Redis
runner joins an id and a timer id with U+001F, and a child flow's id is its parent's id,
``/`` and the call (state names exclude the same characters, ``core.model.common``).
Other characters Step Functions or Durable Functions refuse (``/``, spaces, ...) are
mapped by those adapters, so they stay allowed here.
"""

from __future__ import annotations

import re

from rustyflower.core.errors import RustyFlowerError

MAX_INSTANCE_ID = 256
CONTROL_CHARACTERS = r"\x00-\x1f\x7f-\x9f\ufffe\uffff"
"""The characters no id or state name may hold, as the inside of a regex class (surrogates
aside: pydantic's regex engine cannot name them, and it refuses them in any text anyway)."""
_UNPRINTABLE = re.compile(rf"[{CONTROL_CHARACTERS}\ud800-\udfff]")
_SHOWN = 40


class InvalidInstanceIdError(RustyFlowerError, ValueError):
    """An instance id breaks the rule above (also a ValueError, as it used to be)."""


def instance_id_problem(value: str) -> str | None:
    """What is wrong with ``value`` as an instance id (one line, never the whole of a
    huge id), or None when it is a valid id."""
    if not value:
        return "an instance id is 1 to 256 characters, not empty"
    if len(value) > MAX_INSTANCE_ID:
        shown = value[:_SHOWN].encode("unicode_escape", "backslashreplace").decode("ascii")
        return (
            f"instance id '{shown}...' is {len(value)} characters; "
            f"at most {MAX_INSTANCE_ID} are allowed"
        )
    found = _UNPRINTABLE.search(value)
    if found is not None:
        character = found.group()
        return (
            f"instance id {value!r} holds U+{ord(character):04X} at position "
            f"{found.start() + 1}: ids may not hold control characters, U+FFFE/U+FFFF "
            "or surrogates"
        )
    return None


def check_instance_id(value: str) -> str:
    """``value`` when it is a valid instance id; InvalidInstanceIdError otherwise."""
    problem = instance_id_problem(value)
    if problem is not None:
        raise InvalidInstanceIdError(problem)
    return value
