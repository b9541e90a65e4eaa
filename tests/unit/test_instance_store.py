"""The resume rule of the instance store port (core.instance_store.plan_resume).

The store-level behaviour (Redis, the CLI) is in tests/redis/test_faults.py and
tests/cli/test_commands.py; here every case of the rule, on values.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from rustyflower.core.engine import Snapshot, start
from rustyflower.core.errors import EpochConflictError
from rustyflower.core.instance_store import InstanceInfo, plan_resume
from rustyflower.core.model import parse_definition

NOW = datetime(2024, 1, 1, tzinfo=UTC)
FLOW = parse_definition(
    {
        "name": "f",
        "start_at": "W",
        "states": {"W": {"type": "wait_for_event", "event": "go", "end": True}},
    }
)


def snapshot(seq: int, epoch: int = 0) -> Snapshot:
    return replace(start(FLOW, {}, "i-1", NOW).snapshot, seq=seq, epoch=epoch)


def stored(seq: int, epoch: int = 0, status: str = "running", owner: str = "local") -> InstanceInfo:
    return InstanceInfo("i-1", "f", "1", status, False, seq, epoch, "normal", "", "", owner)


def test_a_new_instance_is_taken_as_it_is_or_at_the_next_epoch() -> None:
    assert plan_resume(snapshot(3), None).snapshot == snapshot(3)
    assert plan_resume(snapshot(3), None, take_ownership=True).snapshot == snapshot(3, 1)


def test_further_along_at_the_same_epoch_is_taken() -> None:
    assert plan_resume(snapshot(5), stored(4)).snapshot == snapshot(5)
    assert plan_resume(snapshot(5), stored(4), take_ownership=True).snapshot == snapshot(5, 1)


def test_the_same_point_needs_take_ownership() -> None:
    with pytest.raises(EpochConflictError, match="nothing to resume"):
        plan_resume(snapshot(4), stored(4))
    plan = plan_resume(snapshot(4, 2), stored(4, 2, owner="aws"), take_ownership=True)
    assert (plan.snapshot.epoch, plan.snapshot.seq, plan.discarded) == (3, 4, None)


@pytest.mark.parametrize("status", ["running", "succeeded"])
def test_an_older_seq_is_refused_even_with_take_ownership(status: str) -> None:
    for take in (False, True):
        with pytest.raises(EpochConflictError, match=r"seq 4 \(" + status) as refused:
            plan_resume(snapshot(2), stored(4, status=status), take_ownership=take)
        assert ("--discard-newer-state" in str(refused.value)) is take


def test_a_newer_epoch_here_is_refused_even_with_take_ownership() -> None:
    for take in (False, True):
        with pytest.raises(EpochConflictError, match="owned by epoch 1"):
            plan_resume(snapshot(9, 0), stored(4, 1, owner="azure"), take_ownership=take)


def test_an_older_epoch_here_yields_to_the_snapshot() -> None:
    assert plan_resume(snapshot(2, 3), stored(4, 1)).snapshot == snapshot(2, 3)


def test_discarding_newer_state_is_explicit_recorded_and_keeps_seq_growing() -> None:
    plan = plan_resume(
        snapshot(2), stored(4, status="succeeded"), take_ownership=True, discard_newer_state=True
    )
    assert (plan.snapshot.epoch, plan.snapshot.seq) == (1, 5)
    assert plan.discarded == {
        "discarded_seq": 4,
        "discarded_epoch": 0,
        "discarded_status": "succeeded",
        "discarded_owner": "local",
        "resumed_seq": 2,
        "resumed_epoch": 0,
    }
    over_an_owner = plan_resume(
        snapshot(2, 0), stored(4, 3, owner="aws"), take_ownership=True, discard_newer_state=True
    )
    assert (over_an_owner.snapshot.epoch, over_an_owner.snapshot.seq) == (4, 5)
    # nothing newer: the flag changes nothing and records nothing
    calm = plan_resume(snapshot(5), stored(4), take_ownership=True, discard_newer_state=True)
    assert (calm.snapshot, calm.discarded) == (snapshot(5, 1), None)
    with pytest.raises(ValueError, match="take_ownership"):
        plan_resume(snapshot(2), stored(4), discard_newer_state=True)
