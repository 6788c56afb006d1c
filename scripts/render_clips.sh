#!/usr/bin/env bash
# Render the fake Live server's speech clips into app/assets/ (16 kHz mono PCM16 WAV).
#
# Run once when a clip's text changes; the WAVs are committed, so CI and users never
# need espeak-ng. Output is reproducible: fixed voice, rate and pitch, and sox runs
# with dithering off (-D) so the same tools give the same bytes.
#
# Needs: espeak-ng, sox   (Debian/Ubuntu: apt-get install -y espeak-ng sox)
# The texts must match CLIPS in app/dev/fakes/live/clips.py (a test checks the names).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/../app/assets}"
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

render() {
  local name="$1" voice="$2" text="$3"
  espeak-ng -v "$voice" -s 165 -p 50 -a 150 -w "$tmp/$name.raw.wav" "$text"
  # Resample to 16 kHz mono signed 16-bit, peak-normalise to -3 dBFS, trim edge silence
  # but keep 100 ms at each end so clips start and end cleanly.
  sox -D "$tmp/$name.raw.wav" -r 16000 -c 1 -b 16 -e signed-integer "$tmp/$name.wav" \
    silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse pad 0.1 0.1 gain -n -3
  # Strip any LIST/metadata chunk sox may add: keep a plain RIFF/fmt/data file.
  sox -D "$tmp/$name.wav" -t wavpcm "$out/$name.wav"
  printf '%-22s %s\n' "$name.wav" "$(soxi -D "$out/$name.wav")s"
}

# Agent voice (what the fake model says).
render greeting        en-us    "Hello, thanks for calling Acme. How can I help you today?"
render reply_booking   en-us    "Sure. I have booked your appointment for tomorrow at ten."
render reply_generic   en-us    "Okay, I can help with that."
render goodbye         en-us    "Thank you for calling. Goodbye!"
render apology         en-us    "Sorry, we're having technical trouble right now. Please call again later."
render shutdown_notice en-us    "Sorry, we have to end this call now. Please call back in a minute."
# Caller voice (what the simulated caller says), a different voice so recordings are legible.
render caller_booking  en-gb    "Hi, I'd like to book an appointment for tomorrow at ten, please."
render caller_goodbye  en-gb    "That's all, thank you. Goodbye."
