"""Client-side speech marks for agents that turn Gemini's own voice detection off.

With `realtimeInputConfig.automaticActivityDetection.disabled = true` the Live API only
treats audio between the client's `activityStart` and `activityEnd` as the caller's
turn. The bridge then feeds every caller frame's loudness here (its energy gate,
mean |x| > 300 at 8 kHz): the first loud frame opens a turn (before its audio is sent),
and `silence_ms` of quiet closes it.
"""

from __future__ import annotations

from typing import Literal, Protocol

FRAME_MS = 20
DEFAULT_SILENCE_MS = 600

Mark = Literal["start", "end"]


class SpeechTurns:
    """Pure: loud/quiet frames in, turn marks out."""

    def __init__(self, silence_ms: int = DEFAULT_SILENCE_MS) -> None:
        self._end_after = max(1, silence_ms // FRAME_MS)
        self._speaking = False
        self._quiet = 0

    def feed(self, loud: bool) -> Mark | None:
        if loud:
            self._quiet = 0
            if not self._speaking:
                self._speaking = True
                return "start"
            return None
        if self._speaking:
            self._quiet += 1
            if self._quiet >= self._end_after:
                return self.pause()
        return None

    def pause(self) -> Mark | None:
        """The input stopped (a stalled stream): close an open turn."""
        if not self._speaking:
            return None
        self._speaking, self._quiet = False, 0
        return "end"


class ActivityLink(Protocol):
    async def send_activity_start(self) -> None: ...
    async def send_activity_end(self) -> None: ...


class ActivityMarker:
    """Sends the marks `SpeechTurns` makes; the bridge awaits it before a frame's audio."""

    def __init__(self, link: ActivityLink, silence_ms: int | None = None) -> None:
        self._link = link
        self._turns = SpeechTurns(silence_ms or DEFAULT_SILENCE_MS)
        self.marks: list[Mark] = []

    async def frame(self, loud: bool) -> None:
        await self._send(self._turns.feed(loud))

    async def pause(self) -> None:
        await self._send(self._turns.pause())

    async def _send(self, mark: Mark | None) -> None:
        if mark is None:
            return
        self.marks.append(mark)
        if mark == "start":
            await self._link.send_activity_start()
        else:
            await self._link.send_activity_end()
