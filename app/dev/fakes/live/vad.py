"""Energy-based voice activity detection for the fake server, in audio time.

Sans-I/O: feed int16 samples, get events back. Audio is cut into 20 ms windows; a window
is loud when its RMS exceeds the threshold. Speech starts after `min_speech_ms` of loud
windows in a row and ends after `silence_ms` of quiet windows in a row. Working in audio
time (not wall time) makes tests deterministic even when they send audio faster than
real time.
"""

from __future__ import annotations

import enum

import numpy as np
import numpy.typing as npt

WINDOW_MS = 20


class VadEvent(enum.Enum):
    SPEECH_START = "speech_start"
    SPEECH_END = "speech_end"


class EnergyVad:
    def __init__(self, rms_threshold: float, min_speech_ms: int, silence_ms: int) -> None:
        self._threshold = rms_threshold
        self._min_speech_ms = min_speech_ms
        self._silence_ms = silence_ms
        self._pending = np.zeros(0, dtype=np.int16)
        self._rate = 0
        self._loud_ms = 0
        self._quiet_ms = 0
        self.in_speech = False

    def feed(self, samples: npt.NDArray[np.int16], rate: int) -> list[VadEvent]:
        """Consume samples at `rate` Hz; return the events they complete, in order."""
        if rate != self._rate:  # a rate change drops the partial window
            self._rate, self._pending = rate, np.zeros(0, dtype=np.int16)
        buf = np.concatenate([self._pending, samples])
        window = rate * WINDOW_MS // 1000
        full = len(buf) // window
        self._pending = buf[full * window :]
        events: list[VadEvent] = []
        if full == 0:
            return events
        frames = buf[: full * window].astype(np.float64).reshape(full, window)
        rms = np.sqrt(np.mean(frames * frames, axis=1))
        for loud in rms > self._threshold:
            event = self._step(bool(loud))
            if event is not None:
                events.append(event)
        return events

    def flush(self) -> list[VadEvent]:
        """The input stream ended (audioStreamEnd): end any speech in progress."""
        self._pending = np.zeros(0, dtype=np.int16)
        self._loud_ms = self._quiet_ms = 0
        if self.in_speech:
            self.in_speech = False
            return [VadEvent.SPEECH_END]
        return []

    def _step(self, loud: bool) -> VadEvent | None:
        if loud:
            self._loud_ms += WINDOW_MS
            self._quiet_ms = 0
        else:
            self._quiet_ms += WINDOW_MS
            self._loud_ms = 0
        if not self.in_speech and self._loud_ms >= self._min_speech_ms:
            self.in_speech = True
            return VadEvent.SPEECH_START
        if self.in_speech and self._quiet_ms >= self._silence_ms:
            self.in_speech = False
            return VadEvent.SPEECH_END
        return None
