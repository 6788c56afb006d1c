"""A Live connection that survives Gemini's connection limits, and refused resumptions.

One connection lives ~10 minutes; `goAway` arrives ~60 s before the cut. We keep the
newest resumable handle and, on `goAway` (at the next turn boundary) or an unexpected
close, reconnect with it while caller audio is buffered, so the conversation goes on
with its context. Retries are bounded, with backoff.

When Live will not take the handle (expired, unknown, a 1007 after a long compressed
session) or there is none, the link opens a fresh session for the same agent with the
conversation so far as context (`ConversationLog`, which the link keeps because every
event and tool response passes through it) and asks the model to carry on. Failures no
retry can fix (bad key, unknown model) end the link at once (`refusals.classify`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace

import structlog

from app.errors import LiveClosedError, LiveSetupError
from app.live.events import (
    AgentAudio,
    AgentTranscript,
    CallerTranscript,
    GoAway,
    Interrupted,
    LiveConnector,
    LiveEvent,
    LiveSession,
    ResumptionUpdate,
    ToolCall,
    ToolResponse,
    TurnComplete,
)
from app.live.history import ConversationLog
from app.live.refusals import Refusal, classify

# Caller audio kept while reconnecting: 10 s at 16 kHz PCM16 in 20 ms frames.
MAX_BUFFERED_FRAMES = 500
BACKOFF_SECONDS = (0.2, 0.5, 1.0, 2.0, 4.0)
# Sent as text to a fresh session, so the agent speaks rather than waits in silence.
RESUME_PROMPT = (
    "(The phone line dropped for a moment and the caller is back. Carry on from where "
    "the conversation left off: if you were answering, finish briefly.)"
)
# After goAway, how long the link waits at a turn boundary for that turn's resumption
# handle (Live sends it just after turnComplete) before switching with the older one.
HANDLE_WAIT_S = 1.0
# Local ids for tool calls Live sent without one (answered by name; see send_tool_responses).
_NO_ID_PREFIX = "no-id-"


@dataclass(frozen=True, slots=True)
class Reconnected:
    """Pseudo-event: the link is on a new connection.

    `reason`: goaway | dropped. `kind`: resumed (same conversation, by handle) |
    fresh_session (a new session given the conversation so far as context).
    """

    reason: str
    attempts: int
    setup_seconds: float
    kind: str = "resumed"


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
        resume_prompt: str | None = RESUME_PROMPT,
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
        self._resume_prompt = resume_prompt
        self.conversation = ConversationLog()
        self._no_id = itertools.count(1)
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
        wire: list[ToolResponse] = []
        for r in responses:
            self.conversation.tool_answered(r.call_id, r.name, r.response)
            # A call Live sent without an id goes back by name alone (never an empty id
            # string: the clients leave the field out).
            wire.append(replace(r, call_id="") if r.call_id.startswith(_NO_ID_PREFIX) else r)
        await self._session.send_tool_responses(wire)

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
        """One connection's events; yields None where the link should switch after goAway.

        The switch waits for a turn boundary (no agent audio in flight; a turnComplete
        "IN_PROGRESS" is none). Live sends the turn's resumption handle just after its
        turnComplete, so at the boundary the link also waits (up to HANDLE_WAIT_S) for
        that handle: resuming with the one before would lose the last turn.
        """
        go_away = False
        in_turn = False
        fresh_handle = False  # a handle arrived since the agent last spoke
        switch_by: float | None = None  # loop time: switch now, handle or not
        loop = asyncio.get_running_loop()
        stream = session.events()
        try:
            while True:
                try:
                    if switch_by is None:
                        event = await anext(stream)
                    else:
                        async with asyncio.timeout_at(switch_by):
                            event = await anext(stream)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    yield None  # no new handle came: switch with the newest we have
                    return
                if isinstance(event, AgentAudio):
                    # Most events, 25-50 a second: only the turn bookkeeping applies (the
                    # log keeps no audio, and a turn in progress blocks a switch).
                    in_turn, fresh_handle, switch_by = True, False, None
                    yield event
                    continue
                if isinstance(event, ResumptionUpdate) and event.resumable and event.handle:
                    self._handle = event.handle
                    fresh_handle = True
                if isinstance(event, Interrupted) or (
                    # "IN_PROGRESS": more of the same interaction follows; no boundary yet.
                    isinstance(event, TurnComplete) and not event.in_progress
                ):
                    in_turn = False
                event = self._note(event)
                yield event
                if isinstance(event, GoAway):
                    go_away = True
                    self._log.info("live.goaway", time_left_s=event.time_left_s)
                if go_away and not in_turn:
                    if fresh_handle or self._handle is None:
                        yield None
                        return
                    if switch_by is None:
                        switch_by = loop.time() + HANDLE_WAIT_S
        finally:
            # Close the connection's generator now (an async iterator need not have aclose).
            closer = getattr(stream, "aclose", None)
            if closer is not None:
                await closer()
        if not self._closed:
            raise LiveClosedError("Live connection ended")

    def _note(self, event: LiveEvent) -> LiveEvent:
        """Keep the conversation log (for a fresh session); id-less calls get a local id."""
        conversation = self.conversation
        if isinstance(event, CallerTranscript):
            conversation.said("Caller", event.text)
        elif isinstance(event, AgentTranscript):
            conversation.said("Agent", event.text)
        elif isinstance(event, Interrupted) or (
            isinstance(event, TurnComplete) and not event.in_progress
        ):
            conversation.turn_over()
        elif isinstance(event, ToolCall):
            if not event.call_id:
                event = replace(event, call_id=f"{_NO_ID_PREFIX}{next(self._no_id)}")
            conversation.tool_called(event.call_id, event.name, event.args)
        return event

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
        attempts = 0
        last_error: LiveSetupError | None = None
        # 1. Resume with the newest handle: the model keeps the whole conversation.
        while self._handle and attempts < self._max_reconnects:
            attempts += 1
            try:
                session = await self._connector.connect(resume_handle=self._handle)
            except LiveSetupError as exc:
                last_error = exc
                verdict = classify(exc.code, exc.reason, resuming=True)
                self._log.warning(
                    "live.reconnect_failed", attempt=attempts, verdict=verdict.value, cause=str(exc)
                )
                if verdict is Refusal.FATAL:
                    raise LiveClosedError(f"Live refused to reconnect: {exc}") from None
                if verdict is Refusal.HANDLE_REFUSED:
                    break
                await self._backoff(attempts)
                continue
            return await self._adopt(session, reason, attempts, "resumed")
        # 2. A fresh session for the same agent, told the conversation so far.
        self._handle = None
        for attempt in range(1, self._max_reconnects + 1):
            attempts += 1
            try:
                session = await self._connector.connect(history=self.conversation.render())
            except LiveSetupError as exc:
                last_error = exc
                verdict = classify(exc.code, exc.reason, resuming=False)
                self._log.warning(
                    "live.fresh_session_failed",
                    attempt=attempt,
                    verdict=verdict.value,
                    cause=str(exc),
                )
                if verdict is Refusal.FATAL:
                    break
                await self._backoff(attempt)
                continue
            return await self._adopt(session, reason, attempts, "fresh_session")
        raise LiveClosedError(
            f"Live could not be resumed nor restarted ({attempts} attempts): {last_error}"
        )

    async def _adopt(
        self, session: LiveSession, reason: str, attempts: int, kind: str
    ) -> Reconnected:
        await self._attach(session)
        if kind == "fresh_session" and self._resume_prompt:
            # If the new connection is already gone, reading it says so (and reconnects).
            with contextlib.suppress(LiveClosedError):
                await session.send_text(self._resume_prompt)
        self.reconnects += 1
        self._log.info("live.reconnected", reason=reason, attempts=attempts, kind=kind)
        return Reconnected(reason, attempts, session.info.setup_seconds, kind)

    async def _backoff(self, attempt: int) -> None:
        await self._sleep(BACKOFF_SECONDS[min(attempt - 1, len(BACKOFF_SECONDS) - 1)])
