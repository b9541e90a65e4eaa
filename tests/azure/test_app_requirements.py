"""The Function App's requirements.txt covers every third-party import of what it vendors."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "functions_azure"
# what functions_azure.build puts in the app folder besides requirements.txt
VENDORED = ("core", "adapters/azure", "adapters/vendoring.py", "functions_azure")
DISTRIBUTIONS = {"yaml": "pyyaml", "azure": "azure_functions"}
TRANSITIVE = {"requests"}  # azure-functions-durable requires it


def third_party_imports() -> set[str]:
    found: set[str] = set()
    for folder in VENDORED:
        paths = [REPO / folder] if folder.endswith(".py") else (REPO / folder).rglob("*.py")
        for path in paths:
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.add(node.module.split(".")[0])
    ours = {"rustyflower", "functions_azure"}
    return {name for name in found - ours if name not in sys.stdlib_module_names}


def required() -> set[str]:
    lines = (APP / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return {
        line.split("[")[0].split(">")[0].split("=")[0].strip().lower().replace("-", "_")
        for line in lines
        if line.strip() and not line.startswith("#")
    }


def test_the_app_requirements_cover_every_import() -> None:
    # core validates a definition's schedules (croniter, zoneinfo) wherever it parses one,
    # the orchestrator's snapshots included
    missing = {
        DISTRIBUTIONS.get(module, module)
        for module in third_party_imports() - TRANSITIVE
        if DISTRIBUTIONS.get(module, module) not in required()
    }
    assert missing == set()
    assert "tzdata" in required()  # zoneinfo's time zones, whatever the image carries
