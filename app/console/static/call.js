// Call page: the finished call's record (admin API JSON) with its stereo recording.
// The waveform, the markers and the transcript share the call clock (seconds), so a
// click anywhere seeks the player, and the line being played is highlighted.
import { el, getJson, seconds, when } from "./api.js";
import { Feed } from "./feed.js";
import { renderHeader } from "./header.js";
import { drawWaveform, parseWav } from "./wav.js";

renderHeader();
const callSid = location.pathname.split("/").pop();
const base = `/console/api/calls/${callSid}`;
const player = document.getElementById("player");
const timeline = document.getElementById("timeline");
const head = document.getElementById("head");
const feed = new Feed(document.getElementById("feed"));
const lines = []; // {start, end, node} in call seconds
let duration = 0;
window.__voicebotTest = { loaded: false, playing: false };
document.getElementById("sid").textContent = callSid;

async function load() {
  const record = await getJson(base);
  duration = record.duration_s || 0;
  showFacts(record);
  showAnalysis(record.analysis);
  showEvents(record);
  document.getElementById("download-json").href = URL.createObjectURL(
    new Blob([JSON.stringify(record, null, 2)], { type: "application/json" }),
  );
  document.getElementById("download-json").download = `${callSid}.json`;
  const wavLink = document.getElementById("download-wav");
  wavLink.href = `${base}/recording`;
  wavLink.download = `${callSid}.wav`;
  if (!record.recording?.files?.wav) {
    document.getElementById("error").textContent = "This call has no recording.";
    return;
  }
  // One download serves both the waveform and the player (as a blob URL).
  const response = await fetch(`${base}/recording`, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`recording: HTTP ${response.status}`);
  const bytes = await response.arrayBuffer();
  drawWaveform(document.getElementById("wave"), parseWav(bytes));
  player.src = URL.createObjectURL(new Blob([bytes], { type: "audio/wav" }));
  player.addEventListener("loadedmetadata", () => (window.__voicebotTest.loaded = true), { once: true });
}

function showFacts(record) {
  const tokens = record.usage?.total_tokens;
  const facts = [
    ["Started", when(record.started_at)],
    ["From", record.from || "–"],
    ["To", record.to || "–"],
    ["Kind", record.direction || "inbound"],
    ["Agent", record.agent || "–"],
    ["Duration", seconds(record.duration_s)],
    ["Ended", (record.end_reason || "–").replaceAll("_", " ")],
    ["Tool calls", String(record.tool_calls?.length ?? 0)],
    ["Barge-ins", String(record.interruptions?.length ?? 0)],
    ["Reconnects", String(record.reconnects?.length ?? 0)],
    ["Tokens", tokens == null ? "–" : String(tokens)],
    ["Model", record.meta?.model || "–"],
  ];
  document.getElementById("facts").replaceChildren(
    ...facts.flatMap(([name, value]) => [el("dt", { text: name }), el("dd", { text: value })]),
  );
}

// Post-call analysis (docs/agents.md): the fields the agent's schema asked for, or why
// there are none. Values are shown as text (never as HTML): they came from a model.
function showAnalysis(analysis) {
  if (!analysis) return;
  document.getElementById("analysis-panel").hidden = false;
  if (analysis.status !== "ok") {
    document.getElementById("analysis-error").textContent = `analysis failed: ${analysis.error || analysis.status}`;
    return;
  }
  const fields = Object.entries(analysis.result || {}).map(([name, value]) => [
    name.replaceAll("_", " "),
    typeof value === "string" ? value : JSON.stringify(value),
  ]);
  document.getElementById("analysis").replaceChildren(
    ...fields.flatMap(([name, value]) => [el("dt", { text: name }), el("dd", { text: value })]),
  );
}

function showEvents(record) {
  const events = [
    ...(record.transcript || []).map((line) => ({ type: "transcript", ...line })),
    ...(record.tool_calls || []).map((call) => ({ type: "tool_call", ...call })),
    ...(record.interruptions || []).map((it) => ({ type: "interruption", ...it })),
    ...(record.reconnects || []).map((it) => ({ type: "reconnect", ...it })),
    ...(record.dtmf || []).map((press) => ({ type: "dtmf", ...press })),
  ].sort((a, b) => a.at_s - b.at_s);
  for (const event of events) {
    const node = feed.add(event);
    feed.open = null; // record lines are already merged
    if (!node) continue;
    const end = event.type === "transcript" ? Math.max(event.end_s ?? event.at_s, event.at_s) : event.at_s;
    node.addEventListener("click", () => seek(event.at_s));
    if (event.type === "transcript") lines.push({ start: event.at_s, end, node });
    if (event.type !== "transcript" && event.type !== "dtmf") addMarker(event);
  }
  // A line is "being played" from its start until the next line starts.
  lines.forEach((line, i) => (line.until = i + 1 < lines.length ? lines[i + 1].start : Infinity));
}

function addMarker(event) {
  if (!duration) return;
  const kind = { tool_call: "tool", interruption: "barge", reconnect: "reconnect" }[event.type];
  const label = event.type === "tool_call" ? event.name : kind;
  const mark = el("div", { class: `mark ${kind}`, title: `${label} at ${event.at_s.toFixed(2)} s` }, el("span", { text: label }));
  mark.style.left = `${(event.at_s / duration) * 100}%`;
  timeline.append(mark);
}

function seek(at) {
  player.currentTime = Math.max(0, at - 0.1);
  player.play();
}

timeline.addEventListener("click", (event) => {
  const box = timeline.getBoundingClientRect();
  seek(((event.clientX - box.left) / box.width) * (player.duration || duration));
});

// Follow playback every frame (timeupdate alone fires only ~4 times a second).
function follow() {
  const now = player.currentTime;
  const total = player.duration || duration;
  if (total) head.style.left = `${(now / total) * 100}%`;
  for (const line of lines) line.node.classList.toggle("playing", now >= line.start && now < line.until);
  window.__voicebotTest.playing = !player.paused;
  window.__voicebotTest.currentTime = now;
  requestAnimationFrame(follow);
}
requestAnimationFrame(follow);

load().catch((failure) => (document.getElementById("error").textContent = failure.message));
