"""The dashboard's flow graph: every state a box, every transition an arrow, laid out so
boxes never overlap, a branch's states sit inside its parallel or map box, and arrows
run from their source's edge to their target's."""

from __future__ import annotations

from itertools import combinations, pairwise

import pytest

from rustyflower import read_definition
from rustyflower.adapters.web.dashboard.graph import END, START, Graph, Node, flow_graph
from rustyflower.core.model import FlowDefinition
from tests.unit.engine_kit import flow

ORDER = read_definition("examples/order/flow.yaml")
NIGHTLY = read_definition("examples/nightly_report/flow.yaml")
POLLING = read_definition("examples/polling/flow.yaml")


def by_id(graph: Graph) -> dict[str, Node]:
    return {node.id: node for node in graph.nodes}


def overlap(a: Node, b: Node) -> bool:
    return (
        a.x < b.x + b.width
        and b.x < a.x + a.width
        and a.y < b.y + b.height
        and b.y < a.y + a.height
    )


def inside(inner: Node, outer: Node) -> bool:
    return (
        outer.x <= inner.x
        and inner.x + inner.width <= outer.x + outer.width
        and outer.y <= inner.y
        and inner.y + inner.height <= outer.y + outer.height
    )


def test_the_order_flow_has_a_box_per_state_and_an_arrow_per_transition() -> None:
    graph = flow_graph(ORDER)
    nodes = by_id(graph)
    assert set(nodes) == {
        START, END, "Charge", "Large order?", "Await approval", "Approved?", "Fulfil",
        "Fulfil[0]/Ship", "Fulfil[1]/Invoice", "Refund", "Cancelled", "Declined", "Done",
    }  # fmt: skip
    arrows = {(e.source, e.target, e.kind, e.label) for e in graph.edges}
    assert {
        (START, "Charge", "start", ""),
        ("Charge", "Large order?", "next", ""),
        ("Charge", "Declined", "catch", "catch CardDeclined"),
        ("Large order?", "Await approval", "choice", "rule 1"),
        ("Large order?", "Fulfil", "default", "default"),
        ("Await approval", "Refund", "timeout", "timeout"),
        ("Fulfil", "Refund", "catch", "catch States.ALL"),
        ("Done", END, "end", ""),
        ("Declined", END, "end", ""),
    } <= arrows
    assert len(graph.edges) == 15
    assert nodes["Charge"].detail == "charge_card"
    assert nodes["Await approval"].detail == "waits for approval"
    assert nodes["Fulfil[1]/Invoice"].parent == "Fulfil"
    assert [lane.label for lane in graph.lanes] == ["branch 1", "branch 2"]
    assert graph.as_dict()["nodes"][0]["id"] == START


@pytest.mark.parametrize("definition", [ORDER, NIGHTLY, POLLING], ids=["order", "nightly", "poll"])
def test_boxes_do_not_overlap_and_branches_sit_inside_their_owner(
    definition: FlowDefinition,
) -> None:
    graph = flow_graph(definition)
    nodes = by_id(graph)
    for a, b in combinations(graph.nodes, 2):
        if a.parent == b.parent:
            assert not overlap(a, b), (a.id, b.id)
    for node in graph.nodes:
        if node.parent is not None:
            assert inside(node, nodes[node.parent]), node.id
        assert node.x >= 0 and node.x + node.width <= graph.width
        assert node.y >= 0 and node.y + node.height <= graph.height
    for lane in graph.lanes:
        owner = nodes[lane.owner]
        assert owner.x <= lane.x and lane.x + lane.width <= owner.x + owner.width


def test_arrows_leave_their_source_and_reach_their_target() -> None:
    graph = flow_graph(ORDER)
    nodes = by_id(graph)
    for edge in graph.edges:
        source, target = nodes[edge.source], nodes[edge.target]
        (x0, y0), (x1, y1) = edge.points[0], edge.points[-1]
        assert not edge.loop
        assert (x0, y0) == (source.x + source.width / 2, source.y + source.height)
        assert (x1, y1) == (target.x + target.width / 2, target.y)
        assert all(b[1] > a[1] for a, b in zip(edge.points, edge.points[1:], strict=False))


def test_a_state_sits_below_every_state_that_leads_to_it() -> None:
    nodes = by_id(flow_graph(ORDER))
    chain = ["Charge", "Large order?", "Await approval", "Approved?", "Fulfil", "Done"]
    for upper, lower in pairwise(chain):
        assert nodes[upper].y + nodes[upper].height < nodes[lower].y
    assert nodes[END].y > max(n.y for n in nodes.values() if n.id != END)


def test_an_arrow_that_skips_rows_passes_between_the_boxes_of_those_rows() -> None:
    graph = flow_graph(ORDER)
    nodes = by_id(graph)
    (skipping,) = [e for e in graph.edges if (e.source, e.target) == ("Large order?", "Fulfil")]
    assert len(skipping.points) == 4  # two waypoints: the rows of Await approval, Approved?
    for x, y in skipping.points[1:-1]:
        assert not any(
            n.x <= x <= n.x + n.width and n.y <= y <= n.y + n.height for n in nodes.values()
        )


def test_a_loop_runs_back_up_along_the_right_hand_side() -> None:
    definition = flow(
        {
            "Poll": {"type": "task", "activity": "poll", "next": "Ready?"},
            "Ready?": {
                "type": "choice",
                "choices": [
                    {"when": {"variable": "$.ready", "boolean_equals": True}, "next": "Done"}
                ],
                "default": "Poll",
            },
            "Done": {"type": "succeed"},
        },
        start_at="Poll",
    )
    graph = flow_graph(definition)
    nodes = by_id(graph)
    (back,) = [e for e in graph.edges if e.loop]
    assert (back.source, back.target, back.kind) == ("Ready?", "Poll", "default")
    right = max(n.x + n.width for n in graph.nodes)
    assert len(back.points) == 4 and back.points[1][0] > right
    assert back.points[1][0] <= graph.width
    poll = nodes["Poll"]
    assert back.points[-1] == (poll.x + poll.width, poll.y + poll.height / 2)


def test_a_maps_iterator_stands_for_every_item() -> None:
    graph = flow_graph(NIGHTLY)
    nodes = by_id(graph)
    (lane,) = graph.lanes
    assert (lane.id, lane.owner, lane.label) == ("Build reports[*]", "Build reports", "each item")
    inner = [n for n in graph.nodes if n.parent == "Build reports"]
    assert inner and all(n.id.startswith("Build reports[*]/") for n in inner)
    assert nodes["Build reports"].kind == "map"
