"""A flow drawn as a graph: where each state's box goes and how the arrows run.

The dashboard draws this as SVG and colours it from an instance's steps. Layout is a
small layered drawing, as Step Functions' console draws a state machine: each state
goes one row below the states that lead to it (the longest path from the start), loops
(an arrow back up) run along the right-hand side, and a parallel or map state is a box
holding its branches side by side (a map's one iterator stands for every item).

Node ids are positions with branch numbers kept and item numbers starred: ``Fulfil[1]/
Invoice`` for the second branch of parallel ``Fulfil``, ``Each[*]/Check`` for every item
of map ``Each``; the root's start and end are ``(start)`` and ``(end)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any

from rustyflower.core.model import FlowDefinition

START, END = "(start)", "(end)"
ROW_GAP = 48.0
COLUMN_GAP = 36.0
PADDING = 20.0
HEADER = 30.0
LOOP_LANE = 18.0
TERMINAL = 26.0
CHAR_WIDTH = 7.2  # the dashboard's 12px sans-serif, near enough for sizing boxes


@dataclass
class Node:
    id: str
    name: str
    kind: str
    """The state's type (``task``, ``choice``...), ``start`` and ``end``; ``waypoint`` for
    where a long arrow crosses a row (never in a ``Graph``)."""
    detail: str
    """What a reader needs besides the name: the activity, the event, the sub-flow."""
    x: float = 0.0
    y: float = 0.0
    width: float = 0.0
    height: float = 0.0
    parent: str | None = None
    """The parallel or map node holding it."""


@dataclass
class Edge:
    source: str
    target: str
    kind: str
    """``next``, ``choice`` (a rule), ``default``, ``catch``, ``timeout``, ``start``, ``end``."""
    label: str
    points: list[tuple[float, float]] = field(default_factory=list)
    loop: bool = False
    """An arrow back up (a Choice's back-edge): drawn along the right-hand side."""


@dataclass
class Lane:
    """A parallel branch or a map's iterator, inside its owner's box."""

    id: str
    owner: str
    label: str
    x: float = 0.0
    y: float = 0.0
    width: float = 0.0
    height: float = 0.0


@dataclass
class Graph:
    nodes: list[Node]
    edges: list[Edge]
    lanes: list[Lane]
    width: float
    height: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "nodes": [asdict(node) for node in self.nodes],
            "edges": [asdict(edge) for edge in self.edges],
            "lanes": [asdict(lane) for lane in self.lanes],
            "width": self.width,
            "height": self.height,
        }


def flow_graph(definition: FlowDefinition) -> Graph:
    """The laid-out graph of ``definition``, origin at the top left."""
    graph = Graph([], [], [], 0.0, 0.0)
    width, height = _lay_out(graph, definition, "", None, root=True)
    graph.width, graph.height = width + 2 * PADDING, height + 2 * PADDING
    _shift(PADDING, PADDING, graph.nodes, graph.edges, graph.lanes)
    return graph


