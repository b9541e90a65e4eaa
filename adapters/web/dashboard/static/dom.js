// Building the page: elements from data with textContent only (never HTML from data),
// and the few formats every view uses.

/** h("td", {class: "x", onclick: f}, "text", child) -> element. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

export function clear(element, ...children) {
  element.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}

/** "2026-01-02T03:04:05.678Z" -> "2026-01-02 04:04:05" in the browser's time zone. */
export function time(text) {
  if (!text) return "";
  const moment = new Date(text);
  if (Number.isNaN(moment.getTime())) return text;
  const pad = (n) => String(n).padStart(2, "0");
  return (
    `${moment.getFullYear()}-${pad(moment.getMonth() + 1)}-${pad(moment.getDate())} ` +
    `${pad(moment.getHours())}:${pad(moment.getMinutes())}:${pad(moment.getSeconds())}`
  );
}

/** Milliseconds as people say it: 850 ms, 12.3 s, 4 min 5 s, 2 h 3 min, 3 d 4 h. */
export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "";
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

export function between(start, end) {
  if (!start) return null;
  const to = end ? new Date(end).getTime() : Date.now();
  return to - new Date(start).getTime();
}

export function badge(status, held = false) {
  return h(
    "span",
    {},
    h("span", { class: `badge ${status}` }, status),
    held ? h("span", { class: "badge held" }, "held") : null,
  );
}

export function json(value) {
  return h("pre", { class: "json" }, value === undefined ? "" : JSON.stringify(value, null, 2));
}

export function field(label, control) {
  return h("label", { class: "field" }, h("span", {}, label), control);
}

export function toast(message, kind = "ok") {
  const box = document.getElementById("toast");
  const note = h("div", { class: `note ${kind}` }, message);
  box.append(note);
  setTimeout(() => note.remove(), kind === "error" ? 8000 : 4000);
}
