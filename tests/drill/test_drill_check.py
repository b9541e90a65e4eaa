"""The drill's count of calls executed twice, read from its ledger (no cloud needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rustyflower.adapters.drill.check import duplicate_executions, honoured_repeats


def ledger(tmp_path: Path, *entries: dict[str, Any]) -> Path:
    path = tmp_path / "ledger.jsonl"
    path.write_text("".join(json.dumps(entry) + "\n" for entry in entries), encoding="utf-8")
    return path


def test_a_call_run_under_two_keys_is_one_duplicate(tmp_path: Path) -> None:
    path = ledger(
        tmp_path,
        {"key": "o-1:Price:1", "instance": "o-1", "call": "price:o-1"},
        {"key": "o-1:Price:1:x@t", "instance": "o-1", "call": "price:o-1"},
        {"key": "o-2:Price:1", "instance": "o-2", "call": "price:o-1"},  # another root
    )
    assert duplicate_executions(path) == 1


def test_a_child_flow_started_twice_under_two_ids_is_caught(tmp_path: Path) -> None:
    path = ledger(
        tmp_path,
        {"key": "o-1/Audit~9:Check:1", "instance": "o-1/Audit~9", "call": "child:o-1"},
        {"key": "o-1/ab12:Check:1", "instance": "o-1/ab12", "call": "child:o-1"},
    )
    assert duplicate_executions(path) == 1


def test_a_call_asked_again_under_its_key_is_a_repeat_not_a_duplicate(tmp_path: Path) -> None:
    path = ledger(
        tmp_path,
        {"key": "o-1:Price:1", "instance": "o-1", "call": "price:o-1"},
        {"key": "o-1:Price:1", "instance": "o-1", "call": "price:o-1", "repeat": True},
    )
    assert (duplicate_executions(path), honoured_repeats(path)) == (0, 1)