def _lay_out(
    graph: Graph, branch: Any, prefix: str, parent: str | None, *, root: bool = False
) -> tuple[float, float]:
    """Lay out one branch's states at the origin; returns its width and height. Appends
    its nodes, edges and nested lanes to ``graph``."""
    first_node, first_edge, first_lane = len(graph.nodes), len(graph.edges), len(graph.lanes)
    states: Mapping[str, Any] = branch.states
    nodes: dict[str, Node] = {}
    for name, state in states.items():
        node = Node(prefix + name, name, str(getattr(state, "type", "state")), _detail(state))
        node.parent = parent
        nodes[name] = node
        graph.nodes.append(node)
        _size(graph, node, state)
    edges = [Edge(prefix + a, prefix + b, kind, label) for a, b, kind, label in _arrows(states)]
    if root:
        nodes[START] = Node(START, "Start", "start", "", width=TERMINAL, height=TERMINAL)
        nodes[END] = Node(END, "End", "end", "", width=TERMINAL, height=TERMINAL)
        graph.nodes[first_node:first_node] = [nodes[START]]
        graph.nodes.append(nodes[END])
        edges.insert(0, Edge(START, prefix + branch.start_at, "start", ""))
        edges += [
            Edge(prefix + name, END, "end", "")
            for name, state in states.items()
            if getattr(state, "end", False) or state.type in ("succeed", "fail")
        ]
    graph.edges += edges
    local = {node.id: node for node in nodes.values()}
    start = START if root else prefix + branch.start_at
    row_of, order, loops = _rank(start, list(local), edges)
    placed = dict(local)  # and the waypoints of arrows that skip rows
    rows: list[list[str]] = [[] for _ in range(max(row_of.values(), default=0) + 1)]
    for node_id in order:
        rows[row_of[node_id]].append(node_id)
    links: list[tuple[str, str]] = []
    chains: dict[int, list[str]] = {}
    for index, edge in enumerate(edges):
        if (edge.source, edge.target) in loops:
            edge.loop = True
            continue
        chain = [edge.source]
        for row in range(row_of[edge.source] + 1, row_of[edge.target]):
            # a control character no state name may hold: never the id of a state
            waypoint = Node(f"\x00waypoint {index} {row}", "", "waypoint", "")
            placed[waypoint.id] = waypoint
            rows[row].append(waypoint.id)
            chain.append(waypoint.id)
        chain.append(edge.target)
        chains[index] = chain[1:-1]
        links += pairwise(chain)
    _order(rows, links)
    width = _place(rows, placed)
    height = max((n.y + n.height for n in local.values()), default=0.0)
    lanes_right = _route(edges, placed, chains, width)
    # nested boxes were laid out at their own origin: move their contents into place
    for node in local.values():
        inner_nodes = [n for n in graph.nodes[first_node:] if _inside(n.parent, node.id)]
        inner_edges = [e for e in graph.edges[first_edge:] if _edge_inside(e, node.id)]
        inner_lanes = [lane for lane in graph.lanes[first_lane:] if _inside(lane.owner, node.id)]
        _shift(node.x, node.y, inner_nodes, inner_edges, inner_lanes)
    return max(width, lanes_right), height


def _size(graph: Graph, node: Node, state: Any) -> None:
    """A plain state's box fits its text; a parallel or map box fits its lanes."""
    text = max(len(node.name), len(node.detail))
    node.width = max(120.0, text * CHAR_WIDTH + 28)
    node.height = 48.0 if node.detail else 36.0
    branches = list(getattr(state, "branches", None) or [])
    iterator = getattr(state, "iterator", None)
    if not branches and iterator is None:
        return
    labelled = (
        [(f"{node.id}[{i}]/", f"branch {i + 1}", b) for i, b in enumerate(branches)]
        if branches
        else [(f"{node.id}[*]/", "each item", iterator)]
    )
    x = PADDING
    tallest = 0.0
    for prefix, label, branch in labelled:
        lane = Lane(prefix[:-1], node.id, label)
        graph.lanes.append(lane)
        mark = (len(graph.nodes), len(graph.edges), len(graph.lanes))
        width, height = _lay_out(graph, branch, prefix, node.id)
        lane.x, lane.y = x, HEADER + PADDING / 2
        lane.width, lane.height = width + PADDING, height + PADDING + 16
        _shift(
            lane.x + PADDING / 2,
            lane.y + 16 + PADDING / 2,
            graph.nodes[mark[0] :],
            graph.edges[mark[1] :],
            graph.lanes[mark[2] :],
        )
        x += lane.width + COLUMN_GAP / 2
        tallest = max(tallest, lane.height)
    node.width = max(node.width, x - COLUMN_GAP / 2 + PADDING)
    node.height = HEADER + tallest + PADDING


def _detail(state: Any) -> str:
    for attribute, template in (
        ("activity", "{}"),
        ("event", "waits for {}"),
        ("flow", "runs {}"),
        ("seconds", "waits {} s"),
        ("error", "fails: {}"),
    ):
        value = getattr(state, attribute, None)
        if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
            return template.format(value)
    return ""


def _arrows(states: Mapping[str, Any]) -> Iterator[tuple[str, str, str, str]]:
    for name, state in states.items():
        for number, rule in enumerate(getattr(state, "choices", None) or [], start=1):
            yield name, rule.next, "choice", f"rule {number}"
        if getattr(state, "default", None):
            yield name, state.default, "default", "default"
        if getattr(state, "next", None):
            yield name, state.next, "next", ""
        if getattr(state, "on_timeout", None):
            yield name, state.on_timeout, "timeout", "timeout"
        for catcher in getattr(state, "catch", None) or []:
            yield name, catcher.next, "catch", "catch " + ", ".join(catcher.errors)


