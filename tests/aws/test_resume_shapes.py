"""Every snapshot the corpus goes through is accepted by the compiled machine's routers.

For each conformance case, the virtual runtime runs it cut at every transition; each
running snapshot becomes an execution input (``execution_input``), which is checked
against the machine compiled from the snapshot's definition: the digest matches, every
node's route is a rule of the router of the branch copy it will be read in, a join's
nodes match the resume copy's branches and items, and every node carries the fields its
entry state reads. The end-to-end runs are in ``test_resume_moto.py``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from typing import Any

import pytest

from rustyflower.adapters.aws import execution_input
from rustyflower.adapters.aws.names import ROUTE_DONE, ROUTE_START
from rustyflower.core.engine import Snapshot
from rustyflower.core.timeutil import parse_timestamp
from rustyflower.testing import round_trip, run_flow
from tests.aws.test_compiler_kit import compile_for
from tests.conformance.corpus import Case, load_cases
from tests.conformance.test_conformance import world_for

CASES = [case for case in load_cases() if case.flow is not None]
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def snapshots_at_every_transition(case: Case) -> list[Snapshot]:
    """The snapshots a run of ``case`` is cut at (its own and its children's)."""
    seen: list[Snapshot] = []

    def record(snapshot: Snapshot, keys: Any) -> Snapshot:
        seen.append(snapshot)
        return round_trip(snapshot, keys)

    assert case.flow is not None
    run_flow(
        case.flow,
        case.input,
        world_for(case),
        instance_id=f"{case.file}.{case.name}",
        cut="every",
        transfer=record,
    )
    return seen


@cache
def machine_for(case_id: str, definition_key: str) -> dict[str, Any]:
    case = next(c for c in CASES if c.id == case_id)
    assert case.flow is not None
    every = (case.flow, *case.subflows)
    definition = next(d for d in every if d.key == definition_key)
    return compile_for(definition, every)


def router_routes(branch: Mapping[str, Any]) -> set[str]:
    """The routes the router of a compiled branch copy accepts."""
    states = branch["States"]
    name = "RF:Route" if "RF:Route" in states else branch["StartAt"]
    if states[name]["Type"] == "Pass":  # a parallel branch copy: enter, then route
        name = states[name]["Next"]
    router = states[name]
    assert router["Type"] == "Choice", f"{name} is not a router"
    return {
        rule["StringEquals"]
        for rule in router["Choices"]
        if rule.get("Variable") == "$.rf.node.route"
    }


def check_call(node: Mapping[str, Any]) -> None:
    call = node["call"]
    assert isinstance(call["attempt"], int) and call["attempt"] >= 1
    assert isinstance(call["tag"], str) and call["tag"]
    for key in ("used", "limit", "delays"):
        assert isinstance(node[key], list)


def check_retry_plan(node: Mapping[str, Any], entry: Mapping[str, Any]) -> None:
    """One counter per retry policy (each has a catch entry into the retry loop)."""
    looped = [c for c in entry.get("Catch", []) if c.get("ResultPath") == "$.rf.error"]
    assert len(node["used"]) == len(node["limit"]) == len(node["delays"])
    assert len(node["used"]) >= len(looped)
    for used, limit, delays in zip(node["used"], node["limit"], node["delays"], strict=True):
        assert used <= limit == len(delays)


def check_node(node: Mapping[str, Any], branch: Mapping[str, Any], where: str) -> None:
    route = node["route"]
    assert route in router_routes(branch), f"{where}: route {route!r} is not accepted"
    if route == ROUTE_DONE:
        assert "data" in node
        return
    if route == ROUTE_START:
        assert "item" in node
        return
    assert "data" in node, f"{where}: no data"
    entry = branch["States"][route]
    if route.endswith("~delay"):
        assert entry["Type"] == "Wait"
        assert parse_timestamp(node["until"]) is not None
        if entry.get("Next", "").endswith("~resume"):
            check_call(node)
        return
    kind = entry["Type"]
    if kind == "Wait":
        assert parse_timestamp(node["until"]) is not None
        assert node["until"].endswith("Z") and "." not in node["until"]
    elif kind == "Task" and entry["Resource"].endswith("lambda:invoke"):
        check_call(node)
        assert node["call"]["tag"].isdigit()
        if "TimeoutSecondsPath" in entry:
            assert node["call"]["timeout"] >= 1
    elif kind == "Task":
        assert node["tag"].isdigit()
        if "TimeoutSecondsPath" in entry:
            assert isinstance(node["timeout"], int) and node["timeout"] >= 1
    elif kind == "Parallel" and "child" in entry.get("Parameters", {}):
        child = node["child"]
        assert set(child["name"]) <= NAME_CHARS and len(child["name"]) <= 80
        assert child["input"]["rf"]["instance_id"] == child["id"]
        check_retry_plan(node, entry)
    elif kind == "Parallel":
        check_retry_plan(node, entry)
        assert len(node["branches"]) == len(entry["Branches"])
        for index, (inner, copy) in enumerate(
            zip(node["branches"], entry["Branches"], strict=True)
        ):
            check_node(inner, copy, f"{where} > {route}[{index}]")
    elif kind == "Map":
        assert entry["ItemsPath"] == "$.rf.node.items"
        check_retry_plan(node, entry)
        for index, inner in enumerate(node["items"]):
            assert "item" in inner
            check_node(inner, entry["ItemProcessor"], f"{where} > {route}[{index}]")
    else:  # pragma: no cover - a route to something else is a compiler/builder mismatch
        raise AssertionError(f"{where}: route {route!r} names a {kind} state")


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_every_cut_is_routable(case: Case) -> None:
    for snapshot in snapshots_at_every_transition(case):
        if snapshot.finished:
            continue
        now = parse_timestamp(snapshot.updated_at)
        document = execution_input(snapshot, now=now)
        json.dumps(document)  # plain JSON
        machine = machine_for(case.id, snapshot.definition.key)
        states = machine["States"]
        if "RF:Run" in states:  # a timed flow: the router is the first branch of the race
            flow = states["RF:Run"]["Branches"][0]
            assert isinstance(document["rf"]["timeout"], int)
        else:
            flow = machine
        check = flow["States"]["RF:Check"]["Choices"][0]
        assert check["StringEquals"] == document["rf"]["digest"] == snapshot.digest
        check_node(document["rf"]["resume"], flow, f"{case.id}@{snapshot.seq}")
