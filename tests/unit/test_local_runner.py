"""The in-process runner (``rustyflower run``): it reports what the other runtimes report."""

from __future__ import annotations

from rustyflower.adapters.local.runner import LocalRunner
from rustyflower.core.activities import ActivityRegistry
from rustyflower.core.model import parse_definition


def test_an_unknown_sub_flow_fails_the_call_with_unknown_flow_as_on_every_runtime() -> None:
    # the Redis worker and the Azure orchestrator name it UnknownFlow (core.contract)
    parent = parse_definition(
        {
            "name": "parent",
            "start_at": "Call",
            "states": {
                "Call": {
                    "type": "sub_flow",
                    "flow": "missing",
                    "catch": [{"errors": ["UnknownFlow"], "next": "Seen", "result_path": "$.e"}],
                    "end": True,
                },
                "Seen": {"type": "pass", "output_path": "$.e.Error", "end": True},
            },
        }
    )
    finished = LocalRunner(ActivityRegistry()).run(parent, {}, "p-1")
    assert (finished.status, finished.state.output) == ("succeeded", "UnknownFlow")
