"""A Live connection that survives Gemini's connection limits.

One connection lives ~10 minutes; `goAway` arrives ~60 s before the cut. We keep the
newest resumable handle and, on `goAway` (at the next turn boundary) or an unexpected
close, reconnect with it while caller audio is buffered, so the conversation goes on
with its context. Retries are bounded, with backoff.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import structlog

from app.errors import LiveClosedError, LiveSetupError
from app.live.events import (
    AgentAudio,
    GoAway,
    Interrupted,
    LiveConnector,
    LiveEvent,
    LiveSession,
    ResumptionUpdate,
    ToolResponse,
    TurnComplete,
)

# Caller audio kept while reconnecting: 10 s at 16 kHz PCM16 in 20 ms frames.
MAX_BUFFERED_FRAMES = 500
BACKOFF_SECONDS = (0.2, 0.5, 1.0, 2.0, 4.0)


@dataclass(frozen=True, slots=True)
class Reconnected:
    """Pseudo-event: the link is on a new connection (`reason`: goaway | dropped)."""

    reason: str
    attempts: int
    setup_seconds: float


LinkEvent = LiveEvent | Reconnected


class LiveLink:
    def __init__(
        self,
        connector: LiveConnector,
        *,
        first: Awaitable[LiveSession] | None = None,
        max_reconnects: int = 3,
        log: structlog.typing.FilteringBoundLogger | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._connector = connector
        self._first = first
        self._max_reconnects = max_reconnects
        self._log = log or structlog.get_logger()
        self._sleep = sleep
        self._session: LiveSession | None = None
        self._connected = asyncio.Event()
        self._buffer: collections.deque[bytes] = collections.deque(maxlen=MAX_BUFFERED_FRAMES)
        self._handle: str | None = None
        self._closed = False
        self.reconnects = 0

    @property
    def session(self) -> LiveSession | None:
        return self._session

    async def open(self) -> LiveSession:
        """Open (or adopt the pre-warmed) first session; raises `LiveSetupError`."""
        session = await (self._first or self._connector.connect())
        self._first = None
        await self._attach(session)
        return session

    async def send_audio(self, pcm16k: bytes) -> None:
        session = self._session
        if session is None:
            self._buffer.append(pcm16k)
            return
        try:
            await session.send_audio(pcm16k)
        except LiveClosedError:
            # The receive side notices the close and reconnects; keep the audio.
            self._buffer.append(pcm16k)

    async def send_text(self, text: str) -> None:
        await self._wait_connected()
        assert self._session is not None
        await self._session.send_text(text)

    async def send_audio_stream_end(self) -> None:
        if self._session is not None:
            with contextlib.suppress(LiveClosedError):
                await self._session.send_audio_stream_end()

    async def send_activity_start(self) -> None:
        await self._wait_connected()
        assert self._session is not None
        await self._session.send_activity_start()

    async def send_activity_end(self) -> None:
        # Like audioStreamEnd: an end lost to a reconnection has nothing left to end.
        if self._session is not None:
            with contextlib.suppress(LiveClosedError):
                await self._session.send_activity_end()

    async def send_tool_responses(self, responses: list[ToolResponse]) -> None:
        await self._wait_connected()
        assert self._session is not None
        await self._session.send_tool_responses(responses)

    async def events(self) -> AsyncIterator[LinkEvent]:
        """Events across reconnections; raises `LiveClosedError` when it gives up."""
        while not self._closed:
            session = self._session
            if session is None:
                raise LiveClosedError("Live link used before open()")
            try:
                reason = "dropped"
                async with contextlib.aclosing(self._session_events(session)) as stream:
                    async for event in stream:
                        if event is None:
                            reason = "goaway"
                            break
                        yield event
                if self._closed:
                    return
            except LiveClosedError as exc:
                if self._closed:
                    return
                self._log.warning("live.dropped", cause=str(exc))
            yield await self._reconnect(reason)

    async def _session_events(self, session: LiveSession) -> AsyncGenerator[LiveEvent | None, None]:
        """One connection's events; yields None at the first turn boundary after goAway."""
        go_away = False
        in_turn = False
        async for event in session.events():
            if isinstance(event, ResumptionUpdate) and event.resumable and event.handle:
                self._handle = event.handle
            if isinstance(event, AgentAudio):
                in_turn = True
            elif isinstance(event, TurnComplete | Interrupted):
                in_turn = False
            yield event
            if isinstance(event, GoAway):
                go_away = True
                self._log.info("live.goaway", time_left_s=event.time_left_s)
            if go_away and not in_turn:
                yield None
                return
        if not self._closed:
            raise LiveClosedError("Live connection ended")

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()

    async def _attach(self, session: LiveSession) -> None:
        self._session = session
        self._connected.set()
        while self._buffer:
            await session.send_audio(self._buffer.popleft())

    async def _wait_connected(self) -> None:
        await self._connected.wait()

    async def _reconnect(self, reason: str) -> Reconnected:
        old, self._session = self._session, None
        self._connected.clear()
        if old is not None:
            await old.close()
        if not self._handle:
            raise LiveClosedError("Live connection lost and no resumption handle to resume with")
        last_error: Exception | None = None
        for attempt in range(1, self._max_reconnects + 1):
            try:
                session = await self._connector.connect(resume_handle=self._handle)
            except LiveSetupError as exc:
                last_error = exc
                self._log.warning("live.reconnect_failed", attempt=attempt, cause=str(exc))
                await self._sleep(BACKOFF_SECONDS[min(attempt - 1, len(BACKOFF_SECONDS) - 1)])
                continue
            await self._attach(session)
            self.reconnects += 1
            self._log.info("live.reconnected", reason=reason, attempt=attempt)
            return Reconnected(reason, attempt, session.info.setup_seconds)
        raise LiveClosedError(
            f"Live could not be resumed after {self._max_reconnects} attempts: {last_error}"
        )
