// The dashboard's shell: a hash router over the views, and live updates (each view's
// refresh every 2 s while the tab is visible; polling rather than a stream, because an
// EventSource cannot send the bearer token).
import { clear, h, toast } from "./dom.js";
import { mountInstance } from "./instance.js";
import { mountInstances } from "./instances.js";
import { mountReports } from "./reports.js";
import { mountRunner, mountSchedules } from "./runner.js";

const EVERY_MS = 2000;
const view = document.getElementById("view");
const pause = document.getElementById("pause");
const updated = document.getElementById("updated");
let current = null;
let paused = false;
let busy = false;
let again = false;
let failing = false;

function route() {
  const [, name = "instances", ...rest] = location.hash.split("/");
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("on", link.dataset.nav === name || (name === "instance" &&
      link.dataset.nav === "instances"));
  }
  clear(view);
  if (name === "instance" && rest.length) current = mountInstance(view, decodeURIComponent(rest.join("/")));
  else if (name === "schedules") current = mountSchedules(view);
  else if (name === "runner") current = mountRunner(view);
  else if (name === "reports") current = mountReports(view, rest[0]);
  else current = mountInstances(view);
  refresh();
}

async function refresh() {
  if (current === null) return;
  if (busy) {
    again = true; // a view mounted meanwhile: refresh it as soon as this one is done
    return;
  }
  busy = true;
  const shown = current;
  try {
    await shown.refresh();
    updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
    failing = false;
  } catch (error) {
    if (!failing) toast(`could not refresh: ${error.message}`, "error");
    failing = true; // one message until it works again, not one every 2 s
    if (error.status === 404 && shown === current) {
      clear(view, h("h1", {}, "Not found"), h("p", {}, error.message));
      current = null;
    }
  } finally {
    busy = false;
  }
  if (again) {
    again = false;
    refresh();
  }
}

pause.addEventListener("click", () => {
  paused = !paused;
  pause.textContent = paused ? "Resume" : "Pause";
  if (!paused) refresh();
});
window.addEventListener("hashchange", route);
setInterval(() => {
  if (!paused && document.visibilityState === "visible") refresh();
}, EVERY_MS);
route();
