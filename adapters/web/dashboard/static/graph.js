// The flow as SVG, from the layout the server computed (GET /ui/api/graph/{flow}), coloured
// by an instance's steps: the states it visited and the arrows it took, where it is now,
// and where it failed.
const SVG = "http://www.w3.org/2000/svg";

function s(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== null) element.setAttribute(name, String(value));
  }
  for (const child of children) element.append(child);
  return element;
}

/** The graph node of a position: "Fulfil[1]/Invoice" stays, "Each[3]/Check" -> "Each[*]/Check". */
export function nodeOf(position, kinds) {
  let prefix = "";
  const parts = position.split("/");
  for (const part of parts.slice(0, -1)) {
    const found = /^(.*)\[(\d+)\]$/.exec(part);
    if (!found) return null;
    const owner = prefix + found[1];
    prefix = kinds.get(owner) === "map" ? `${owner}[*]/` : `${owner}[${found[2]}]/`;
  }
  return prefix + parts[parts.length - 1];
}

function scopeOf(position) {
  const cut = position.lastIndexOf("/");
  return cut < 0 ? "" : position.slice(0, cut + 1);
}

/** What to colour: from the instance's status and its visits (GET .../steps). */
export function highlight(graph, status, visits) {
  const kinds = new Map(graph.nodes.map((node) => [node.id, node.kind]));
  const visited = new Set();
  const taken = new Set();
  const last = new Map(); // scope -> the node of its latest visit
  for (const visit of visits) {
    const node = nodeOf(visit.position, kinds);
    if (node === null) continue;
    visited.add(node);
    const scope = scopeOf(visit.position);
    const before = last.get(scope);
    if (before !== undefined) taken.add(`${before}>${node}`);
    else if (scope === "") taken.add(`(start)>${node}`);
    last.set(scope, node);
  }
  const current = new Set(
    (status.positions ?? []).map((p) => nodeOf(p, kinds)).filter((n) => n !== null),
  );
  const failed = new Set();
  if (status.status === "failed" || status.status === "cancelled") {
    const open = visits.filter((v) => v.left_seq === null).map((v) => nodeOf(v.position, kinds));
    for (const node of open) if (node !== null) failed.add(node);
    if (status.failed_position) failed.add(nodeOf(status.failed_position, kinds));
  }
  const end = last.get("");
  if (status.status !== "running" && end !== undefined) {
    taken.add(`${end}>(end)`);
    visited.add("(start)").add("(end)");
  } else if (visits.length) {
    visited.add("(start)");
  }
  return { visited, taken, current, failed };
}

function curve(edge) {
  const [first, ...rest] = edge.points;
  if (edge.loop) return `M${first[0]},${first[1]} ` + rest.map(([x, y]) => `L${x},${y}`).join(" ");
  // downwards through each waypoint, leaving and arriving vertically
  let path = `M${first[0]},${first[1]}`;
  let [x0, y0] = first;
  for (const [x1, y1] of rest) {
    const bend = Math.max(8, (y1 - y0) / 2);
    path += ` C${x0},${y0 + bend} ${x1},${y1 - bend} ${x1},${y1}`;
    [x0, y0] = [x1, y1];
  }
  return path;
}

/** The SVG of ``graph`` coloured by ``marks`` (from ``highlight``); onPick(nodeId) on a click. */
export function drawGraph(graph, marks, onPick) {
  const svg = s("svg", {
    class: "graph",
    viewBox: `0 0 ${graph.width} ${graph.height}`,
    width: graph.width,
    height: graph.height,
    role: "img",
    "aria-label": "the flow's states and the path this instance took",
  });
  svg.append(
    s(
      "defs",
      {},
      s(
        "marker",
        { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 8, markerHeight: 8,
          markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" },
        s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }),
      ),
      s(
        "marker",
        { id: "arrow-taken", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 9,
          markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" },
        s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead taken" }),
      ),
    ),
  );
  const compound = graph.nodes.filter((n) => n.kind === "parallel" || n.kind === "map");
  const plain = graph.nodes.filter((n) => n.kind !== "parallel" && n.kind !== "map");
  for (const node of compound) svg.append(drawNode(node, marks, onPick));
  for (const lane of graph.lanes) {
    svg.append(
      s("rect", { class: "lane", x: lane.x, y: lane.y, width: lane.width, height: lane.height,
        rx: 6 }),
      s("text", { class: "lane-label", x: lane.x + 8, y: lane.y + 13 }, lane.label),
    );
  }
  for (const edge of graph.edges) {
    const taken = marks.taken.has(`${edge.source}>${edge.target}`);
    const path = s("path", {
      class: `edge ${edge.kind}${taken ? " taken" : ""}`,
      d: curve(edge),
      "marker-end": taken ? "url(#arrow-taken)" : "url(#arrow)",
      "data-edge": `${edge.source}>${edge.target}`,
    });
    svg.append(path);
    if (edge.label) {
      // beside the arrow's first stretch, where it is still near its source
      const [x0, y0] = edge.points[0];
      const [x1, y1] = edge.points[1];
      svg.append(
        s(
          "text",
          {
            class: "edge-label",
            x: edge.loop ? x1 + 3 : x0 + (x1 - x0) * 0.35 + 4,
            y: edge.loop ? (y1 + edge.points[2][1]) / 2 : y0 + (y1 - y0) * 0.35 + 4,
          },
          edge.label,
        ),
      );
    }
  }
  for (const node of plain) svg.append(drawNode(node, marks, onPick));
  return svg;
}

function drawNode(node, marks, onPick) {
  const states = ["visited", "current", "failed"].filter((k) => marks[k].has(node.id));
  const group = s("g", {
    class: `node ${node.kind} ${states.join(" ")}`,
    "data-node": node.id,
    tabindex: node.kind === "start" || node.kind === "end" ? undefined : 0,
  });
  if (node.kind === "start" || node.kind === "end") {
    const r = node.width / 2;
    group.append(s("circle", { cx: node.x + r, cy: node.y + r, r }));
    group.append(s("title", {}, node.name));
    return group;
  }
  const compound = node.kind === "parallel" || node.kind === "map";
  const shape = node.kind === "choice" ? 18 : 6;
  group.append(
    s("rect", { x: node.x, y: node.y, width: node.width, height: node.height, rx: shape }),
    s("title", {}, `${node.name} (${node.kind.replace("_", " ")})`),
  );
  const top = compound ? node.y + 19 : node.y + (node.detail ? 20 : 23);
  group.append(s("text", { class: "name", x: node.x + node.width / 2, y: top }, node.name));
  if (node.detail) {
    group.append(
      s("text", { class: "detail", x: node.x + node.width / 2, y: top + 16 }, node.detail),
    );
  }
  group.addEventListener("click", (event) => {
    event.stopPropagation();
    onPick(node.id);
  });
  group.addEventListener("keydown", (event) => {
    if (event.key === "Enter") onPick(node.id);
  });
  return group;
}
