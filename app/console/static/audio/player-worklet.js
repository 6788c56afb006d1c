// The 8 kHz player for a web call (its AudioContext runs at 8 kHz; the browser
// resamples to the device). It owns the queue and the play position, as Twilio does:
//   {type: "audio", samples: Float32Array}  appended to the queue
//   {type: "mark", name}                    echoed (posted back) once everything queued
//                                           before it has been played
//   {type: "clear"}                         everything queued is dropped at once and
//                                           every pending mark is echoed immediately
// It posts back {type: "mark", name, cleared}, {type: "cleared", dropped, at} and,
// per render quantum that carried audio, {type: "played", samples, at, rms}.
class Player8k extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = []; // {samples, offset} or {mark}
    this.port.onmessage = (event) => this.receive(event.data);
  }

  receive(message) {
    if (message.type === "audio") {
      this.queue.push({ samples: message.samples, offset: 0 });
    } else if (message.type === "mark") {
      this.queue.push({ mark: message.name });
      this.echoReadyMarks();
    } else if (message.type === "clear") {
      let dropped = 0;
      for (const item of this.queue) {
        if (item.mark !== undefined) this.port.postMessage({ type: "mark", name: item.mark, cleared: true });
        else dropped += item.samples.length - item.offset;
      }
      this.queue = [];
      // `currentTime` is the start of the next quantum rendered: from there on, silence.
      this.port.postMessage({ type: "cleared", dropped, at: currentTime });
    }
  }

  // A mark at the head of the queue has nothing before it left to play.
  echoReadyMarks() {
    while (this.queue.length && this.queue[0].mark !== undefined) {
      this.port.postMessage({ type: "mark", name: this.queue.shift().mark, cleared: false });
    }
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    let written = 0;
    let energy = 0;
    while (written < out.length && this.queue.length) {
      this.echoReadyMarks();
      const head = this.queue[0];
      if (!head || head.mark !== undefined) break;
      const n = Math.min(out.length - written, head.samples.length - head.offset);
      for (let i = 0; i < n; i++) {
        const sample = head.samples[head.offset + i];
        out[written + i] = sample;
        energy += sample * sample;
      }
      written += n;
      head.offset += n;
      if (head.offset === head.samples.length) this.queue.shift();
    }
    this.echoReadyMarks();
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    if (written) {
      const samples = out.slice(0, written);
      this.port.postMessage(
        { type: "played", samples, at: currentTime, rms: Math.sqrt(energy / out.length) },
        [samples.buffer],
      );
    }
    return true;
  }
}

registerProcessor("player-8k", Player8k);
