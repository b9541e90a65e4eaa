"""The in-process runtime (``rustyflower run``): it reports what the other runtimes report."""

from __future__ import annotations

import pytest

from rustyflower import ActivityRegistry
from rustyflower.core.model import parse_definition
from rustyflower.testing import Clock, RealClock, VirtualClock, World, run_flow


@pytest.mark.parametrize("clock", [RealClock, VirtualClock], ids=["real", "virtual"])
def test_an_unknown_sub_flow_fails_the_call_with_unknown_flow_as_on_every_runtime(
    clock: type[Clock],
) -> None:
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
    finished = run_flow(parent, {}, World(ActivityRegistry()), instance_id="p-1", clock=clock())
    assert (finished.status, finished.output) == ("succeeded", "UnknownFlow")
