"""The not-yet-committed window of a call's two channels, on the call clock.

Pure: no I/O, no threads. The recorder's writer thread owns one `Timeline` and asks it
for the stereo frames that can no longer change (`take`), which it then appends to disk.

Why a window at all: the bridge schedules agent audio up to ~200 ms (at most ~1 s)
before the caller hears it, and a barge-in removes whatever was scheduled but not yet
played. Only audio older than what the caller is known to have heard (the newest caller
position, or an explicit `advance`) is committed, so the file holds what was heard.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

CALLER = 0  # left channel
AGENT = 1  # right channel


class Timeline:
    """Stereo int16 samples from `committed` to `end`, placed by call-clock position."""

    def __init__(self, *, max_pending: int, max_jump: int, holdback: int = 0) -> None:
        # The caller's positions come from Twilio's timestamps, the agent's from the
        # bridge's playout clock; they agree only to within network jitter. Holding the
        # newest `holdback` samples lets an agent frame placed slightly behind the newest
        # caller frame (the first frame of a turn, sent "now") still land in the file.
        self._holdback = holdback
        # Agent audio scheduled further than `max_pending` past what was heard is
        # committed anyway: nothing legitimately clears that far back, and it bounds memory.
        self._max_pending = max_pending
        # A position further than `max_jump` past the window is a bogus timestamp, not
        # a gap: filling it with silence could take gigabytes.
        self._max_jump = max_jump
        self._buf: NDArray[np.int16] = np.zeros((0, 2), dtype=np.int16)
        self._len = 0
        self.committed = 0
        self.heard_until = 0
        self.agent_end = 0
        self.late_samples = 0  # placed before `committed`: too late to be recorded
        self.cleared_samples = 0  # scheduled agent audio removed before it was heard
        self.late_clear_samples = 0  # a clear reached back into audio already committed
        self.unplayed_samples = 0  # agent audio scheduled past the end of the call

    @property
    def end(self) -> int:
        return self.committed + self._len

    def place(self, channel: int, at: int, pcm: NDArray[np.int16]) -> None:
        """Put `pcm` at call-clock sample `at` on one channel (overwriting; gaps stay silent)."""
        self._check_jump(at)
        skip = max(0, self.committed - at)
        if skip >= len(pcm):
            self.late_samples += len(pcm)
            return
        self.late_samples += skip
        start, stop = at + skip, at + len(pcm)
        self._grow(stop)
        self._buf[start - self.committed : stop - self.committed, channel] = pcm[skip:]
        if channel == CALLER:
            self.heard_until = max(self.heard_until, stop)
        else:
            self.agent_end = max(self.agent_end, stop)

    def clear_agent(self, at: int) -> None:
        """Barge-in: remove all agent audio scheduled at or after `at`."""
        at = max(at, 0)
        self.late_clear_samples += max(0, min(self.committed, self.agent_end) - at)
        start = max(at, self.committed)
        self.cleared_samples += max(0, self.agent_end - start)
        self._buf[start - self.committed : self._len, AGENT] = 0
        self.agent_end = min(self.agent_end, start)

    def advance(self, now: int) -> None:
        """The caller has heard everything before `now` (when caller audio is not flowing)."""
        self._check_jump(now)
        self.heard_until = max(self.heard_until, now)

    def take(self) -> NDArray[np.int16]:
        """Hand out, and forget, the frames that can no longer be cleared: shape (n, 2)."""
        heard = self.heard_until - self._holdback
        return self._take_until(max(heard, self.end - self._max_pending))

    def finish(self) -> NDArray[np.int16]:
        """The call ended: hand out the rest of what was heard, drop what never played."""
        frames = self._take_until(self.heard_until)
        self.unplayed_samples += max(0, self.agent_end - self.committed)
        self.agent_end = min(self.agent_end, self.committed)
        self._buf[: self._len] = 0
        self._len = 0
        return frames

    def _take_until(self, target: int) -> NDArray[np.int16]:
        n = max(0, target - self.committed)
        self._grow(self.committed + n)
        frames = self._buf[:n].copy()
        # The window is ~1 s, so moving the remainder down is cheap and keeps it contiguous.
        rest = self._len - n
        self._buf[:rest] = self._buf[n : self._len]
        self._buf[rest : self._len] = 0
        self._len = rest
        self.committed += n
        return frames

    def _grow(self, stop: int) -> None:
        needed = stop - self.committed
        if needed <= self._len:
            return
        if needed > len(self._buf):
            bigger = np.zeros((max(needed, 2 * len(self._buf), 8000), 2), dtype=np.int16)
            bigger[: self._len] = self._buf[: self._len]
            self._buf = bigger
        self._len = needed

    def _check_jump(self, at: int) -> None:
        if at - max(self.end, self.heard_until) > self._max_jump:
            raise ValueError(f"position {at} jumps more than {self._max_jump} samples ahead")
