// Microphone capture: device rate (often 48 kHz, 44.1 kHz in headless Chromium) ->
// low-pass -> 8 kHz -> mu-law, in 20 ms frames (160 bytes), posted to the page.
//
// Resampling evaluates a Kaiser-windowed sinc low-pass only at the output instants
// (arbitrary ratio), so the cost is TAPS multiply-adds per 8 kHz sample whatever the
// device rate. Cutoff 3.45 kHz with ~1.2 kHz transition at 44.1/48 kHz: the telephone
// band passes, and what would alias above 4 kHz is attenuated ~80 dB before decimation.
import { encodeSample } from "./mulaw.js";

const OUT_RATE = 8000;
const FRAME = 160; // 20 ms at 8 kHz
const HALF = 96; // taps each side of the output instant
const PHASES = 64; // fractional positions tabulated
const CUTOFF_HZ = 3450;
const KAISER_BETA = 8.0;

function besselI0(x) {
  let sum = 1;
  let term = 1;
  for (let k = 1; k < 30; k++) {
    term *= (x / (2 * k)) ** 2;
    sum += term;
  }
  return sum;
}

// table[p][j]: the filter's weight for input sample (floor(t) - HALF + 1 + j) when the
// output instant t has fractional part p / PHASES.
function buildTable(inRate) {
  const fc = CUTOFF_HZ / inRate; // cycles per input sample
  const table = [];
  const norm = besselI0(KAISER_BETA);
  for (let p = 0; p < PHASES; p++) {
    const frac = p / PHASES;
    const row = new Float32Array(2 * HALF);
    let sum = 0;
    for (let j = 0; j < 2 * HALF; j++) {
      const u = j - HALF + 1 - frac; // distance (input samples) from the output instant
      const sinc = u === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * u) / (Math.PI * u);
      const r = u / HALF;
      const window = Math.abs(r) >= 1 ? 0 : besselI0(KAISER_BETA * Math.sqrt(1 - r * r)) / norm;
      row[j] = sinc * window;
      sum += row[j];
    }
    for (let j = 0; j < row.length; j++) row[j] /= sum; // unity gain at DC
    table.push(row);
  }
  return table;
}

class Capture8k extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / OUT_RATE; // input samples per output sample
    this.table = buildTable(sampleRate);
    this.history = new Float32Array(1 << 14); // input samples, as a ring
    this.written = 0; // input samples received so far
    this.next = HALF; // input-sample time of the next output sample
    this.frame = new Uint8Array(FRAME);
    this.filled = 0;
    this.energy = 0;
    this.running = true;
    this.port.onmessage = (event) => {
      if (event.data === "stop") this.running = false;
    };
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      const mask = this.history.length - 1;
      for (let i = 0; i < channel.length; i++) this.history[(this.written + i) & mask] = channel[i];
      this.written += channel.length;
      this.resample();
    }
    return this.running;
  }

  resample() {
    const mask = this.history.length - 1;
    // An output sample needs HALF input samples after its instant.
    while (this.next + HALF < this.written) {
      const base = Math.floor(this.next);
      const row = this.table[Math.floor((this.next - base) * PHASES)];
      let acc = 0;
      let index = base - HALF + 1;
      for (let j = 0; j < row.length; j++, index++) acc += row[j] * this.history[index & mask];
      this.next += this.step;
      this.emit(acc);
    }
  }

  emit(sample) {
    const pcm = Math.max(-32768, Math.min(32767, Math.round(sample * 32767)));
    this.energy += pcm * pcm;
    this.frame[this.filled++] = encodeSample(pcm);
    if (this.filled === FRAME) {
      const rms = Math.sqrt(this.energy / FRAME) / 32768;
      this.port.postMessage({ frame: this.frame, rms }, [this.frame.buffer]);
      this.frame = new Uint8Array(FRAME);
      this.filled = 0;
      this.energy = 0;
    }
  }
}

registerProcessor("capture-8k", Capture8k);
