"""Packaging (function zip, dependency layer) and the ASL export for Terraform."""

from __future__ import annotations

import ast
import json
import re
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from lambda_aws import asl, package
from lambda_aws import settings as names
from rustyflower.core.model import load_definition

REPO = Path(__file__).resolve().parents[2]


def names_in(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()


def test_the_function_zip_holds_the_handlers_and_nothing_else(tmp_path: Path) -> None:
    out = package.build_function(tmp_path / "function.zip")
    entries = set(names_in(out))
    for handler in names.HANDLERS.values():
        module = handler.rpartition(".")[0]
        assert module.replace(".", "/") + ".py" in entries
    assert {
        "rustyflower/__init__.py",
        "rustyflower/core/__init__.py",
        "rustyflower/adapters/__init__.py",
        "rustyflower/adapters/aws/contract.py",
    } <= entries
    tops = {entry.split("/")[0] for entry in entries}
    assert tops == {"rustyflower", "lambda_aws"}
    others = ("rustyflower/adapters/redis", "rustyflower/adapters/azure", "rustyflower/client")
    assert not [e for e in entries if e.startswith(others)]
    assert not [e for e in entries if "__pycache__" in e or e.endswith(".pyc")]


def test_the_function_zip_is_reproducible(tmp_path: Path) -> None:
    first = package.build_function(tmp_path / "a.zip").read_bytes()
    second = package.build_function(tmp_path / "b.zip").read_bytes()
    assert first == second
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_extra_packages_go_in_with_their_parents(tmp_path: Path) -> None:
    out = package.build_function(tmp_path / "f.zip", ["examples/order"])
    entries = set(names_in(out))
    assert {"examples/__init__.py", "examples/order/__init__.py"} <= entries
    assert "examples/order/activities.py" in entries
    with pytest.raises(FileNotFoundError, match="no such package"):
        package.build_function(tmp_path / "g.zip", ["examples/nothing"])


def test_the_layer_is_pip_for_the_lambda_platform_under_python(tmp_path: Path) -> None:
    commands: list[Sequence[str]] = []

    def fake_pip(command: Sequence[str]) -> None:
        commands.append(command)
        target = Path(command[command.index("--target") + 1])
        (target / "pydantic").mkdir()
        (target / "pydantic" / "__init__.py").write_text("")
        (target / "pydantic" / "__pycache__").mkdir()
        (target / "pydantic" / "__pycache__" / "x.pyc").write_bytes(b"")

    out = package.build_layer(tmp_path / "layer.zip", arch="x86_64", python="3.12", run=fake_pip)
    assert names_in(out) == ["python/pydantic/__init__.py"]
    (command,) = commands
    assert command[:4] == [sys.executable, "-m", "pip", "install"]
    assert command[command.index("--platform") + 1] == "manylinux2014_x86_64"
    assert command[command.index("--python-version") + 1] == "3.12"
    assert "--only-binary=:all:" in command
    assert command[command.index("--requirement") + 1] == str(package.REQUIREMENTS)
    arm = package.layer_command(tmp_path, "arm64", "3.12")
    assert arm[arm.index("--platform") + 1] == "manylinux2014_aarch64"
    with pytest.raises(ValueError, match="--arch"):
        package.layer_command(tmp_path, "sparc", "3.12")


def third_party_imports() -> set[str]:
    found: set[str] = set()
    for folder in ("core", "adapters/aws", "lambda_aws", "adapters/public/__init__.py"):
        paths = [REPO / folder] if folder.endswith(".py") else (REPO / folder).rglob("*.py")
        for path in paths:
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.add(node.module.split(".")[0])
    ours = {"rustyflower", "lambda_aws"}
    return {name for name in found - ours if name not in sys.stdlib_module_names}


def test_the_layer_requirements_cover_every_import() -> None:
    lines = package.REQUIREMENTS.read_text().splitlines()
    required = {
        line.split("[")[0].split(">")[0].split("=")[0].strip().lower().replace("-", "_")
        for line in lines
        if line.strip() and not line.startswith("#")
    }
    provided_by_runtime = {"boto3", "botocore"}  # the Lambda Python runtime ships them
    distribution = {"yaml": "pyyaml"}
    for module in third_party_imports() - provided_by_runtime:
        assert distribution.get(module, module) in required, module
    assert "tzdata" in required  # zoneinfo's time zones, whatever the image carries


def test_main_builds_the_function_zip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    package.main([str(tmp_path / "out.zip")])
    assert capsys.readouterr().out.strip() == str(tmp_path / "out.zip")


# --- ASL for Terraform --------------------------------------------------------------------------


def test_the_export_uses_terraforms_placeholders() -> None:
    order = load_definition((REPO / "examples/order/flow.yaml").read_text(), "order")
    document = json.loads(asl.compile_for_terraform(order))
    text = json.dumps(document)
    assert names.ASL_ACTIVITY_ARN in text
    assert not re.search(r"arn:aws:[a-z]+:[a-z0-9-]+:[0-9]{12}", text)  # no concrete ARN


def test_sub_flows_point_at_the_prefixed_machine_names() -> None:
    child = load_definition(
        json.dumps(
            {
                "name": "child",
                "version": "2.0",
                "start_at": "P",
                "states": {"P": {"type": "pass", "end": True}},
            }
        )
    )
    older = child.model_copy(update={"version": "1.9"})
    arns = asl.placeholder_flow_arns([older, child])
    assert arns["child@2.0"] == names.ASL_STATE_MACHINE_PREFIX + "child-v2-0"
    assert arns["child"] == arns["child@2.0"]  # the latest version
    assert arns["child@1.9"] == names.ASL_STATE_MACHINE_PREFIX + "child-v1-9"


# EventBridge User Guide, "Cron expressions reference": six fields, one of the two day fields
# is "?", the day of week counts 1-7 from Sunday (SUN-SAT) and takes ", - * ? L #".
@pytest.mark.parametrize(
    ("cron", "expression"),
    [
        ("0 2 * * *", "cron(0 2 * * ? *)"),
        ("*/15 * * * *", "cron(*/15 * * * ? *)"),
        ("0 9 * * 1-5", "cron(0 9 ? * 2-6 *)"),
        ("0 9 * * 0", "cron(0 9 ? * 1 *)"),
        ("0 9 * * 7", "cron(0 9 ? * 1 *)"),
        ("0 9 * * 5-7", "cron(0 9 ? * 1,6-7 *)"),
        ("0 9 * * MON,FRI", "cron(0 9 ? * 2,6 *)"),
        ("0 9 * * sat-sun", "cron(0 9 ? * 1,7 *)"),
        ("0 9 * * 0-7", "cron(0 9 * * ? *)"),
        ("30 6 1 * *", "cron(30 6 1 * ? *)"),
        ("0 6 L * *", "cron(0 6 L * ? *)"),
        ("0 6 15W * *", "cron(0 6 15W * ? *)"),
        ("0 6 1 jan-mar *", "cron(0 6 1 JAN-MAR ? *)"),
        ("@daily", "cron(0 0 * * ? *)"),
        ("@weekly", "cron(0 0 ? * 1 *)"),
    ],
)
def test_cron_becomes_eventbridge_syntax(cron: str, expression: str) -> None:
    assert asl.aws_schedule_expression(cron) == expression


@pytest.mark.parametrize(
    ("cron", "expression"),
    [
        ("0 9 * * 5#2", "cron(0 9 ? * 6#2 *)"),  # the second Friday, not Thursday
        ("0 9 * * fri#2", "cron(0 9 ? * 6#2 *)"),
        ("0 9 * * 7#1", "cron(0 9 ? * 1#1 *)"),
        ("0 9 * * L5", "cron(0 9 ? * 6L *)"),  # the last Friday: EventBridge writes 6L
        ("0 9 ? * *", "cron(0 9 * * ? *)"),  # croniter's '?' is '*': never '?' twice
        ("0 9 * * */2", "cron(0 9 ? * 1,3,5,7 *)"),  # no step in EventBridge's day of week
    ],
)
def test_cron_is_translated_by_its_meaning_not_its_text(cron: str, expression: str) -> None:
    assert asl.aws_schedule_expression(cron) == expression


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("0 0 1 * 1", "both the day of month and the day of week"),
        ("0 0 * * fri#2,mon#1", "one nth weekday"),
        ("0 0 * *", "not a 5-field cron expression"),
        # what the site's scheduler refuses is refused here too, by the same rules
        ("0 0 9 * * *", "not a 5-field cron expression"),
        ("0 0 30 2 *", "never fires"),
        ("R 2 * * *", "random (R) and hashed (H)"),
    ],
)
def test_cron_eventbridge_cannot_express_is_refused(cron: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        asl.aws_schedule_expression(cron)


def test_the_command_writes_asl_files_and_the_flows_variable(tmp_path: Path) -> None:
    root = tmp_path / "terraform"
    asl.main(
        [
            str(REPO / "examples/nightly_report/flow.yaml"),
            "--out",
            str(tmp_path / "asl"),
            "--tfvars",
            str(root / "flows.auto.tfvars.json"),
            "--activities",
            "examples.nightly_report.activities",
        ]
    )
    flows = json.loads((root / "flows.auto.tfvars.json").read_text())["flows"]
    entry = flows["nightly_report@1"]
    assert entry["asl_file"] == "../asl/nightly_report-v1.asl.json"
    assert (root / entry["asl_file"]).is_file()
    assert entry["schedules"] == {
        "nightly": {
            "expression": "cron(0 2 * * ? *)",
            "timezone": "Europe/Berlin",
            "input_json": '{"region":"eu"}',
        }
    }


def test_a_schedule_eventbridge_cannot_run_stops_the_command_before_it_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = tmp_path / "monthly.yaml"
    flow.write_text(
        "name: monthly\nschedules: [{cron: '0 0 1 * 1'}]\n"
        "start_at: Done\nstates: {Done: {type: succeed}}\n"
    )
    out, tfvars = tmp_path / "asl", tmp_path / "terraform" / "flows.auto.tfvars.json"
    with pytest.raises(SystemExit) as exited:
        asl.main([str(flow), "--out", str(out), "--tfvars", str(tfvars)])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "cannot restrict both the day of month" in error
    assert not out.exists() and not tfvars.exists()
