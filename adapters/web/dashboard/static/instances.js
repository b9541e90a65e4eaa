// The instance list: newest first, filtered by status, flow and hold, pages on demand,
// and a search box that opens an instance by its id (or narrows the rows loaded).
import { api, idPath } from "./api.js";
import { badge, between, clear, duration, field, h, time, toast } from "./dom.js";

export function mountInstances(view) {
  const filters = { status: "", flow: "", held: "" };
  let rows = [];
  let cursor = null;
  let pages = 1;

  const status = h(
    "select",
    { name: "status", onchange: () => changed("status", status.value) },
    ["", "running", "succeeded", "failed", "cancelled"].map((v) =>
      h("option", { value: v }, v || "any"),
    ),
  );
  const flow = h("select", { name: "flow", onchange: () => changed("flow", flow.value) },
    h("option", { value: "" }, "any"));
  const held = h(
    "select",
    { name: "held", onchange: () => changed("held", held.value) },
    h("option", { value: "" }, "any"),
    h("option", { value: "true" }, "held"),
    h("option", { value: "false" }, "not held"),
  );
  const search = h("input", {
    type: "search",
    name: "search",
    placeholder: "instance id",
    "aria-label": "search by instance id",
    oninput: () => render(),
  });
  const form = h(
    "form",
    { class: "filters", onsubmit: (event) => { event.preventDefault(); open(search.value.trim()); } },
    field("Status", status),
    field("Flow", flow),
    field("Hold", held),
    field("Search by id", search),
    h("button", { type: "submit" }, "Open"),
  );
  const body = h("tbody");
  const more = h("button", { type: "button", onclick: () => loadMore() }, "Load more");
  const count = h("p", { class: "muted" });
  clear(
    view,
    h("h1", {}, "Instances"),
    form,
    h(
      "table",
      { class: "list", id: "instances" },
      h(
        "thead",
        {},
        h("tr", {}, ["Instance", "Flow", "Status", "Where", "Started", "Duration", "Updated"]
          .map((t) => h("th", {}, t))),
      ),
      body,
    ),
    count,
    more,
  );

  function changed(name, value) {
    filters[name] = value;
    pages = 1;
    refresh();
  }

  async function open(id) {
    if (!id) return;
    try {
      await api(`/v1/instances/${idPath(id)}`);
      location.hash = `#/instance/${encodeURIComponent(id)}`;
    } catch (error) {
      toast(error.status === 404 ? `no instance ${id}` : error.message, "error");
    }
  }

  function query(extra = {}) {
    const params = new URLSearchParams({ limit: "50", ...extra });
    for (const [name, value] of Object.entries(filters)) if (value) params.set(name, value);
    return `/v1/instances?${params}`;
  }

  async function refresh() {
    const flows = await api("/v1/flows");
    const known = new Set([...flow.options].map((o) => o.value));
    for (const one of flows) {
      if (!known.has(one.name)) flow.append(h("option", { value: one.name }, one.name));
    }
    // reload every page shown so far, so a refresh keeps what "Load more" added
    let found = [];
    let next = null;
    for (let page = 0; page < pages; page += 1) {
      const answer = await api(query(next ? { cursor: next } : {}));
      found = found.concat(answer.items);
      next = answer.next_cursor;
      if (!next) break;
    }
    rows = found;
    cursor = next;
    render();
  }

  async function loadMore() {
    if (!cursor) return;
    const answer = await api(query({ cursor }));
    rows = rows.concat(answer.items);
    cursor = answer.next_cursor;
    pages += 1;
    render();
  }

  function render() {
    const needle = search.value.trim();
    const shown = needle ? rows.filter((r) => r.instance_id.includes(needle)) : rows;
    clear(
      body,
      shown.map((row) => {
        const finished = row.status !== "running";
        return h(
          "tr",
          { dataset: { id: row.instance_id, status: row.status } },
          h("td", {}, h("a", { href: `#/instance/${encodeURIComponent(row.instance_id)}` },
            row.instance_id)),
          h("td", {}, `${row.flow} `, h("span", { class: "muted" }, `v${row.version}`)),
          h("td", {}, badge(row.status, row.held)),
          h("td", {}, row.owner, row.epoch ? h("span", { class: "muted" }, ` epoch ${row.epoch}`)
            : null),
          h("td", {}, time(row.created_at)),
          h("td", {}, duration(between(row.created_at, finished ? row.updated_at : null))),
          h("td", {}, time(row.updated_at)),
        );
      }),
    );
    if (!shown.length) {
      body.append(h("tr", {}, h("td", { colspan: 7, class: "muted" },
        needle ? "no instance loaded has that in its id: press Open to look it up"
          : "no instances")));
    }
    count.textContent = `${shown.length} shown${cursor ? ", more to load" : ""}`;
    more.hidden = !cursor;
  }

  return { refresh };
}
