"""Speech clips the fake Live server plays, and the caller clips tests and the demo send.

The WAVs in `app/assets/` are 16 kHz mono PCM16, rendered once with espeak-ng and sox by
`scripts/render_clips.sh` and committed; nothing here needs espeak. They load through
`importlib.resources`, so they work from an installed wheel as well as from the tree.
A name like `tone:1000:2.0` is a synthetic test tone instead (`tones.py`); it has no words.
"""

from __future__ import annotations

import io
import wave
from functools import cache
from importlib import resources
from math import gcd

import numpy as np
import numpy.typing as npt
from scipy.signal import resample_poly

from app.dev.fakes.live.tones import parse_tone

#: Clip name -> the words spoken in it (the transcripts the fake server reports).
#: Keep in step with scripts/render_clips.sh.
CLIPS: dict[str, str] = {
    "greeting": "Hello, thanks for calling Acme. How can I help you today?",
    "reply_booking": "Sure. I have booked your appointment for tomorrow at ten.",
    "reply_generic": "Okay, I can help with that.",
    "goodbye": "Thank you for calling. Goodbye!",
    "apology": "Sorry, we're having technical trouble right now. Please call again later.",
    "shutdown_notice": "Sorry, we have to end this call now. Please call back in a minute.",
    "caller_booking": "Hi, I'd like to book an appointment for tomorrow at ten, please.",
    "caller_goodbye": "That's all, thank you. Goodbye.",
}

#: Clips spoken by the agent (the fake model) and by the simulated caller.
AGENT_CLIPS: tuple[str, ...] = (
    "greeting",
    "reply_booking",
    "reply_generic",
    "goodbye",
    "apology",
    "shutdown_notice",
)
CALLER_CLIPS: tuple[str, ...] = ("caller_booking", "caller_goodbye")

#: Rate the committed WAVs are stored at.
ASSET_RATE = 16_000


def is_clip(name: str) -> bool:
    """Whether `name` is a committed clip or a well-formed tone name."""
    try:
        return name in CLIPS or parse_tone(name) is not None
    except ValueError:
        return False


def clip_text(name: str) -> str:
    """The transcript of clip `name` ("" for a tone); KeyError names the known clips."""
    if name.startswith("tone:") and is_clip(name):
        return ""
    try:
        return CLIPS[name]
    except KeyError:
        raise KeyError(f"unknown clip {name!r}; known: {sorted(CLIPS)}") from None


def load_clip(name: str, rate: int = ASSET_RATE) -> npt.NDArray[np.int16]:
    """Clip `name` as mono int16 samples at `rate` Hz (a read-only array; copy to modify)."""
    return _load(name, rate)


def clip_duration(name: str) -> float:
    """Length of clip `name` in seconds."""
    tone = parse_tone(name)
    if tone is not None:
        return tone.seconds
    return len(_load(name, ASSET_RATE)) / ASSET_RATE


@cache
def _load(name: str, rate: int) -> npt.NDArray[np.int16]:
    tone = parse_tone(name)
    if tone is not None:
        synthetic = tone.samples(rate)
        synthetic.flags.writeable = False
        return synthetic
    clip_text(name)  # fail early with the list of names
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    raw = resources.files("app").joinpath("assets", f"{name}.wav").read_bytes()
    samples, source_rate = _decode_wav(raw)
    out = samples if rate == source_rate else _resample(samples, source_rate, rate)
    out.flags.writeable = False
    return out


def _decode_wav(raw: bytes) -> tuple[npt.NDArray[np.int16], int]:
    with wave.open(io.BytesIO(raw)) as wav:
        if wav.getsampwidth() != 2:
            raise ValueError("clips must be 16-bit PCM")
        frames = wav.readframes(wav.getnframes())
        channels, source_rate = wav.getnchannels(), wav.getframerate()
    samples = np.frombuffer(frames, dtype="<i2").astype(np.int16)
    if channels > 1:  # mix down; the assets are mono, this only guards hand-made files
        samples = samples.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return samples, source_rate


def _resample(samples: npt.NDArray[np.int16], source: int, target: int) -> npt.NDArray[np.int16]:
    g = gcd(source, target)
    y: npt.NDArray[np.float64] = resample_poly(samples.astype(np.float64), target // g, source // g)
    return np.clip(np.rint(y), -32768, 32767).astype(np.int16)
