"""In-memory peers for bridge tests: a scripted Live session and a Twilio-like socket.

These follow the same contracts as the real peers (the `LiveSession` interface; Twilio's
playback, mark and clear semantics) without sockets, so bridge logic is tested exactly.
End-to-end tests over real sockets live in test_e2e_*.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np

from app.errors import LiveClosedError, LiveSetupError
from app.live.events import LiveEvent, SessionInfo, ToolResponse
from app.live.options import LiveOptions
from telephony.messages import (
    Mark,
    Media,
    OutboundClear,
    OutboundMark,
    OutboundMedia,
    Stop,
    TwilioMessage,
    parse_outbound,
)
from telephony.mulaw import pcm16_to_ulaw, ulaw_to_pcm16

_CLOSE = object()


class ScriptedSession:
    def __init__(self, name: str = "s1", resumed_from: str | None = None) -> None:
        self.info = SessionInfo(session_id=name, resumed_from=resumed_from)
        self.audio: list[bytes] = []
        self.texts: list[str] = []
        self.tool_responses: list[ToolResponse] = []
        self.stream_ends = 0
        self.activity: list[str] = []
        self.closed = False
        self._events: asyncio.Queue[object] = asyncio.Queue()

    def emit(self, *events: LiveEvent) -> None:
        for event in events:
            self._events.put_nowait(event)

    def drop(self) -> None:
        """The server closes the connection abruptly."""
        self._events.put_nowait(_CLOSE)

    async def send_audio(self, pcm16k: bytes) -> None:
        if self.closed:
            raise LiveClosedError("closed")
        self.audio.append(pcm16k)

    async def send_audio_stream_end(self) -> None:
        self.stream_ends += 1

    async def send_text(self, text: str) -> None:
        self.texts.append(text)

    async def send_activity_start(self) -> None:
        self.activity.append("start")

    async def send_activity_end(self) -> None:
        self.activity.append("end")

    async def send_tool_responses(self, responses: list[ToolResponse]) -> None:
        self.tool_responses.extend(responses)

    async def events(self) -> AsyncIterator[LiveEvent]:
        while True:
            item = await self._events.get()
            if item is _CLOSE:
                self.closed = True
                raise LiveClosedError("dropped by the server")
            yield item  # type: ignore[misc]

    async def close(self) -> None:
        self.closed = True


@dataclass
class ScriptedConnector:
    sessions: list[ScriptedSession] = field(default_factory=list)
    refuse: int = 0  # how many connects fail before one succeeds
    handles: list[str | None] = field(default_factory=list)
    options: list[LiveOptions | None] = field(default_factory=list)
    histories: list[str | None] = field(default_factory=list)
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    async def connect(
        self,
        *,
        resume_handle: str | None = None,
        options: LiveOptions | None = None,
        history: str | None = None,
    ) -> ScriptedSession:
        self.handles.append(resume_handle)
        self.options.append(options)
        self.histories.append(history)
        if self.refuse:
            self.refuse -= 1
            raise LiveSetupError(
                "Live refused setup: code 1007: API key not valid",
                code=1007,
                reason="API key not valid. Please pass a valid API key.",
            )
        session = ScriptedSession(f"s{len(self.sessions) + 1}", resume_handle)
        self.sessions.append(session)
        self.connected.set()
        return session


class FakeTwilioSocket:
    """Plays outbound media at real time, echoes marks after playback, honours clear."""

    def __init__(self, stream_sid: str = "MZtest") -> None:
        self.stream_sid = stream_sid
        self.inbound: asyncio.Queue[TwilioMessage | None] = asyncio.Queue()
        self.sent: list[tuple[float, object]] = []
        self.heard: list[tuple[float, bytes]] = []  # (play start time, mu-law frame)
        self.closed: tuple[int, str | None] | None = None
        self._play_end = 0.0
        self._pending: list[tuple[float, str, asyncio.TimerHandle]] = []
        self._seq = 100

    async def send_text(self, data: str) -> None:
        message = parse_outbound(data)
        now = time.monotonic()
        self.sent.append((now, message))
        if isinstance(message, OutboundMedia):
            start = max(now, self._play_end)
            self._play_end = start + len(message.payload) / 8000
            self.heard.append((start, message.payload))
        elif isinstance(message, OutboundMark):
            delay = max(0.0, self._play_end - now)
            handle = asyncio.get_running_loop().call_later(delay, self._echo, message.name)
            self._pending.append((self._play_end, message.name, handle))
        elif isinstance(message, OutboundClear):
            # Audio not yet played is dropped; pending marks are echoed at once.
            self.heard = [(t, p) for t, p in self.heard if t < now]
            self._play_end = now
            pending, self._pending = self._pending, []
            for _, name, handle in pending:
                handle.cancel()
                self._echo(name)

    def _echo(self, name: str) -> None:
        self._pending = [p for p in self._pending if p[1] != name]
        self._seq += 1
        self.inbound.put_nowait(Mark(self._seq, self.stream_sid, name))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = (code, reason)
        self.inbound.put_nowait(None)

    async def messages(self) -> AsyncIterator[TwilioMessage]:
        while (message := await self.inbound.get()) is not None:
            yield message

    def speak(self, pcm8k: np.ndarray, start_ms: int = 0) -> None:
        """Queue caller audio as 20 ms media frames (delivered as fast as read)."""
        payload = pcm16_to_ulaw(pcm8k.astype(np.int16))
        for i in range(0, len(payload) - 159, 160):
            self._seq += 1
            self.inbound.put_nowait(
                Media(
                    self._seq,
                    self.stream_sid,
                    "inbound",
                    i // 160 + 1,
                    start_ms + i // 8,
                    payload[i : i + 160],
                )
            )

    def hang_up(self) -> None:
        self._seq += 1
        self.inbound.put_nowait(Stop(self._seq, self.stream_sid, "AC1", "CA1"))

    def heard_pcm(self) -> np.ndarray:
        return ulaw_to_pcm16(b"".join(p for _, p in self.heard))

    def clears(self) -> list[float]:
        return [t for t, m in self.sent if isinstance(m, OutboundClear)]

    def media_after(self, t: float) -> int:
        return sum(1 for ts, m in self.sent if isinstance(m, OutboundMedia) and ts > t)
