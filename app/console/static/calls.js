// Calls page: calls in progress (pushed by the server over SSE) and the history
// (the admin API's list, one page at a time, filtered on the server).
import { el, getJson, seconds, subscribe, when } from "./api.js";
import { renderHeader } from "./header.js";

renderHeader();
const PAGE = 20;
const active = new Map();
let offset = 0;
let filterTimer = null;

// --- in progress ------------------------------------------------------------------
subscribe("/console/api/events", {
  snapshot: (event) => {
    active.clear();
    for (const call of event.calls) active.set(call.call_sid, call);
    renderActive();
  },
  "call.started": (event) => {
    active.set(event.call.call_sid, event.call);
    renderActive();
  },
  "call.updated": (event) => {
    const call = active.get(event.call_sid);
    if (call) Object.assign(call, event.call);
    renderActive();
  },
  "call.ended": (event) => {
    active.delete(event.call_sid);
    renderActive();
    loadHistory(); // the finished call's record is on disk now
  },
});

// How the call came (phone "inbound"/"outbound-api", or "web"), and which agent answered.
function kind(call) {
  const direction = call.direction || "inbound";
  const badge = el("span", { class: `badge ${direction === "web" ? "web" : ""}`, text: direction });
  return call.agent ? el("span", {}, badge, el("span", { class: "muted", text: ` ${call.agent}` })) : badge;
}

function renderActive() {
  const rows = [...active.values()].map((call) =>
    el(
      "tr",
      { "data-sid": call.call_sid },
      el("td", { text: when(call.started_at) }),
      el("td", { class: "mono", text: call.call_sid }),
      el("td", { text: call.from || "–" }),
      el("td", { text: call.to || "–" }),
      el("td", {}, kind(call)),
      el("td", { text: String(call.turns ?? 0) }),
      el("td", { text: String(call.tool_calls ?? 0) }),
      el("td", { text: String(call.interruptions ?? 0) }),
      el("td", {}, el("a", { href: `/console/live/${call.call_sid}`, text: "Watch" })),
    ),
  );
  document.getElementById("active").replaceChildren(...rows);
  document.getElementById("active-count").textContent = String(rows.length);
  document.getElementById("active-empty").hidden = rows.length > 0;
}

// --- history ------------------------------------------------------------------------
async function loadHistory() {
  const q = document.getElementById("filter").value.trim();
  const params = new URLSearchParams({ summary: "1", limit: String(PAGE), offset: String(offset) });
  if (q) params.set("q", q);
  const page = await getJson(`/console/api/calls?${params}`);
  const rows = page.calls.map((call) => {
    const link = el("a", { href: `/console/calls/${call.call_sid}`, text: when(call.started_at) });
    return el(
      "tr",
      { "data-sid": call.call_sid },
      el("td", {}, link),
      el("td", { text: call.from || "–" }),
      el("td", { text: call.to || "–" }),
      el("td", {}, kind(call)),
      el("td", { text: seconds(call.duration_s) }),
      el("td", { text: (call.end_reason || "–").replaceAll("_", " ") }),
      el("td", { text: String(call.turns) }),
      el("td", { text: String(call.tool_calls) }),
      el("td", { text: String(call.interruptions) }),
      el("td", { text: call.tokens == null ? "–" : String(call.tokens) }),
    );
  });
  document.getElementById("history").replaceChildren(...rows);
  document.getElementById("history-empty").hidden = rows.length > 0;
  document.getElementById("newer").disabled = offset === 0;
  document.getElementById("older").disabled = !page.more;
  document.getElementById("page").textContent = rows.length
    ? `${offset + 1}–${offset + rows.length}`
    : "";
}

document.getElementById("older").addEventListener("click", () => {
  offset += PAGE;
  loadHistory();
});
document.getElementById("newer").addEventListener("click", () => {
  offset = Math.max(0, offset - PAGE);
  loadHistory();
});
document.getElementById("filter").addEventListener("input", () => {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => {
    offset = 0;
    loadHistory();
  }, 250);
});
loadHistory();
