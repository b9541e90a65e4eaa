// One instance: where it stands, its flow drawn with the path it took, each step's input and
// output, its history, its data, and the controls (signal, hold, release, cancel, retry,
// failover, failback, snapshot).
import { api, download, idPath } from "./api.js";
import { badge, between, clear, duration, field, h, json, time, toast } from "./dom.js";
import { drawGraph, highlight, nodeOf } from "./graph.js";

export function mountInstance(view, id) {
  const base = `/v1/instances/${idPath(id)}`;
  let status = null;
  let visits = [];
  let history = [];
  let graph = null;
  let drawn = "";
  let picked = null; // the index of the visit shown in the step panel
  let tab = "steps";

  const title = h("h1", {}, id);
  const meta = h("dl", { class: "meta" });
  const eventName = h("input", { name: "event", list: "awaited", placeholder: "event name",
    "aria-label": "event name", size: 16 });
  const awaited = h("datalist", { id: "awaited" });
  const eventData = h("textarea", { name: "data", rows: 2, cols: 34, "aria-label": "event data (JSON)",
    spellcheck: "false" }, '{"approved": true}');
  const cloud = h("select", { name: "cloud", "aria-label": "cloud" },
    h("option", { value: "aws" }, "AWS"), h("option", { value: "azure" }, "Azure"));
  const buttons = {
    signal: h("button", { type: "submit", name: "signal" }, "Signal"),
    hold: action("hold", "Hold", () => post("hold", {}, "held")),
    release: action("release", "Release", () => post("release", undefined, "released")),
    cancel: action("cancel", "Cancel", () =>
      confirm(`Cancel ${id}? It stops for good.`) && post("cancel", {}, "cancelled")),
    retry: action("retry", "Retry", () => post("retry", undefined, "running again")),
    failover: action("failover", "Fail over", () => lifeboat("failover", "to")),
    failback: action("failback", "Fail back", () => lifeboat("failback", "from")),
    snapshot: action("snapshot", "Snapshot", () =>
      download(`${base}/snapshot`, `${id.replaceAll(/[^\w.-]/g, "_")}.snapshot.json`)),
  };
  const signalForm = h(
    "form",
    { class: "signal", onsubmit: (event) => { event.preventDefault(); signal(); } },
    field("Event", eventName), awaited, field("Data (JSON)", eventData), buttons.signal,
  );
  const actions = h(
    "div",
    { class: "actions" },
    signalForm,
    h("div", { class: "buttons" }, buttons.hold, buttons.release, buttons.cancel, buttons.retry,
      h("span", { class: "group" }, cloud, buttons.failover, buttons.failback), buttons.snapshot),
  );
  const picture = h("div", { class: "graph-box", id: "graph" }, h("p", { class: "muted" }, "…"));
  const tabs = h("nav", { class: "tabs" },
    ["steps", "timeline", "data"].map((name) =>
      h("button", { type: "button", dataset: { tab: name }, onclick: () => { tab = name; render(); } },
        name[0].toUpperCase() + name.slice(1))));
  const panel = h("section", { class: "panel" });
  clear(view, h("p", {}, h("a", { href: "#/instances" }, "← Instances")), title, meta, actions,
    h("div", { class: "split" }, picture, h("div", { class: "side" }, tabs, panel)));

  function action(name, label, run) {
    return h("button", { type: "button", name, onclick: () => attempt(run) }, label);
  }

  async function attempt(run) {
    try {
      await run();
    } catch (error) {
      toast(error.message, "error");
    }
  }

  async function post(what, body, done) {
    status = await api(`${base}/${what}`, { method: "POST", body });
    toast(`${id}: ${done}`);
    await refresh();
  }

  async function signal() {
    let data;
    try {
      data = eventData.value.trim() ? JSON.parse(eventData.value) : null;
    } catch (error) {
      toast(`the data is not JSON: ${error.message}`, "error");
      return;
    }
    await attempt(async () => {
      const receipt = await api(`${base}/signal`, {
        method: "POST",
        body: { event: eventName.value.trim(), data },
      });
      toast(`${eventName.value} delivered (${receipt.delivered_to})`);
      await refresh();
    });
  }

  async function lifeboat(kind, direction) {
    if (!confirm(`${kind} ${id} ${direction} ${cloud.value}?`)) return;
    const [outcome] = await api(`/v1/${kind}`, {
      method: "POST",
      body: { [direction]: cloud.value, instance_ids: [id] },
    });
    toast(`${kind} ${direction} ${outcome.cloud}: ${outcome.result}${outcome.error ? ` (${outcome.error})` : ""}`,
      outcome.error ? "error" : "ok");
    await refresh();
  }

  async function refresh() {
    [status, visits, history] = await Promise.all([
      api(base), api(`${base}/steps`), api(`${base}/history`),
    ]);
    const wanted = `${status.flow}@${status.version}`;
    if (graph?.key !== wanted) {
      const params = new URLSearchParams({ version: status.version });
      try {
        graph = await api(`/ui/api/graph/${encodeURIComponent(status.flow)}?${params}`);
      } catch (error) {
        graph = { nodes: [], edges: [], lanes: [], width: 0, height: 0, problem: error.message };
      }
      graph.key = wanted;
      drawn = "";
    }
    render();
  }

  function render() {
    const running = status.status === "running";
    const local = status.owner === "local";
    const events = status.waiting_for.filter((w) => w.kind === "event").map((w) => w.event);
    clear(awaited, events.map((name) => h("option", { value: name })));
    if (!eventName.value && events.length && document.activeElement !== eventName) {
      eventName.value = events[0];
    }
    buttons.signal.disabled = !running;
    buttons.hold.disabled = !running || status.held || !local;
    buttons.release.disabled = !status.held || !local;
    buttons.cancel.disabled = !running || !local;
    buttons.retry.disabled = status.status !== "failed" || !local;
    buttons.failover.disabled = !running || !local;
    buttons.failback.disabled = local;
    title.replaceChildren(id, " ", badge(status.status, status.held));
    const took = between(status.created_at, running ? null : status.finished_at ?? status.updated_at);
    clear(meta, [
      ["Flow", `${status.flow} v${status.version}`],
      ["Where", `${status.owner}${status.epoch ? ` (epoch ${status.epoch})` : ""}`],
      ["Started", time(status.created_at)],
      ["Duration", duration(took)],
      ["Updated", time(status.updated_at)],
      ["At", status.positions.join(", ") || "—"],
      ["Waiting for", status.waiting_for.map((w) => w.text).join("; ") || "—"],
      status.parent ? ["Parent", h("a", { href: `#/instance/${encodeURIComponent(status.parent)}` },
        status.parent)] : null,
    ].filter(Boolean).flatMap(([label, value]) => [h("dt", {}, label), h("dd", {}, value)]));
    const marks = highlight(graph, status, visits);
    const key = JSON.stringify([...marks.visited, "|", ...marks.taken, "|", ...marks.current,
      "|", ...marks.failed]);
    if (key !== drawn) {
      drawn = key;
      clear(picture, graph.problem
        ? h("p", { class: "muted" }, `no graph: ${graph.problem}`)
        : drawGraph(graph, marks, pickNode));
      picture.dataset.status = status.status;
    }
    for (const button of tabs.children) button.classList.toggle("on", button.dataset.tab === tab);
    if (tab === "steps") renderSteps();
    else if (tab === "timeline") renderTimeline();
    else renderData();
  }

  function pickNode(nodeId) {
    const kinds = new Map(graph.nodes.map((node) => [node.id, node.kind]));
    for (let index = visits.length - 1; index >= 0; index -= 1) {
      if (nodeOf(visits[index].position, kinds) === nodeId) {
        picked = index;
        tab = "steps";
        render();
        return;
      }
    }
    toast(`${nodeId}: not visited`);
  }

  function value(data, omitted) {
    return omitted ? h("p", { class: "muted" }, `too large to log (${omitted} bytes of JSON)`)
      : json(data);
  }

  function renderSteps() {
    const shown = picked ?? visits.length - 1;
    const rows = visits.map((visit, index) =>
      h("tr", { class: index === shown ? "on" : undefined, dataset: { position: visit.position },
        onclick: () => { picked = index; render(); } },
        h("td", {}, visit.position),
        h("td", {}, time(visit.entered_at)),
        h("td", {}, visit.left_at ? duration(between(visit.entered_at, visit.left_at))
          : h("span", { class: "muted" }, "here"))));
    const visit = visits[shown];
    clear(panel,
      visits.length ? h("table", { class: "list steps" },
        h("thead", {}, h("tr", {}, h("th", {}, "State"), h("th", {}, "Entered"), h("th", {}, "Took"))),
        h("tbody", {}, rows)) : h("p", { class: "muted" }, "no step logged on this runner"),
      visit ? h("div", { class: "io" },
        h("div", {}, h("h3", {}, `Input of ${visit.state}`), value(visit.input, visit.input_omitted)),
        h("div", {}, h("h3", {}, "Output"), visit.left_seq === null
          ? h("p", { class: "muted" }, "not left yet") : value(visit.output, visit.output_omitted)))
        : null);
  }

  function renderTimeline() {
    clear(panel, h("table", { class: "list timeline" },
      h("thead", {}, h("tr", {}, ["#", "Time", "What", "Where", "Detail"].map((t) => h("th", {}, t)))),
      h("tbody", {}, history.map((entry) => h("tr", { dataset: { kind: entry.kind } },
        h("td", {}, entry.seq), h("td", {}, time(entry.at)), h("td", {}, entry.kind),
        h("td", {}, entry.position), h("td", { class: "detail" },
          entry.detail === null || entry.detail === undefined ? "" : JSON.stringify(entry.detail)))))));
  }

  function renderData() {
    clear(panel,
      h("h3", {}, "Input"), json(status.input),
      status.status === "succeeded" ? [h("h3", {}, "Output"), json(status.output)] : null,
      status.error ? [h("h3", {}, "Error"), h("p", {}, h("strong", {}, status.error), " ",
        status.cause ?? "")] : null,
      status.waiting_for.length ? [h("h3", {}, "Waiting for"), json(status.waiting_for)] : null);
  }

  return { refresh };
}
