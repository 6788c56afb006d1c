// The live event feed shared by the talk and live pages: transcript lines (fragments of
// one side merged, as the call record does), tool calls, barge-ins, reconnects, latency.
import { el } from "./api.js";

export class Feed {
  constructor(container) {
    this.container = container;
    this.open = null; // the transcript line the next fragment of the same side extends
    this.template = document.getElementById("line");
  }

  clear() {
    this.container.replaceChildren();
    this.open = null;
  }

  add(event) {
    switch (event.type) {
      case "transcript":
        return this.transcript(event);
      case "tool_call":
        return this.line("tool", `tool · ${event.name}`, event.at_s, toolText(event));
      case "interruption":
        this.open = null;
        return this.line("barge", "barge-in", event.at_s, "the caller spoke over the agent: playback cleared");
      case "reconnect":
        return this.line("reconnect", "reconnect", event.at_s, `Live session ${event.kind || "resumed"} (${event.reason})`);
      case "latency":
        return this.line("latency", "response", event.at_s, `agent answered ${(event.seconds * 1000).toFixed(0)} ms after the caller stopped`);
      case "dtmf":
        return this.line("tool", "keypad", event.at_s, event.digit);
      case "note":
        return this.line("reconnect", event.kind, event.at_s, event.detail);
      default:
        return null;
    }
  }

  transcript(event) {
    if (this.open && this.open.side === event.side) {
      this.open.text.textContent += event.text;
      return this.open.node;
    }
    const node = this.line(event.side, event.side, event.at_s, event.text);
    this.open = { side: event.side, node, text: node.querySelector(".text") };
    return node;
  }

  line(kind, who, at, text) {
    if (kind !== "caller" && kind !== "agent") this.open = null;
    this.container.querySelector(".empty")?.remove();
    const node = this.template.content.firstElementChild.cloneNode(true);
    node.classList.add(kind);
    node.dataset.kind = kind;
    node.querySelector(".who").textContent = who;
    node.querySelector(".at").textContent = at != null ? `${Number(at).toFixed(1)} s` : "";
    const body = node.querySelector(".text");
    if (typeof text === "string") body.textContent = text;
    else body.append(text);
    this.container.append(node);
    this.container.scrollTop = this.container.scrollHeight;
    return node;
  }
}

function toolText(event) {
  const status = event.ok ? `ok in ${event.duration_s} s` : "failed";
  return el(
    "span",
    {},
    el("span", { text: status }),
    el("pre", { class: "mono", text: `args   ${JSON.stringify(event.args)}\nresult ${JSON.stringify(event.result)}` }),
  );
}
