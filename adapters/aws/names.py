"""ASL state names: the one naming scheme the compiler and the resume builder share.

User states keep their names at the flow's top level. Inside a parallel branch or a map
iterator the name carries the *copy prefix* of its branch, because ASL state names are
unique in the whole machine while the engine's are unique per branch:

* ``Fork[1]/Ship``: state ``Ship`` of branch 1 of parallel ``Fork``;
* ``Items[*]/Price``: state ``Price`` of map ``Items``' iterator (every item);
* ``Fork~r[1]/Ship``, ``Items~r[*]/Price``: the same states in the *resume copy* of
  ``Fork`` / ``Items`` (the copy a continuation runs, see docs/aws.md).

States the compiler adds carry a role after ``~`` (``Charge~resume``, ``Charge~out``), or
start with ``RF:`` at the top level. ``~``, ``[``, ``]``, ``/`` and ``:`` never occur in a
user's state name, so these names never clash with the user's. A name longer than ASL's
80 characters is cut and ends with ``#`` and a hash of the full name.
"""

from __future__ import annotations

import hashlib

MAX_STATE_NAME = 80
ROLE_SEPARATOR = "~"
ROUTE_DONE = "rf:done"
"""Route of a parallel branch or map item that the snapshot already finished."""
ROUTE_START = "rf:start"
"""Route of a map item that the snapshot had not started yet."""


def asl_name(text: str) -> str:
    """``text`` when it fits in 80 characters, else a cut with a hash suffix."""
    if len(text) <= MAX_STATE_NAME:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return text[: MAX_STATE_NAME - 13] + "#" + digest


def state_name(copy: str, state: str, role: str | None = None) -> str:
    """The ASL name of user state ``state`` (or of its helper ``role``) in branch copy ``copy``."""
    return asl_name(copy + state + (f"{ROLE_SEPARATOR}{role}" if role else ""))


def branch_helper(copy: str, role: str) -> str:
    """A state the compiler adds to branch copy ``copy`` itself (``Fork~r[0]/~route``)."""
    return asl_name(f"{copy}{ROLE_SEPARATOR}{role}")


def helper_of(base: str, role: str) -> str:
    """A state the compiler adds next to compiled state ``base`` (``Charge~resume~retry0``)."""
    return asl_name(f"{base}{ROLE_SEPARATOR}{role}")


def user_state_of(segment: str) -> str:
    """The user state a compiled name's last segment belongs to (``Charge~out`` -> ``Charge``)."""
    return segment.partition(ROLE_SEPARATOR)[0]


def branch_copy(copy: str, owner: str, index: int, *, resumed: bool) -> str:
    return f"{copy}{owner}{'~r' if resumed else ''}[{index}]/"


def iterator_copy(copy: str, owner: str, *, resumed: bool) -> str:
    return f"{copy}{owner}{'~r' if resumed else ''}[*]/"


def resume_route(copy: str, state: str) -> str:
    """Route of a token that waits at ``state`` (a call, a wait, a child, a join)."""
    return state_name(copy, state, "resume")


def delay_route(copy: str, state: str) -> str:
    """Route of a token whose state waits for its next retry."""
    return state_name(copy, state, "delay")
