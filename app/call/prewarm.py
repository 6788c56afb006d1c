"""Live sessions opened when the voice webhook arrives, before Twilio's stream connects.

Model setup takes hundreds of milliseconds; opening the session while Twilio is still
reading our TwiML and dialling the WebSocket hides that from the caller. The greeting
is requested at the same time, so its audio is waiting when the stream starts.
A session whose stream never comes (caller hung up, stream landed on another
instance) is closed after `timeout` seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from app.errors import LiveSetupError
from app.live.events import LiveConnector, LiveSession

log = structlog.get_logger()


class PrewarmPool:
    def __init__(
        self,
        connector: LiveConnector,
        *,
        timeout: float,
        greeting: str | None,
        on_setup: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        self._connector = connector
        self._on_setup = on_setup  # Live setup time of every session opened (a metric)
        self._timeout = timeout
        self._greeting = greeting
        self._pending: dict[str, asyncio.Task[LiveSession]] = {}
        self._reapers: dict[str, asyncio.TimerHandle] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def start(
        self, call_sid: str, opener: Callable[[], Coroutine[Any, Any, LiveSession]] | None = None
    ) -> None:
        """Begin opening a session for this call (idempotent: Twilio may retry).

        `opener` opens it the call's own way (its agent, see app.agents.session);
        by default: the connector's options and the pool's greeting.
        """
        if call_sid in self._pending:
            return
        coro = opener() if opener is not None else self._open()
        task = asyncio.get_running_loop().create_task(coro, name=f"prewarm-{call_sid}")
        self._pending[call_sid] = task
        self._reapers[call_sid] = asyncio.get_running_loop().call_later(
            self._timeout, self._expire, call_sid
        )

    def take(self, call_sid: str) -> asyncio.Task[LiveSession] | None:
        """Hand the (possibly still connecting) session to the call's stream."""
        reaper = self._reapers.pop(call_sid, None)
        if reaper is not None:
            reaper.cancel()
        return self._pending.pop(call_sid, None)

    async def aclose(self) -> None:
        for call_sid in list(self._pending):
            self._expire(call_sid)
        await asyncio.sleep(0)

    async def _open(self) -> LiveSession:
        session = await self._connector.connect()
        self._on_setup(session.info.setup_seconds)
        if self._greeting:
            await session.send_text(self._greeting)
        return session

    def _expire(self, call_sid: str) -> None:
        self._reapers.pop(call_sid, None)
        task = self._pending.pop(call_sid, None)
        if task is None:
            return
        log.info("prewarm.expired", call_sid=call_sid)
        task.add_done_callback(_close_unclaimed)
        if not task.done():
            task.cancel()


def _close_unclaimed(task: asyncio.Task[LiveSession]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        if not isinstance(exc, LiveSetupError):
            log.warning("prewarm.failed", error=repr(exc))
        return
    session = task.result()
    closing = asyncio.get_running_loop().create_task(session.close())
    # Retrieve the outcome so a failed close is not reported as "never retrieved".
    closing.add_done_callback(lambda t: t.cancelled() or t.exception())
