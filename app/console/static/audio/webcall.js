// A web call: the page plays Twilio's part of the Media Streams protocol.
//   page -> server: connected, start (customParameters), media (20 ms mu-law), mark echoes, stop
//   server -> page: media (played in order), mark (echoed once played), clear (drop all)
// The microphone goes through capture-worklet.js; playback through player-worklet.js.
import { base64ToBytes, bytesToBase64, decodeToFloat } from "./mulaw.js";

const WORKLETS = new URL(".", import.meta.url);

export class WebCall extends EventTarget {
  constructor() {
    super();
    this.sequence = 0;
    this.chunk = 0;
    this.socket = null;
    this.closed = false;
    // What a test (or a curious user) can read: what was played, marks echoed, clears.
    this.log = { played: [], playedSamples: 0, marks: [], clears: [], sentFrames: 0, events: [] };
  }

  // `call` is the server's answer to POST /console/api/webcall.
  async start(call) {
    this.call = call;
    this.mic = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: false, channelCount: 1 },
    });
    // Capture at the device rate; the worklet does the 8 kHz conversion itself.
    this.captureContext = new AudioContext();
    await this.captureContext.audioWorklet.addModule(new URL("capture-worklet.js", WORKLETS));
    // Playback context at 8 kHz: what the server sends is played as-is.
    this.playContext = new AudioContext({ sampleRate: 8000 });
    await this.playContext.audioWorklet.addModule(new URL("player-worklet.js", WORKLETS));
    this.player = new AudioWorkletNode(this.playContext, "player-8k", { outputChannelCount: [1] });
    this.player.connect(this.playContext.destination);
    this.player.port.onmessage = (event) => this.fromPlayer(event.data);

    const scheme = location.protocol === "https:" ? "wss" : "ws";
    this.socket = new WebSocket(`${scheme}://${location.host}${call.socket}`);
    this.socket.onmessage = (event) => this.fromServer(event.data);
    this.socket.onclose = (event) => this.finish(event.code, event.reason);
    await new Promise((resolve, reject) => {
      this.socket.onopen = resolve;
      this.socket.onerror = () => reject(new Error("the call socket did not open"));
    });
    this.send({ event: "connected", protocol: "Call", version: "1.0.0" });
    this.send({
      event: "start",
      sequenceNumber: String(++this.sequence),
      streamSid: call.stream_sid,
      start: {
        accountSid: call.account_sid,
        streamSid: call.stream_sid,
        callSid: call.call_sid,
        tracks: ["inbound"],
        mediaFormat: { encoding: "audio/x-mulaw", sampleRate: 8000, channels: 1 },
        customParameters: call.parameters,
      },
    });
    this.startedAt = performance.now();

    const source = this.captureContext.createMediaStreamSource(this.mic);
    this.capture = new AudioWorkletNode(this.captureContext, "capture-8k", { numberOfOutputs: 0 });
    this.capture.port.onmessage = (event) => this.sendFrame(event.data.frame, event.data.rms);
    source.connect(this.capture);
    this.emit("state", { state: "connected" });
  }

  sendFrame(frame, rms) {
    this.emit("level", { side: "caller", rms });
    if (!this.socketOpen()) return;
    this.chunk += 1;
    this.log.sentFrames += 1;
    this.send({
      event: "media",
      sequenceNumber: String(++this.sequence),
      streamSid: this.call.stream_sid,
      media: {
        track: "inbound",
        chunk: String(this.chunk),
        timestamp: String((this.chunk - 1) * 20), // ms since the stream started
        payload: bytesToBase64(frame),
      },
    });
  }

  fromServer(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return; // not ours to crash on; Twilio ignores what it cannot read too
    }
    if (message.event === "media") {
      const samples = decodeToFloat(base64ToBytes(message.media.payload));
      this.player.port.postMessage({ type: "audio", samples }, [samples.buffer]);
    } else if (message.event === "mark") {
      this.player.port.postMessage({ type: "mark", name: message.mark.name });
    } else if (message.event === "clear") {
      // Stamped on the playback clock, to compare with when the player went silent.
      this.pendingClear = { receivedAt: this.playContext.currentTime, wall: performance.now() };
      this.player.port.postMessage({ type: "clear" });
    }
    this.log.events.push(message.event);
  }

  fromPlayer(message) {
    if (message.type === "played") {
      this.log.playedSamples += message.samples.length;
      this.log.played.push({ at: message.at, samples: Array.from(message.samples) });
      if (this.log.played.length > 4000) this.log.played.shift(); // ~60 s of quanta
      this.emit("level", { side: "agent", rms: message.rms });
    } else if (message.type === "mark") {
      this.log.marks.push({ name: message.name, cleared: message.cleared, at: this.playContext.currentTime });
      if (this.socketOpen()) {
        this.send({
          event: "mark",
          sequenceNumber: String(++this.sequence),
          streamSid: this.call.stream_sid,
          mark: { name: message.name },
        });
      }
    } else if (message.type === "cleared") {
      const clear = this.pendingClear || {};
      this.log.clears.push({ ...clear, stoppedAt: message.at, dropped: message.dropped });
      this.emit("cleared", { dropped: message.dropped });
    }
  }

  hangUp() {
    if (this.socketOpen()) {
      this.send({
        event: "stop",
        sequenceNumber: String(++this.sequence),
        streamSid: this.call.stream_sid,
        stop: { accountSid: this.call.account_sid, callSid: this.call.call_sid },
      });
      this.socket.close(1000, "caller hung up");
    }
    this.finish(1000, "caller hung up");
  }

  finish(code, reason) {
    if (this.closed) return;
    this.closed = true;
    this.capture?.port.postMessage("stop");
    this.mic?.getTracks().forEach((track) => track.stop());
    this.captureContext?.close();
    // Let what is queued finish playing (the agent's goodbye), then release the output.
    setTimeout(() => this.playContext?.close(), 1500);
    this.emit("state", { state: "ended", code, reason });
  }

  socketOpen() {
    return this.socket && this.socket.readyState === WebSocket.OPEN;
  }

  send(message) {
    this.socket.send(JSON.stringify(message));
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