def _rank(
    start: str, ids: list[str], edges: list[Edge]
) -> tuple[dict[str, int], list[str], set[tuple[str, str]]]:
    """Each node's row (one below every node with an arrow to it, loops left out), the
    nodes in the order a walk from the start finds them, and the arrows that are loops."""
    following: dict[str, list[str]] = {node: [] for node in ids}
    for edge in edges:
        following[edge.source].append(edge.target)
    order: list[str] = []
    loops: set[tuple[str, str]] = set()
    state: dict[str, int] = {}  # 1 on the path being explored, 2 done
    for root in [start, *ids]:
        if root in state:
            continue
        stack: list[tuple[str, Iterator[str]]] = [(root, iter(following[root]))]
        state[root] = 1
        while stack:
            node, targets = stack[-1]
            target = next(targets, None)
            if target is None:
                state[node] = 2
                order.append(node)
                stack.pop()
            elif state.get(target) == 1:
                loops.add((node, target))
            elif target not in state:
                state[target] = 1
                stack.append((target, iter(following[target])))
    order.reverse()  # a topological order of the arrows that are not loops
    row: dict[str, int] = dict.fromkeys(ids, 0)
    for node in order:
        for target in following[node]:
            if (node, target) not in loops:
                row[target] = max(row[target], row[node] + 1)
    if END in row:  # the end below everything
        row[END] = max(row[n] for n in ids if n != END) + 1
    return row, order, loops


def _order(rows: list[list[str]], links: list[tuple[str, str]]) -> None:
    """Order each row by where the nodes linked to it sit in the row above (twice down,
    so a change low down settles), which keeps most arrows from crossing."""
    into: dict[str, list[str]] = {}
    for source, target in links:
        into.setdefault(target, []).append(source)
    for _sweep in range(2):
        for index in range(1, len(rows)):
            above = {node: place for place, node in enumerate(rows[index - 1])}

            def centre(node: str, above: dict[str, int] = above) -> float:
                places = [above[n] for n in into.get(node, []) if n in above]
                return sum(places) / len(places) if places else float(len(above))

            rows[index].sort(key=centre)


def _place(rows: list[list[str]], nodes: dict[str, Node]) -> float:
    """Rows top to bottom, each centred on the widest; returns the width."""

    def gaps(row: list[str]) -> list[float]:
        return [
            COLUMN_GAP if "waypoint" not in (nodes[a].kind, nodes[b].kind) else COLUMN_GAP / 2
            for a, b in pairwise(row)
        ]

    widths = [sum(nodes[n].width for n in row) + sum(gaps(row)) for row in rows]
    width = max(widths, default=0.0)
    y = 0.0
    for row, row_width in zip(rows, widths, strict=True):
        x = (width - row_width) / 2
        tallest = max((nodes[n].height for n in row), default=0.0)
        for name, gap in zip(row, [*gaps(row), 0.0], strict=True):
            node = nodes[name]
            node.x, node.y = x, y + (tallest - node.height) / 2
            x += node.width + gap
        y += tallest + ROW_GAP
    return width


def _route(
    edges: list[Edge], nodes: dict[str, Node], chains: dict[int, list[str]], width: float
) -> float:
    """Points of each arrow: down from the bottom of its source, through its waypoints
    (one per row it skips, placed like nodes so it passes between them), to the top of
    its target; a loop leaves the source's right side and comes back up a lane on the
    right. Returns the width with those lanes."""
    right = width
    for index, edge in enumerate(edges):
        source, target = nodes[edge.source], nodes[edge.target]
        if not edge.loop:
            edge.points = [
                (source.x + source.width / 2, source.y + source.height),
                *((nodes[w].x, nodes[w].y) for w in chains.get(index, [])),
                (target.x + target.width / 2, target.y),
            ]
            continue
        right += LOOP_LANE
        edge.points = [
            (source.x + source.width, source.y + source.height / 2),
            (right, source.y + source.height / 2),
            (right, target.y + target.height / 2),
            (target.x + target.width, target.y + target.height / 2),
        ]
    return right + (LOOP_LANE if right > width else 0.0)


def _inside(parent: str | None, owner: str) -> bool:
    return parent is not None and (parent == owner or parent.startswith(owner + "["))


def _edge_inside(edge: Edge, owner: str) -> bool:
    return edge.source.startswith(owner + "[")


def _shift(
    dx: float,
    dy: float,
    nodes: list[Node],
    edges: list[Edge],
    lanes: list[Lane],
) -> None:
    for node in nodes:
        node.x += dx
        node.y += dy
    for edge in edges:
        edge.points = [(x + dx, y + dy) for x, y in edge.points]
    for lane in lanes:
        lane.x += dx
        lane.y += dy
