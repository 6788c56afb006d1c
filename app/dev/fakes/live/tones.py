"""Synthetic test tones the fake server can play in place of a speech clip.

A scenario names one like a clip: `"tone:1000:2.0"` is 1 kHz for 2 s at the default
level, `"tone:5000:1.5:-20"` adds the peak level in dBFS. Tests use them to measure
what the caller hears (frequency, level, aliasing), which speech cannot show.

Each tone starts and ends with a short raised-cosine ramp: an abrupt start is a click,
whose broadband energy would leak below the telephone band and mask what a test of a
tone above 4 kHz is measuring.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

PREFIX = "tone:"
#: Peak level when the name gives none: -12 dBFS (amplitude ~8225), well clear of clipping.
DEFAULT_DBFS = -12.0
RAMP_SECONDS = 0.01
MAX_SECONDS = 600.0
_NUMBER = r"([0-9]+(?:\.[0-9]+)?)"
_NAME_RE = re.compile(rf"^tone:{_NUMBER}:{_NUMBER}(?::(-?[0-9]+(?:\.[0-9]+)?))?$")


@dataclass(frozen=True, slots=True)
class Tone:
    frequency: float  # Hz
    seconds: float
    dbfs: float = DEFAULT_DBFS  # peak level

    @property
    def amplitude(self) -> float:
        """Peak amplitude in int16 units."""
        return float(32767 * 10 ** (self.dbfs / 20))

    @property
    def name(self) -> str:
        return tone_name(self.frequency, self.seconds, self.dbfs)

    def samples(self, rate: int) -> npt.NDArray[np.int16]:
        """The tone at `rate` Hz; ValueError if the frequency is not below rate/2."""
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        if self.frequency >= rate / 2:
            raise ValueError(f"a {self.frequency:g} Hz tone cannot be sampled at {rate} Hz")
        n = round(self.seconds * rate)
        t = np.arange(n) / rate
        y = self.amplitude * np.sin(2 * np.pi * self.frequency * t)
        ramp = min(round(RAMP_SECONDS * rate), n // 2)
        if ramp:
            fade = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
            y[:ramp] *= fade
            y[n - ramp :] *= fade[::-1]
        return np.clip(np.rint(y), -32768, 32767).astype(np.int16)


def tone_name(frequency: float, seconds: float, dbfs: float | None = None) -> str:
    """The clip name of a tone, e.g. `tone_name(1000, 2)` -> "tone:1000:2"."""
    name = f"{PREFIX}{frequency:g}:{seconds:g}"
    return name if dbfs is None or dbfs == DEFAULT_DBFS else f"{name}:{dbfs:g}"


def parse_tone(name: str) -> Tone | None:
    """The tone a clip name describes, or None if it is not a tone name.

    Raises ValueError for a tone name with impossible values (zero length, above 0 dBFS).
    """
    if not name.startswith(PREFIX):
        return None
    match = _NAME_RE.match(name)
    if match is None:
        raise ValueError(f"{name!r}: write a tone as tone:HZ:SECONDS[:DBFS], e.g. tone:1000:2")
    frequency, seconds = float(match.group(1)), float(match.group(2))
    dbfs = DEFAULT_DBFS if match.group(3) is None else float(match.group(3))
    if frequency <= 0 or not 0 < seconds <= MAX_SECONDS or dbfs > 0:
        raise ValueError(
            f"{name!r}: a tone needs a frequency > 0, 0 < seconds <= {MAX_SECONDS:g} "
            "and a level <= 0 dBFS"
        )
    return Tone(frequency, seconds, dbfs)
