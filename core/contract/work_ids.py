"""The engine's work ids: how pending work is named, and how a name is read back.

Every call, event wait and timer the engine issues has an id made of the position of
its token, ``~``, and the instance's issue number, which counts up across the instance
(``Charge~7``, ``Fork[0]/Ship~12``); a timer adds ``:`` and its purpose
(``Charge~8:task_timeout``; the flow's own deadline stands at position ``flow``). State
names never contain ``~`` or ``:`` (core.model.common.STATE_NAME_PATTERN), so the id
parses back unambiguously. A runtime that re-issues work from a snapshot (the compiled
Step Functions machine does, by payload) builds the same ids with :func:`format_work_id`, with
a tag of its own in place of the number when the engine did not issue the work.

A child flow's instance id is its parent's id, ``/`` and either the position and attempt
of the sub_flow call (``order-1/Fork[0]/Ship@2``: a state entered once per scope, named
alike by every runtime) or the call's work id (``order-1/Fork[0]/Ship~12``: a state that
can be entered again, and the form of every child id before positional ids): see
:func:`child_instance_id`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

NUMBER_SEPARATOR: Final = "~"
PURPOSE_SEPARATOR: Final = ":"
CHILD_ATTEMPT_SEPARATOR: Final = "@"
"""Between a positional child id's position and its attempt (``parent/Charge@2``)."""
FLOW_TIMER_POSITION: Final = "flow"
"""The position in the id of a timer of the flow itself (its deadline)."""


class Purpose:
    """What pending work is for (``Pending.purpose``; a timer's ``StartTimer.purpose``)."""

    TASK: Final = "task"
    EVENT: Final = "event"
    CHILD: Final = "child"
    RETRY: Final = "retry"
    WAIT: Final = "wait"
    TASK_TIMEOUT: Final = "task_timeout"
    CHILD_TIMEOUT: Final = "child_timeout"
    EVENT_TIMEOUT: Final = "event_timeout"
    FLOW_TIMEOUT: Final = "flow_timeout"


TIMER_PURPOSES: Final = frozenset(
    {
        Purpose.RETRY,
        Purpose.WAIT,
        Purpose.TASK_TIMEOUT,
        Purpose.CHILD_TIMEOUT,
        Purpose.EVENT_TIMEOUT,
        Purpose.FLOW_TIMEOUT,
    }
)


@dataclass(frozen=True, slots=True)
class WorkId:
    """A work id read back: ``position~tag`` or ``position~tag:purpose``."""

    position: str
    tag: str
    purpose: str | None = None

    @property
    def number(self) -> int | None:
        """The engine's issue number, or None for a tag another runtime made up."""
        return int(self.tag) if self.tag.isascii() and self.tag.isdigit() else None


def format_work_id(position: str, tag: int | str) -> str:
    """The id of a call or event wait at ``position`` (``tag``: the issue number)."""
    return f"{position}{NUMBER_SEPARATOR}{tag}"


def format_timer_id(position: str, number: int, purpose: str) -> str:
    """The id of a timer; ``position`` is ``""`` for a timer of the flow itself."""
    return f"{format_work_id(position or FLOW_TIMER_POSITION, number)}{PURPOSE_SEPARATOR}{purpose}"


def parse_work_id(text: str) -> WorkId:
    """The parts of a work id; ValueError when ``text`` is not one."""
    position, separator, rest = text.rpartition(NUMBER_SEPARATOR)
    if not separator or not position or not rest:
        raise ValueError(f"{text!r} is not a work id (position~number[:purpose])")
    tag, has_purpose, purpose = rest.partition(PURPOSE_SEPARATOR)
    if not tag or (has_purpose and not purpose):
        raise ValueError(f"{text!r} is not a work id (position~number[:purpose])")
    return WorkId(position, tag, purpose if has_purpose else None)


def work_number(text: str) -> int | None:
    """The issue number in a work id, or None when ``text`` carries none."""
    try:
        return parse_work_id(text).number
    except ValueError:
        return None


def idempotency_key(instance_id: str, position: str, attempt: int, tag: int | str | None) -> str:
    """The key an activity call carries: the same call made again anywhere has the same key.

    ``tag`` is None for a state that is entered only once per scope: its position and
    attempt name the call on every runtime, so a call the site made and the cloud makes
    again after a failover (from a snapshot taken before the call) carries the same key.
    A state on a loop is entered again with the same position; its calls add the tag (the
    engine's call number) to tell the visits apart.
    """
    if tag is None:
        return f"{instance_id}:{position}:{attempt}"
    return f"{instance_id}:{position}:{attempt}:{tag}"


def child_instance_id(instance_id: str, position: str, attempt: int, call_id: str | None) -> str:
    """The id of the child flow a sub_flow call starts: stable, so a re-issue is idempotent.

    ``call_id`` is None for a state entered only once per scope (the rule of
    :func:`idempotency_key`): the child is ``instance/position@attempt``, the id every
    runtime gives it, so a child the site started before a failover and the cloud starts
    again (from a snapshot taken before the start) is the same child, and its calls carry
    the same keys. Each attempt of a retried sub_flow state starts a new child. A state
    that can be entered again names its child by the call's work id instead
    (``instance/position~n``), as every child was named before positional ids; snapshots
    keep the id their command carries.

    The two forms never collide: a position holds no ``~`` (and an attempt only digits), a
    work id always holds one. A position may hold ``@``; the attempt is the digits after
    the last one.
    """
    if call_id is None:
        return f"{instance_id}/{position}{CHILD_ATTEMPT_SEPARATOR}{attempt}"
    return f"{instance_id}/{call_id}"
