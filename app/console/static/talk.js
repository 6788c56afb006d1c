// Talk page: start a web call, show levels and the conversation as it happens.
import { postJson, subscribe } from "./api.js";
import { WebCall } from "./audio/webcall.js";
import { Meter } from "./audio/meter.js";
import { Feed } from "./feed.js";
import { renderHeader } from "./header.js";

renderHeader();
const form = document.getElementById("setup");
const callButton = document.getElementById("call");
const hangupButton = document.getElementById("hangup");
const status = document.getElementById("status");
const error = document.getElementById("error");
const feed = new Feed(document.getElementById("feed"));
const meters = {
  caller: new Meter(document.getElementById("meter-caller")),
  agent: new Meter(document.getElementById("meter-agent")),
};
let call = null;
let events = null;

// For tests and debugging: what this page sent, played and echoed.
window.__voicebotTest = { call: null, state: "idle" };

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.textContent = "";
  let parameters;
  try {
    parameters = JSON.parse(form.parameters.value || "{}");
  } catch {
    error.textContent = "custom parameters must be a JSON object";
    return;
  }
  callButton.disabled = true;
  try {
    const created = await postJson("/console/api/webcall", {
      from: form.from.value,
      to: form.to.value,
      agent: form.agent.value.trim() || null,
      parameters,
    });
    await startCall(created);
  } catch (failure) {
    error.textContent = failure.message;
    callButton.disabled = false;
  }
});

hangupButton.addEventListener("click", () => call?.hangUp());

async function startCall(created) {
  feed.clear();
  document.getElementById("after").textContent = "";
  document.getElementById("sid").textContent = created.call_sid;
  call = new WebCall();
  window.__voicebotTest.call = call;
  call.addEventListener("level", (e) => meters[e.detail.side].update(e.detail.rms));
  call.addEventListener("state", (e) => onState(e.detail, created.call_sid));
  status.textContent = "Connecting…";
  // The conversation as the server records it (transcripts, tools, barge-ins).
  events = subscribe(`/console/api/calls/${created.call_sid}/events`, {
    transcript: (e) => feed.add(e),
    tool_call: (e) => feed.add(e),
    interruption: (e) => feed.add(e),
    reconnect: (e) => feed.add(e),
    latency: (e) => feed.add(e),
    "call.ended": () => events?.close(),
  });
  await call.start(created);
}

function onState(detail, callSid) {
  window.__voicebotTest.state = detail.state;
  if (detail.state === "connected") {
    status.textContent = "In a call";
    status.classList.add("on");
    hangupButton.disabled = false;
  } else if (detail.state === "ended") {
    status.textContent = `Call ended${detail.reason ? ` (${detail.reason})` : ""}`;
    status.classList.remove("on");
    hangupButton.disabled = true;
    callButton.disabled = false;
    const after = document.getElementById("after");
    after.replaceChildren("Recording and record: ");
    const link = document.createElement("a");
    link.href = `/console/calls/${callSid}`;
    link.textContent = "open the call page";
    after.append(link);
  }
}
