// The runner: cron schedules, workers (alive, last heartbeat, threads) and queues (depth,
// lag, dead letters).
import { api } from "./api.js";
import { clear, duration, h, time } from "./dom.js";

function table(id, headings, rows, empty) {
  return h("table", { class: "list", id },
    h("thead", {}, h("tr", {}, headings.map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.length ? rows
      : h("tr", {}, h("td", { colspan: headings.length, class: "muted" }, empty))));
}

export function mountSchedules(view) {
  async function refresh() {
    const schedules = await api("/v1/schedules");
    clear(view, h("h1", {}, "Schedules"), table("schedules",
      ["Schedule", "Flow", "Cron", "Next fire", "Last fire", "Last instance", "Started", "Skipped",
        "Missed", "Failed"],
      schedules.map((s) => h("tr", { dataset: { name: s.name } },
        h("td", {}, s.name, s.paused ? h("span", { class: "badge held" }, "paused") : null),
        h("td", {}, s.flow, s.version ? h("span", { class: "muted" }, ` v${s.version}`) : null),
        h("td", {}, h("code", {}, s.cron), h("span", { class: "muted" }, ` ${s.timezone ?? "UTC"}`)),
        h("td", {}, s.paused ? "—" : time(s.next_fire)),
        h("td", {}, time(s.last_fire)),
        h("td", {}, s.last_instance_id
          ? h("a", { href: `#/instance/${encodeURIComponent(s.last_instance_id)}` }, s.last_instance_id)
          : ""),
        h("td", {}, s.started), h("td", {}, s.skipped), h("td", {}, s.missed),
        h("td", { title: s.last_error ?? "" }, s.failed))),
      "no schedules: a flow declares them (schedules:) or `rustyflower schedule add` adds one"));
  }
  return { refresh };
}

export function mountRunner(view) {
  async function refresh() {
    const [workers, queues] = await Promise.all([api("/v1/workers"), api("/v1/queues")]);
    const routed = queues.routed.map((r) => h("tr", {},
      h("td", {}, `routed to ${r.activity}`), h("td", {}, r.messages), h("td", {}, ""),
      h("td", {}, r.workers.length ? r.workers.join(", ") : h("strong", { class: "bad" },
        "no running worker has it"))));
    clear(view,
      h("h1", {}, "Workers ", h("span", { class: "muted" }, `${workers.alive} alive`)),
      table("workers", ["Worker", "Alive", "Last heartbeat", "Up", "Threads", "Activities", "Run",
        "Failed"],
      workers.workers.map((w) => {
        const failing = w.threads.filter((t) => !t.healthy);
        return h("tr", { dataset: { name: w.name } },
          h("td", {}, w.name, h("span", { class: "muted" }, w.host ? ` ${w.host}:${w.pid}` : "")),
          h("td", {}, h("span", { class: `badge ${w.alive && w.healthy ? "succeeded" : "failed"}` },
            w.alive ? (w.healthy ? "healthy" : "unhealthy") : "silent")),
          h("td", {}, `${duration(w.heartbeat_age_seconds * 1000)} ago`),
          h("td", {}, w.started_at ? duration(Date.now() - new Date(w.started_at).getTime()) : ""),
          h("td", { title: w.threads.map((t) => `${t.name}: ${t.healthy ? "ok" : t.last_error}`)
            .join("\n") },
          failing.length ? h("strong", { class: "bad" }, `${failing.length} of ${w.threads.length} failing`)
            : `${w.threads.length} healthy`),
          h("td", {}, w.activities.join(", ") || h("span", { class: "muted" }, "none")),
          h("td", {}, w.stats.activities ?? 0), h("td", {}, w.stats.failures ?? 0));
      }), "no worker renewed its heartbeat lately"),
      h("h1", {}, "Queues"),
      table("queues", ["Queue", "Waiting (depth)", "In progress", "Workers"],
        [...queues.queues.map((q) => h("tr", { dataset: { priority: q.priority } },
          h("td", {}, `${q.priority} priority`), h("td", {}, q.waiting), h("td", {}, q.in_progress),
          h("td", {}, ""))), ...routed], ""),
      h("dl", { class: "meta" },
        h("dt", {}, "Parked by limits"), h("dd", {}, queues.deferred),
        h("dt", {}, "Timers"), h("dd", {}, `${queues.timers.scheduled} scheduled, ` +
          `${queues.timers.overdue} overdue`),
        h("dt", {}, "Timer lag"), h("dd", { class: queues.timers.lag_seconds > 5 ? "bad" : "" },
          duration(queues.timers.lag_seconds * 1000)),
        h("dt", {}, "Dead letters"), h("dd", { class: queues.dead_letters ? "bad" : "" },
          queues.dead_letters)));
  }
  return { refresh };
}
