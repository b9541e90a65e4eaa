"""``rustyflower drill``'s refusals, before anything starts (no emulator needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from rustyflower.adapters.cli.main import app
from rustyflower.adapters.drill.cloud import DrillError
from rustyflower.adapters.drill.flows import registry
from rustyflower.adapters.drill.run import open_cloud


def test_a_cloud_the_drill_does_not_know_is_refused_naming_both() -> None:
    result = CliRunner().invoke(app, ["drill", "--to", "gcp", "--instances", "2"])
    assert result.exit_code == 2
    assert "--to 'gcp': the drill runs on aws, azure" in result.output
    assert "Traceback" not in result.output


def test_open_cloud_refuses_an_unknown_cloud_with_the_drill_error(tmp_path: Path) -> None:
    with pytest.raises(DrillError, match="the drill runs on aws, azure"):
        open_cloud("gcp", registry, site="s", key_setting="k", threshold=10, work=tmp_path)
