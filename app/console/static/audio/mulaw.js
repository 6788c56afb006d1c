// G.711 mu-law, as Twilio Media Streams carry it (8 kHz, 8 bits a sample, no header).
// The same algorithm as telephony/mulaw.py: bias 0x84, clip at 32635, bits inverted.
const BIAS = 0x84;
const CLIP = 32635;

export function encodeSample(pcm) {
  let sign = 0;
  let value = pcm;
  if (value < 0) {
    sign = 0x80;
    value = -value;
  }
  if (value > CLIP) value = CLIP;
  value += BIAS;
  // The exponent is the position of the highest set bit above bit 7.
  let exponent = 7;
  for (let mask = 0x4000; (value & mask) === 0 && exponent > 0; mask >>= 1) exponent--;
  const mantissa = (value >> (exponent + 3)) & 0x0f;
  return ~(sign | (exponent << 4) | mantissa) & 0xff;
}

// Decoding is a 256-entry table.
export const DECODE = new Int16Array(256);
for (let i = 0; i < 256; i++) {
  const byte = ~i & 0xff;
  const exponent = (byte >> 4) & 0x07;
  const magnitude = ((((byte & 0x0f) << 3) + BIAS) << exponent) - BIAS;
  DECODE[i] = byte & 0x80 ? -magnitude : magnitude;
}

export function encode(floats) {
  const out = new Uint8Array(floats.length);
  for (let i = 0; i < floats.length; i++) {
    const clamped = Math.max(-1, Math.min(1, floats[i]));
    out[i] = encodeSample(Math.round(clamped * 32767));
  }
  return out;
}

export function decodeToFloat(bytes) {
  const out = new Float32Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = DECODE[bytes[i]] / 32768;
  return out;
}

export function base64ToBytes(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

export function bytesToBase64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
  return btoa(binary);
}
