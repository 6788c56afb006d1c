"""Audio for the recorder, handed over in runs of contiguous frames (fewer wake-ups)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray


class AudioBatch:
    """Caller audio for the recorder, handed over in runs of contiguous frames.

    Each hand-over wakes the recorder's writer thread; at one per 20 ms frame per call,
    those wake-ups (and the GIL switches they force on the event loop) cost more than
    the recording itself. Placement is by position, so the file is the same; commits
    (driven by the caller's position) just happen up to one batch later.
    """

    __slots__ = ("_limit", "_next", "_parts", "_place", "_start")

    def __init__(self, place: Callable[[int, NDArray[np.int16]], None], frames: int) -> None:
        self._place = place
        self._limit = frames
        self._parts: list[NDArray[np.int16]] = []
        self._start = 0
        self._next = 0

    def add(self, at_sample: int, pcm: NDArray[np.int16]) -> None:
        if self._parts and at_sample != self._next:
            self.flush()
        if not self._parts:
            self._start = at_sample
        self._parts.append(pcm)
        self._next = at_sample + pcm.size
        if len(self._parts) >= self._limit:
            self.flush()

    def flush(self) -> None:
        parts, self._parts = self._parts, []
        if parts:
            self._place(self._start, parts[0] if len(parts) == 1 else np.concatenate(parts))
