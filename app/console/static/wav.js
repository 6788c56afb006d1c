// The recording's WAV (docs/recordings.md: PCM16, 8 kHz, stereo caller/agent) read by
// hand for the waveform: a plain RIFF walk, no decoding or resampling needed.
export function parseWav(buffer) {
  const view = new DataView(buffer);
  let offset = 12;
  let channels = 1;
  let rate = 8000;
  while (offset + 8 <= view.byteLength) {
    const id = String.fromCharCode(...new Uint8Array(buffer, offset, 4));
    const size = view.getUint32(offset + 4, true);
    if (id === "fmt ") {
      channels = view.getUint16(offset + 10, true);
      rate = view.getUint32(offset + 12, true);
    } else if (id === "data") {
      const length = Math.min(size, view.byteLength - offset - 8) >> 1;
      const samples = new Int16Array(buffer.slice(offset + 8, offset + 8 + length * 2));
      return { channels, rate, samples };
    }
    offset += 8 + size + (size & 1);
  }
  return { channels, rate, samples: new Int16Array(0) };
}

// Caller on the top half, agent on the bottom half: min/max per pixel column.
export function drawWaveform(canvas, wav) {
  const width = (canvas.width = canvas.clientWidth * devicePixelRatio);
  const height = (canvas.height = canvas.clientHeight * devicePixelRatio);
  const g = canvas.getContext("2d");
  const style = getComputedStyle(document.documentElement);
  const colours = [style.getPropertyValue("--caller"), style.getPropertyValue("--agent")];
  const frames = Math.floor(wav.samples.length / wav.channels);
  const perPixel = Math.max(1, frames / width);
  for (let channel = 0; channel < Math.min(2, wav.channels); channel++) {
    const middle = (height / 4) * (channel * 2 + 1);
    g.fillStyle = colours[channel].trim() || "#888";
    for (let x = 0; x < width; x++) {
      let lo = 0;
      let hi = 0;
      const end = Math.min(frames, Math.floor((x + 1) * perPixel));
      for (let i = Math.floor(x * perPixel); i < end; i++) {
        const v = wav.samples[i * wav.channels + channel];
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      const scale = height / 4 / 32768;
      g.fillRect(x, middle - hi * scale, 1, Math.max(1, (hi - lo) * scale));
    }
  }
}
