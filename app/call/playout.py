"""What the caller hears: re-framing, pacing and marks for outbound agent audio.

Pure bookkeeping (no I/O, no asyncio): the bridge feeds the agent's audio in, asks for
the next frame when the pacing budget allows, and reports Twilio's mark echoes back.

The model's audio (24 kHz) goes in as it comes (`push_source`) and is resampled to 8 kHz
only when it is about to go out, a whole burst at a time: one resampler call per
message rather than per Live chunk (each call is mostly fixed numpy overhead). The
resampler's output does not depend on how its input is cut, so this is the same audio.

Protocol facts this rests on (shared/protocols.md, section 3):
- Twilio plays outbound media in order as soon as it has it, at real time.
- A `mark` is echoed when everything queued before it has been played; after a
  `clear` every pending mark is echoed at once, meaning "discarded, not played".
- Audio sent ahead of real time sits in Twilio's buffer where only `clear` reaches it,
  so we stay at most `max_lead` seconds ahead of playback. Pacing is a cap, not a tick:
  a frame goes out the moment it exists while we are under the cap.
- Twilio accepts outbound media of any size, so frames that may go out together leave
  as one message: at the cap, we wait until `burst_frames` fit again rather than
  sending one 20 ms frame every 20 ms. Each message costs the same JSON, base64,
  WebSocket framing and socket write whatever its size; three frames per message is a
  third of that work and of the sender's wake-ups, and the lead stays between
  `max_lead - burst` and `max_lead`.
- The same holds below the cap (a model streaming at real time never reaches it):
  while Twilio still holds at least `low_water` of unplayed audio, fewer than
  `burst_frames` queued frames wait for the rest of their burst, or for the lead to
  fall to `low_water`, whichever comes first. The caller hears them at the same moment
  either way (Twilio plays in order, and its buffer has not run out); below
  `low_water`, or with nothing playing, a frame goes out the moment it exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from telephony.resample import StreamingResampler

FRAME_SAMPLES = 160  # 20 ms at 8 kHz
RATE = 8000


@dataclass(slots=True)
class PendingMark:
    name: str
    end_sample: int  # call-clock sample at which the audio before it ends playing
    purpose: str  # "turn" | "exit"


@dataclass(slots=True)
class Burst:
    """Whole 20 ms frames ready to go out as one message, placed on the call clock
    where their first sample will play."""

    pcm: NDArray[np.int16]
    start_sample: int


@dataclass
class Playout:
    """Outbound audio queue of one call. Times are call-clock samples at 8 kHz."""

    max_lead_samples: int = int(0.2 * RATE)
    burst_frames: int = 3  # at the cap, wait until this many frames fit (60 ms)
    # Below it, a partial burst goes out at once; above it, it waits (see the docstring).
    low_water_samples: int = int(0.06 * RATE)
    # Model audio -> 8 kHz (None: only 8 kHz audio is pushed, as in tests).
    resampler: StreamingResampler | None = None
    _buffer: NDArray[np.int16] = field(default_factory=lambda: np.zeros(0, np.int16))
    _source: list[NDArray[np.int16]] = field(default_factory=list)  # not yet resampled
    _source_samples: int = 0
    _source_out: int = 0  # 8 kHz samples `_source` will yield
    _play_end: int = 0  # where the audio sent so far finishes playing
    _mark_seq: int = 0
    pending_marks: dict[str, PendingMark] = field(default_factory=dict)
    discarded_marks: set[str] = field(default_factory=set)

    # --- feeding ---------------------------------------------------------------
    def push(self, pcm: NDArray[np.int16]) -> None:
        """Queue 8 kHz audio (after any model audio still waiting to be resampled)."""
        self._resample()
        self._append(pcm)

    def push_source(self, pcm: NDArray[np.int16]) -> None:
        """Queue model audio at the resampler's input rate; resampled when it goes out.

        `pcm` may be a read-only view of the Live message: it is only read, at the
        latest when the burst it belongs to is sent.
        """
        if self.resampler is None:
            raise RuntimeError("push_source needs a Playout made with a resampler")
        if pcm.size:
            self._source.append(pcm)
            self._source_samples += pcm.size
            self._source_out = self.resampler.outputs_for(self._source_samples)

    def _resample(self) -> None:
        if not self._source or self.resampler is None:
            return
        source = self._source[0] if len(self._source) == 1 else np.concatenate(self._source)
        self._source, self._source_samples, self._source_out = [], 0, 0
        self._append(self.resampler.process(source))

    def _append(self, pcm: NDArray[np.int16]) -> None:
        if pcm.size:
            self._buffer = np.concatenate((self._buffer, pcm)) if self._buffer.size else pcm

    def flush_partial(self) -> None:
        """Pad a trailing partial frame with silence so a turn's last words go out."""
        self._resample()
        remainder = self._buffer.size % FRAME_SAMPLES
        if remainder:
            pad = np.zeros(FRAME_SAMPLES - remainder, np.int16)
            self._buffer = np.concatenate((self._buffer, pad))

    @property
    def queued_samples(self) -> int:
        return int(self._buffer.size) + self._source_out

    def has_frame(self) -> bool:
        return self._buffer.size + self._source_out >= FRAME_SAMPLES

    # --- pacing ----------------------------------------------------------------
    def wait_samples(self, now: int) -> int:
        """How long (in samples) until the sender should wake: when a burst's worth of
        the queued frames fits under the cap, or (fewer than a burst queued) when the
        lead has fallen to the low-water mark; 0 = now."""
        queued = self.queued_samples // FRAME_SAMPLES
        lead = max(0, self._play_end - now)
        if queued < self.burst_frames:
            # A partial burst: it goes when the lead is down to low water (and it fits).
            fits_in = lead + max(queued, 1) * FRAME_SAMPLES - self.max_lead_samples
            return max(0, lead - self.low_water_samples, fits_in)
        return max(0, lead + self.burst_frames * FRAME_SAMPLES - self.max_lead_samples)

    def ready(self, now: int) -> bool:
        """Whether `next_burst(now)` would send anything (cheap; no state changes)."""
        return self.has_frame() and self.wait_samples(now) == 0

    def next_burst(self, now: int) -> Burst | None:
        """Pop every whole frame the pacing budget allows now, as one block (None when
        not even one fits, none is queued, or a partial burst waits for low water)."""
        lead = max(0, self._play_end - now)
        fit = (self.max_lead_samples - lead) // FRAME_SAMPLES
        queued = self.queued_samples // FRAME_SAMPLES
        frames = min(fit, queued)
        if frames <= 0 or (queued < self.burst_frames and lead > self.low_water_samples):
            return None
        self._resample()  # the burst's model audio, in one resampler call
        size = frames * FRAME_SAMPLES
        pcm = self._buffer[:size]
        self._buffer = self._buffer[size:]
        start = max(now, self._play_end)
        self._play_end = start + size
        return Burst(pcm, start)

    def playing_until(self) -> int:
        """Call-clock sample at which everything sent so far has been played."""
        return self._play_end

    # --- marks -----------------------------------------------------------------
    def new_mark(self, purpose: str) -> PendingMark:
        self._mark_seq += 1
        mark = PendingMark(f"{purpose}-{self._mark_seq}", self._play_end, purpose)
        self.pending_marks[mark.name] = mark
        return mark

    def mark_echoed(self, name: str) -> tuple[PendingMark | None, bool]:
        """Twilio echoed a mark: (the mark, whether its audio was really played)."""
        if name in self.discarded_marks:
            self.discarded_marks.discard(name)
            return None, False
        mark = self.pending_marks.pop(name, None)
        return mark, mark is not None

    # --- barge-in --------------------------------------------------------------
    def clear(self, now: int) -> int:
        """Drop everything queued or unplayed. Returns the sample where playback stopped.
        The resampler starts afresh: the next audio must not ring with the dropped."""
        self._buffer = np.zeros(0, np.int16)
        self._source, self._source_samples, self._source_out = [], 0, 0
        if self.resampler is not None:
            self.resampler.reset()
        stopped_at = min(now, self._play_end)
        self._play_end = now
        self.discarded_marks.update(self.pending_marks)
        self.pending_marks.clear()
        return stopped_at
