// A level meter: RMS (0..1) shown on a perceptual (dB) scale, with a short decay.
export class Meter {
  constructor(element) {
    this.element = element;
    this.level = 0;
    this.timer = setInterval(() => this.decay(), 50);
  }

  update(rms) {
    const db = 20 * Math.log10(Math.max(rms, 1e-5)); // -100 .. 0 dBFS
    const level = Math.max(0, Math.min(1, (db + 60) / 60)); // show -60 .. 0 dBFS
    this.level = Math.max(level, this.level);
    this.show();
  }

  decay() {
    this.level = Math.max(0, this.level - 0.05);
    this.show();
  }

  show() {
    this.element.style.setProperty("--level", this.level.toFixed(3));
  }
}
