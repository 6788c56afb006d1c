"""Twilio's side of outbound playback, as the call simulator models it. Pure bookkeeping.

Wire facts (docs/protocols.md §3): Twilio buffers outbound media and plays it in order at
real time; a `mark` is echoed once all audio queued before it has played (at once if nothing
is queued); `clear` empties the buffer and echoes every pending mark immediately.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from telephony.mulaw import ulaw_to_pcm16

__all__ = ["FRAME_BYTES", "SILENCE_FRAME", "Ear", "Player", "Tick", "frame_rms"]

FRAME_BYTES = 160  # 20 ms of 8 kHz mu-law
SILENCE_FRAME = b"\xff" * FRAME_BYTES  # mu-law 0xFF decodes to 0


@dataclass(frozen=True, slots=True)
class Tick:
    """One 20 ms of playback."""

    frame: bytes  # 160 bytes of mu-law, padded with silence when the buffer ran short
    played: int  # bytes taken from the buffer (0: idle)
    marks: tuple[str, ...]  # marks playback reached during this tick


class Player:
    """Twilio's outbound audio buffer with a jitter-free player.

    Positions are byte counts since the stream began: a mark waits at the position where the
    buffer ended when it arrived, and is reached once that many bytes have played.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._played = 0
        self._marks: deque[tuple[int, str]] = deque()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def pending_marks(self) -> tuple[str, ...]:
        return tuple(name for _, name in self._marks)

    def push_audio(self, payload: bytes) -> None:
        self._buffer += payload

    def push_mark(self, name: str) -> tuple[str, ...]:
        """Queue a mark; returns it at once when nothing is left to play before it."""
        if not self._buffer:
            return (name,)
        self._marks.append((self._played + len(self._buffer), name))
        return ()

    def clear(self) -> tuple[str, ...]:
        """Drop the buffer; returns the pending marks, echoed now as discarded."""
        discarded = self.pending_marks
        self._buffer.clear()
        self._marks.clear()
        return discarded

    def tick(self) -> Tick:
        taken = bytes(self._buffer[:FRAME_BYTES])
        del self._buffer[:FRAME_BYTES]
        self._played += len(taken)
        reached: list[str] = []
        while self._marks and self._marks[0][0] <= self._played:
            reached.append(self._marks.popleft()[1])
        return Tick(taken + SILENCE_FRAME[len(taken) :], len(taken), tuple(reached))


def frame_rms(ulaw: bytes) -> float:
    pcm = ulaw_to_pcm16(ulaw).astype(np.float64)
    return float(np.sqrt(np.mean(pcm * pcm))) if pcm.size else 0.0


class Ear:
    """What the caller heard, tick by tick: voiced frames and playback gaps.

    An underrun is playback running short (buffer dry or a partial frame) after audio had
    begun, and resuming within `gap_window_ticks`; a longer quiet is the end of a reply.
    """

    def __init__(self, silence_rms: float, gap_window_ticks: int) -> None:
        self.silence_rms = silence_rms
        self.gap_window_ticks = gap_window_ticks
        self.frames = bytearray()
        self.voiced: list[bool] = []
        self.underruns = 0
        self.underrun_ticks = 0
        self._prev_played = 0
        self._gap_from: int | None = None

    def hear(self, tick: Tick) -> bool:
        """Record one tick; returns whether the caller heard speech in it."""
        k = len(self.voiced)
        if tick.played and self._gap_from is not None:
            if k - self._gap_from <= self.gap_window_ticks:
                self.underruns += 1
                self.underrun_ticks += k - self._gap_from
            self._gap_from = None
        if tick.played < FRAME_BYTES and self._prev_played and self._gap_from is None:
            self._gap_from = k
        self._prev_played = tick.played
        voiced = frame_rms(tick.frame) > self.silence_rms
        self.frames += tick.frame
        self.voiced.append(voiced)
        return voiced

    def first_voiced_at(self, from_tick: int) -> int | None:
        for k in range(max(from_tick, 0), len(self.voiced)):
            if self.voiced[k]:
                return k
        return None

    def quiet_ticks_since_voice(self, from_tick: int) -> int | None:
        """Ticks of silence after the last voiced tick at/after `from_tick` (None: no voice)."""
        for k in range(len(self.voiced) - 1, max(from_tick, 0) - 1, -1):
            if self.voiced[k]:
                return len(self.voiced) - 1 - k
        return None
