// Reports: over the last hour, day or week, per flow how many started and finished, the
// success rate and the p50/p95 duration; then the slowest and the most failing steps. The
// figures are GET /v1/reports's, the ones `rustyflower report` prints.
import { api } from "./api.js";
import { clear, duration, field, h, time } from "./dom.js";

export const SPANS = { "1h": "last hour", "24h": "last 24 hours", "7d": "last 7 days" };
export const DEFAULT_SPAN = "24h";
// The report reads the window's whole event log (up to ~100,000 entries a stream): a
// week's worth is not worth reading again every 2 s, so the view fetches it this often.
const EVERY_MS = 10_000;

/** `wanted` is the span from the address (#/reports/7d); anything else shows the default. */
export function mountReports(view, wanted) {
  const since = Object.hasOwn(SPANS, wanted) ? wanted : DEFAULT_SPAN;
  let fetched = 0;

  const choice = h(
    "select",
    { name: "since", onchange: () => { location.hash = `#/reports/${choice.value}`; } },
    Object.entries(SPANS).map(([value, label]) =>
      h("option", { value, selected: value === since }, label)),
  );
  const windowText = h("p", { class: "muted", id: "report-window" }, "…");
  const body = h("div");
  clear(view, h("h1", {}, "Reports"),
    h("form", { class: "filters", onsubmit: (event) => event.preventDefault() },
      field("Since", choice)),
    windowText, body);

  async function refresh() {
    if (Date.now() - fetched < EVERY_MS) return;
    const report = await api(`/v1/reports?${new URLSearchParams({ since })}`);
    fetched = Date.now();
    render(report);
  }

  function render(report) {
    windowText.textContent = `${time(report.since)} to ${time(report.until)}`;
    Object.assign(windowText.dataset, { span: since, since: report.since, until: report.until });
    clear(body,
      report.covered_from ? h("p", { class: "warn", id: "report-covered" },
        `The event log reaches back to ${time(report.covered_from)} only (it is capped): ` +
        "earlier runs are missing from these figures.") : null,
      table("report-flows",
        ["Flow", "Started", "Finished", "Succeeded", "Failed", "Cancelled", "Success rate",
          "p50", "p95"],
        report.flows.map((flow) => h("tr", { dataset: { flow: flow.flow } },
          h("td", {}, flow.flow),
          count("started", flow.started), count("finished", flow.finished),
          count("succeeded", flow.succeeded), count("failed", flow.failed),
          count("cancelled", flow.cancelled), rate("success_rate", flow.success_rate),
          seconds("p50_seconds", flow.p50_seconds), seconds("p95_seconds", flow.p95_seconds))),
        "nothing started or finished in this window"),
      h("h2", {}, "Slowest steps ", h("span", { class: "muted" }, "by p95")),
      steps("report-slowest", report.slowest_steps, "no step finished in this window"),
      h("h2", {}, "Most failing steps ", h("span", { class: "muted" },
        "by failed or timed-out attempts")),
      steps("report-failing", report.most_failing_steps, "no step failed in this window"));
  }

  return { refresh };
}

const WORDS = new Set(["Flow", "Step", "Top error"]); // the other columns hold figures

function table(id, headings, rows, empty) {
  return h("table", { class: "list figures", id },
    h("thead", {}, h("tr", {}, headings.map((t) =>
      h("th", { class: WORDS.has(t) ? undefined : "num" }, t)))),
    h("tbody", {}, rows.length ? rows
      : h("tr", {}, h("td", { colspan: headings.length, class: "muted" }, empty))));
}

function steps(id, found, empty) {
  return table(id, ["Flow", "Step", "Attempts", "Failed", "Failure rate", "p50", "p95", "Max",
    "Top error"],
  found.map((step) => h("tr", { dataset: { flow: step.flow, step: step.step } },
    h("td", {}, step.flow), h("td", {}, step.step),
    count("attempts", step.attempts), count("failures", step.failures),
    rate("failure_rate", step.failure_rate), seconds("p50_seconds", step.p50_seconds),
    seconds("p95_seconds", step.p95_seconds), seconds("max_seconds", step.max_seconds),
    h("td", { dataset: { figure: "top_error", value: step.top_error ?? "" } },
      step.top_error ?? "—"))),
  empty);
}

// Each figure keeps the API's exact value in data-value ("" for none) beside the text shown.
function figure(name, value, text) {
  return h("td", { class: "num", dataset: { figure: name, value: value ?? "" } }, text);
}

function count(name, value) {
  return figure(name, value, String(value));
}

function rate(name, value) {
  return figure(name, value, value === null ? "—" : `${(value * 100).toFixed(1)}%`);
}

function seconds(name, value) {
  return figure(name, value, value === null ? "—" : duration(value * 1000));
}
