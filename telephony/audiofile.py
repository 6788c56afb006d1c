"""WAV files in and out: caller speech for the simulator, recordings for people to hear.

Offline and one-shot, so a plain polyphase resample of the whole file is right here; the
streaming resamplers for live audio are in `telephony.resample`.
"""

from __future__ import annotations

import wave
from math import gcd
from os import PathLike
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.signal import resample_poly

__all__ = ["TARGET_RATE", "load_audio_8k", "write_wav"]

TARGET_RATE = 8000
_INT16_MIN, _INT16_MAX = -32768, 32767

StrPath = str | PathLike[str]


def _to_int16_scale(raw: bytes, width: int) -> NDArray[np.float64]:
    """PCM frames of any supported width as floats on the int16 scale."""
    if width == 1:  # 8-bit WAV is unsigned, centred on 128
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) * 256.0
    if width == 2:
        return np.frombuffer(raw, dtype="<i2").astype(np.float64)
    if width == 3:  # little-endian 24-bit: widen to int32 by placing bytes high, then shift
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        value = (b[:, 0] << 8) | (b[:, 1] << 16) | (b[:, 2] << 24)
        return (value >> 8).astype(np.float64) / 256.0
    if width == 4:
        return np.frombuffer(raw, dtype="<i4").astype(np.float64) / 65536.0
    raise ValueError(f"unsupported sample width {width * 8} bits")


def _read(path: StrPath) -> tuple[NDArray[np.float64], int]:
    """Mono float samples (int16 scale) and their rate."""
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            raw = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        # wave.Error covers non-RIFF files and non-PCM formats (float, WAVE_FORMAT_EXTENSIBLE
        # before Python 3.12); EOFError a truncated header.
        raise ValueError(f"{path}: not a readable PCM WAV file ({exc})") from None
    if rate <= 0 or channels <= 0:
        raise ValueError(f"{path}: invalid WAV header (rate {rate}, channels {channels})")
    try:
        samples = _to_int16_scale(raw[: len(raw) - len(raw) % (width * channels)], width)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    # Mix to mono by averaging: the sum of full-scale channels would clip.
    return samples.reshape(-1, channels).mean(axis=1), rate


def load_audio_8k(path: StrPath) -> NDArray[np.int16]:
    """Read a PCM WAV (8/16/24/32-bit, any rate, mono or stereo) as 8 kHz mono int16."""
    samples, rate = _read(path)
    if rate != TARGET_RATE and samples.size:
        g = gcd(TARGET_RATE, rate)
        samples = resample_poly(samples, TARGET_RATE // g, rate // g)
    return np.clip(np.rint(samples), _INT16_MIN, _INT16_MAX).astype(np.int16)


def write_wav(path: StrPath, samples: NDArray[Any], rate: int, channels: int = 1) -> None:
    """Write int16 samples as a PCM WAV.

    `samples` is 1-D (mono, or already interleaved) or shaped (frames, channels).
    """
    array = np.asarray(samples)
    if array.dtype != np.int16:
        raise ValueError(f"write_wav expects int16 samples, got {array.dtype}")
    if array.ndim == 2 and array.shape[1] != channels:
        raise ValueError(f"samples have {array.shape[1]} columns but channels={channels}")
    if array.ndim > 2 or array.size % channels:
        raise ValueError(f"samples of shape {array.shape} do not divide into {channels} channels")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(array.astype("<i2").tobytes())
