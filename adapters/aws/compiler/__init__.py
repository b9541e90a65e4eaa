"""Compile a :class:`FlowDefinition` to Amazon States Language (JSONPath mode).

One state machine serves fresh starts and continuations. Its execution input is
``{"rf": {...}, "input": <flow input>}`` (see :mod:`rustyflower.adapters.aws.resume`): ``rf.resume``
is ``null`` for a fresh start, or the *resume node* of a snapshot, and the machine starts
with a router that either enters the flow's start state with ``input`` or jumps to the
snapshot's positions. docs/aws.md describes the layout and every difference from the
engine; the short version:

* each user state compiles to a state of the same kind with its data-flow fields as they
  are (``InputPath``, ``Parameters``, ``ResultSelector``, ``ResultPath``, ``OutputPath``),
  plus small Pass states where ASL needs help (unwrapping a Lambda ``Payload``);
* inside a map iteration the engine's position holds the item's index, which ASL only
  knows in ``ItemSelector``: there the user's data travels as ``{"rf": {"scope": ...},
  "d": <data>}`` and the user's paths are moved under ``$.d``;
* every state that a snapshot can stand at (a task, a wait, an event wait, a sub-flow, a
  parallel or map join) also gets a *resume entry* (``X~resume``, ``X~delay``) that
  continues it from the snapshot's resume node (``$.rf.node``);
* a parallel or map state gets a *resume copy* of its branches, whose router skips the
  branches and items the snapshot finished and continues the others where they stood.

The compiler is one class put together from one module per concern (each a mixin over
:class:`~.base.CompilerBase`):

==================  ==============================================================
``layout``          the data layout, branch copies, structural helpers
``policies``        Retry/Catch documents and the Choice rule that matches errors
``base``            branches, transitions and the data-flow fields
``simple_states``   pass, choice, wait, succeed, fail
``call_states``     task, wait_for_event, sub_flow (fresh and resumed)
``join_states``     parallel and map (fresh)
``error_router``    a resume entry's hand-made retry loop; re-raising errors by name
``resume_entries``  routing to resume entries, and compiling them
``machine``         the router in front, the deadline race, ``compile_flow``
==================  ==============================================================
"""

from rustyflower.adapters.aws.compiler.layout import (
    DIGEST_MISMATCH,
    FINISHED,
    RESUME_FORMAT,
    RESUME_REJECTED,
    SUB_FLOW_FAILED,
    UNRAISABLE,
    resume_roles,
    retriers_of,
)
from rustyflower.adapters.aws.compiler.machine import (
    compile_flow,
    compile_to_json,
    iter_states,
    machine_comment,
)

__all__ = [
    "DIGEST_MISMATCH",
    "FINISHED",
    "RESUME_FORMAT",
    "RESUME_REJECTED",
    "SUB_FLOW_FAILED",
    "UNRAISABLE",
    "compile_flow",
    "compile_to_json",
    "iter_states",
    "machine_comment",
    "resume_roles",
    "retriers_of",
]
