// Live view of one call: its events pushed by the server (SSE), and listen-in.
import { el, subscribe, when } from "./api.js";
import { Feed } from "./feed.js";
import { renderHeader } from "./header.js";

renderHeader();
const callSid = location.pathname.split("/").pop();
document.getElementById("sid").textContent = callSid;
const feed = new Feed(document.getElementById("feed"));
const status = document.getElementById("status");
const latencies = [];
window.__voicebotTest = { events: [], listen: { caller: 0, agent: 0, cleared: 0, loudest: 0 } };

const source = subscribe(`/console/api/calls/${callSid}/events`, {
  "call.started": (event) => {
    status.textContent = "In progress";
    status.classList.add("on");
    showFacts(event.call);
  },
  transcript: onEvent,
  tool_call: onEvent,
  interruption: onEvent,
  reconnect: onEvent,
  dtmf: onEvent,
  note: onEvent,
  latency: (event) => {
    onEvent(event);
    latencies.push(event.seconds);
    const sorted = [...latencies].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)];
    document.getElementById("latency").textContent =
      `last ${(event.seconds * 1000).toFixed(0)} ms · median ${(median * 1000).toFixed(0)} ms over ${latencies.length} turn(s)`;
  },
  "call.ended": (event) => {
    source.close();
    stopListening();
    status.classList.remove("on");
    status.replaceChildren(
      `Ended${event.end_reason ? ` (${event.end_reason.replaceAll("_", " ")})` : ""} · `,
      el("a", { href: `/console/calls/${callSid}`, text: "open the call page" }),
    );
  },
});

function onEvent(event) {
  window.__voicebotTest.events.push(event);
  feed.add(event);
}

function showFacts(call) {
  const facts = [
    ["Started", when(call.started_at)],
    ["From", call.from || "–"],
    ["To", call.to || "–"],
    ["Kind", call.direction || "inbound"],
    ["Agent", call.agent || "–"],
  ];
  document.getElementById("facts").replaceChildren(
    ...facts.flatMap(([name, value]) => [el("dt", { text: name }), el("dd", { text: value })]),
  );
}

// --- listen-in -----------------------------------------------------------------------
// Binary frames: [side (0 caller, 1 agent, 2 cleared)][uint32 LE call-clock sample][PCM16LE].
let listening = null;
const listenButton = document.getElementById("listen");
listenButton.addEventListener("click", () => (listening ? stopListening() : startListening()));

async function startListening() {
  const context = new AudioContext({ sampleRate: 8000 });
  await context.audioWorklet.addModule("/console/static/audio/listen-worklet.js");
  const mixer = new AudioWorkletNode(context, "listen-mixer", { outputChannelCount: [1] });
  mixer.connect(context.destination);
  const heard = window.__voicebotTest.listen;
  mixer.port.onmessage = (event) => (heard.loudest = Math.max(heard.loudest, event.data.rms));
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/console/ws/listen/${callSid}`);
  socket.binaryType = "arraybuffer";
  socket.onmessage = (message) => {
    const view = new DataView(message.data);
    const kind = view.getUint8(0);
    const at = view.getUint32(1, true);
    if (kind === 2) {
      heard.cleared += 1;
      mixer.port.postMessage({ type: "cleared", at });
      return;
    }
    heard[kind === 0 ? "caller" : "agent"] += 1;
    const pcm = new Int16Array(message.data.slice(5));
    const samples = Float32Array.from(pcm, (v) => v / 32768);
    mixer.port.postMessage({ type: "audio", side: kind === 0 ? "caller" : "agent", at, samples }, [samples.buffer]);
  };
  socket.onclose = () => stopListening();
  listening = { context, socket };
  listenButton.textContent = "Stop listening";
}

function stopListening() {
  if (!listening) return;
  listening.socket.close();
  listening.context.close();
  listening = null;
  listenButton.textContent = "Listen";
}
