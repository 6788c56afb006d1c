// Listen-in mixer (AudioContext at 8 kHz): both sides of a live call placed on the
// call clock and mixed. Chunks arrive in ~200 ms batches (caller audio after it was
// spoken, agent audio before it is played), so the play head runs DELAY behind the
// newest caller audio; anything arriving for a position already played is skipped.
const RING = 8000 * 8; // 8 s per side
const DELAY = 8000 * 0.5;
const REPORT = 16; // ~250 ms of 128-sample quanta

class ListenMixer extends AudioWorkletProcessor {
  constructor() {
    super();
    this.caller = new Float32Array(RING);
    this.agent = new Float32Array(RING);
    this.head = null; // call-clock sample being played
    this.newest = 0;
    this.energy = 0; // output level, reported every REPORT quanta
    this.quanta = 0;
    this.port.onmessage = (event) => this.receive(event.data);
  }

  receive(message) {
    if (message.type === "cleared") {
      // Barge-in: agent audio from `at` on was never heard by the caller.
      for (let p = Math.max(message.at, this.head ?? 0); p < this.newest + RING / 2; p++) {
        this.agent[p % RING] = 0;
      }
      return;
    }
    const { side, at, samples } = message;
    if (side === "caller") this.newest = Math.max(this.newest, at + samples.length);
    if (this.head === null || this.newest - this.head > RING / 2) {
      this.head = Math.max(0, this.newest - DELAY); // start, or resynchronise after a stall
    }
    const ring = side === "caller" ? this.caller : this.agent;
    for (let i = 0; i < samples.length; i++) {
      const p = at + i;
      if (p >= this.head && p < this.head + RING) ring[p % RING] = samples[i];
    }
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    if (this.head === null) return true;
    for (let i = 0; i < out.length; i++) {
      const index = (this.head + i) % RING;
      out[i] = 0.5 * (this.caller[index] + this.agent[index]);
      this.energy += out[i] * out[i];
      this.caller[index] = 0;
      this.agent[index] = 0;
    }
    this.head += out.length;
    if (++this.quanta === REPORT) {
      this.port.postMessage({ rms: Math.sqrt(this.energy / (REPORT * out.length)) });
      this.quanta = 0;
      this.energy = 0;
    }
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    return true;
  }
}

registerProcessor("listen-mixer", ListenMixer);
