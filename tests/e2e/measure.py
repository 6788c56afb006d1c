"""Pure audio measurements for the end-to-end tests: tones, levels, spectra, alignment."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

#: Treat anything below this as digital silence when converting to dB.
FLOOR = 1e-9


def tone(
    freq: float, seconds: float, amplitude: float = 8000.0, rate: int = 8000
) -> NDArray[np.int16]:
    """A sine burst with 10 ms raised-cosine ramps (no clicks)."""
    n = round(seconds * rate)
    y = amplitude * np.sin(2 * np.pi * freq * np.arange(n) / rate)
    ramp = min(round(0.01 * rate), n // 2)
    fade = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    y[:ramp] *= fade
    y[n - ramp :] *= fade[::-1]
    return np.rint(y).astype(np.int16)


def silence(seconds: float, rate: int = 8000) -> NDArray[np.int16]:
    return np.zeros(round(seconds * rate), np.int16)


def concat(*parts: NDArray[np.int16]) -> NDArray[np.int16]:
    return np.concatenate(parts).astype(np.int16)


def rms(x: NDArray[np.generic]) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2))) if x.size else 0.0


def db(ratio: float) -> float:
    return float(20 * np.log10(max(ratio, FLOOR)))


def voiced(x: NDArray[np.int16], threshold: float = 300.0, rate: int = 8000) -> NDArray[np.bool_]:
    """Per 20 ms block: whether its RMS is above `threshold`."""
    block = rate // 50
    n = x.size // block
    blocks = np.asarray(x[: n * block], np.float64).reshape(n, block)
    return np.sqrt(np.mean(blocks**2, axis=1)) > threshold


def voiced_span(
    x: NDArray[np.int16], threshold: float = 300.0, rate: int = 8000
) -> tuple[int, int] | None:
    """(first, last+1) sample of the blocks above `threshold`, or None if all quiet."""
    flags = voiced(x, threshold, rate)
    if not flags.any():
        return None
    block = rate // 50
    idx = np.flatnonzero(flags)
    return int(idx[0] * block), int((idx[-1] + 1) * block)


def band_level(x: NDArray[np.int16], freq: float, rate: int, width: float = 50.0) -> float:
    """RMS (int16 units) of the part of `x` within `width` Hz of `freq` (Hann window)."""
    data = np.asarray(x, np.float64)
    if data.size == 0:
        return 0.0
    window = np.hanning(data.size)
    spectrum = np.fft.rfft(data * window)
    freqs = np.fft.rfftfreq(data.size, 1 / rate)
    band = np.abs(freqs - freq) <= width
    # Parseval with the window's power gain: the RMS a sine in the band would have.
    power = np.sum(np.abs(spectrum[band]) ** 2) * 2 / (data.size * np.sum(window**2))
    return float(np.sqrt(power))


def peak_frequency(x: NDArray[np.int16], rate: int) -> float:
    data = np.asarray(x, np.float64)
    spectrum = np.abs(np.fft.rfft(data * np.hanning(data.size)))
    spectrum[0] = 0.0
    return float(np.fft.rfftfreq(data.size, 1 / rate)[int(np.argmax(spectrum))])


def middle(x: NDArray[np.int16], span: tuple[int, int], trim: int) -> NDArray[np.int16]:
    """`x[span]` with `trim` samples cut from both ends (away from onsets and ramps)."""
    start, end = span
    return x[start + trim : end - trim]


def best_match(heard: NDArray[np.int16], clip: NDArray[np.int16]) -> tuple[float, int]:
    """(normalized correlation, offset) of `clip` where it best fits inside `heard`."""
    h = np.asarray(heard, np.float64)
    c = np.asarray(clip, np.float64)
    if h.size < c.size:
        h = np.concatenate([h, np.zeros(c.size - h.size)])
    n = 1 << int(np.ceil(np.log2(h.size + c.size)))
    corr = np.fft.irfft(np.fft.rfft(h, n) * np.conj(np.fft.rfft(c, n)), n)[: h.size - c.size + 1]
    energy = np.convolve(h**2, np.ones(c.size), mode="valid")
    score = corr / (np.sqrt(np.maximum(energy, FLOOR)) * np.linalg.norm(c))
    offset = int(np.argmax(score))
    return float(score[offset]), offset


def heard_in_full(heard: NDArray[np.int16], clip: NDArray[np.int16], slack: int = 320) -> bool:
    """Whether `heard` has a voiced stretch as long as `clip`'s own (within `slack`)."""
    mine, theirs = voiced_span(heard), voiced_span(clip)
    assert theirs is not None, "the clip is silent"
    return mine is not None and (mine[1] - mine[0]) >= (theirs[1] - theirs[0]) - slack


@dataclass(frozen=True)
class Segment:
    """One stretch of sound: where (samples), its loudest frequency and its RMS."""

    start: int
    end: int
    freq: float
    level: float

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / 8000


def segments(
    x: NDArray[np.int16], rate: int = 8000, threshold: float = 300.0, gap_blocks: int = 3
) -> list[Segment]:
    """The sounds in `x`, split where it is quiet for more than `gap_blocks` x 20 ms."""
    flags = voiced(x, threshold, rate)
    block = rate // 50
    found: list[Segment] = []
    idx = np.flatnonzero(flags)
    if idx.size == 0:
        return found
    breaks = np.flatnonzero(np.diff(idx) > gap_blocks + 1)
    for first, last in zip(
        np.concatenate(([idx[0]], idx[breaks + 1])),
        np.concatenate((idx[breaks], [idx[-1]])),
        strict=True,
    ):
        start, end = int(first * block), int((last + 1) * block)
        part = x[start:end]
        found.append(Segment(start, end, peak_frequency(part, rate), rms(part)))
    return found
