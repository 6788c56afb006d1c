"""Graceful shutdown: on SIGTERM stop taking calls, let calls in progress end, then exit.

The first SIGTERM or SIGINT starts a drain instead of stopping uvicorn:
1. `services.draining = True`: `/readyz` answers 503, so the load balancer stops sending
   calls, and the voice webhook answers with a spoken notice instead of a stream.
2. Calls in progress go on until they end by themselves or `DRAIN_TIMEOUT` passes.
3. Each call still running hears a short notice and is ended (`EndReason.SHUTDOWN`); the
   media endpoint closes its recording and call record as for any other call.
4. uvicorn is told to exit: it closes the listener and runs the lifespan shutdown.
A second signal exits at once, cutting whatever is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from types import FrameType
from typing import Any

import numpy as np
import structlog
import uvicorn
from numpy.typing import NDArray
from starlette.applications import Starlette

from app.assets import load_clip_8k
from app.call.info import EndReason
from app.call.playout import RATE
from app.services import Services

log = structlog.get_logger()

NOTICE_CLIP = "shutdown_notice"
# After the notice: room for the exit mark's round trip and the recording to close.
NOTICE_MARGIN_S = 5.0
# How long to wait for calls cancelled as a last resort to unwind (recordings close).
CANCEL_WAIT_S = 5.0
POLL_S = 0.5
STARTUP_FAILED = 3  # what uvicorn.run exits with when the application fails to start


class Drain:
    """Ends a process's calls politely; `run()` returns once none is left (or gave up)."""

    def __init__(
        self,
        services: Services,
        *,
        timeout: float,
        notice: NDArray[np.int16] | None,
        notice_timeout: float,
    ) -> None:
        self.services = services
        self._timeout = timeout
        self._notice = notice
        self._notice_timeout = notice_timeout
        self._told: set[str] = set()

    @classmethod
    def for_services(cls, services: Services) -> Drain:
        """DRAIN_TIMEOUT from settings; the bundled notice (the apology if it is missing)."""
        settings = services.settings
        try:
            notice: NDArray[np.int16] | None = load_clip_8k(NOTICE_CLIP)
        except FileNotFoundError:
            notice = services.apology
        clip_s = 0.0 if notice is None else notice.size / RATE
        return cls(
            services,
            timeout=settings.drain_timeout,
            notice=notice,
            # The bridge itself hangs up after HANGUP_FALLBACK_SECONDS if the notice's
            # exit mark never comes back; this is the backstop behind that.
            notice_timeout=clip_s + settings.hangup_fallback_seconds + NOTICE_MARGIN_S,
        )

    async def run(self) -> bool:
        """Drain; True when every call ended by itself or after hearing the notice."""
        services = self.services
        services.draining = True
        log.info("drain.started", active_calls=len(services.active_calls), timeout=self._timeout)
        loop = asyncio.get_running_loop()
        if await self._wait_for_calls(loop.time() + self._timeout, tell=False):
            log.info("drain.done", ended="by_themselves")
            return True
        log.info("drain.ending_calls", active_calls=len(services.active_calls))
        if await self._wait_for_calls(loop.time() + self._notice_timeout, tell=True):
            log.info("drain.done", ended="after_notice")
            return True
        await self._cancel_remaining()
        return False

    async def _wait_for_calls(self, deadline: float, *, tell: bool) -> bool:
        """Wait until no call is left or `deadline`; with `tell`, end each call seen."""
        loop = asyncio.get_running_loop()
        while True:
            if tell:
                await self._tell_new_calls()
            pending = [t for t in self.services.active_calls.values() if not t.done()]
            remaining = deadline - loop.time()
            if not pending:
                return True
            if remaining <= 0:
                return False
            # Re-check now and then: a stream answered before the drain may still connect.
            await asyncio.wait(pending, timeout=min(remaining, POLL_S))

    async def _tell_new_calls(self) -> None:
        for call_sid, bridge in list(self.services.bridges.items()):
            if call_sid in self._told:
                continue
            self._told.add(call_sid)
            bridge.log.info("drain.ending_call")
            try:
                await bridge.say_and_end(self._notice, EndReason.SHUTDOWN)
            except Exception as exc:  # the caller may be gone; that call ends on its own
                bridge.log.warning("drain.notice_failed", error=repr(exc))

    async def _cancel_remaining(self) -> None:
        tasks = [t for t in self.services.active_calls.values() if not t.done()]
        log.warning("drain.cancelling_calls", calls=sorted(self.services.active_calls))
        for task in tasks:
            task.cancel("server shutdown")
        if tasks:
            await asyncio.wait(tasks, timeout=CANCEL_WAIT_S)


class DrainingServer(uvicorn.Server):
    """uvicorn, except that the first SIGTERM/SIGINT drains calls before exiting.

    uvicorn's own handler sets `should_exit` and re-raises the signal once serving
    stops (so the process dies "killed by SIGTERM"); this one runs the drain, then
    exits normally. `forced` tells whether a second signal cut the drain short.
    """

    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self._drain = drain
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_requested = False
        self._drain_task: asyncio.Task[bool] | None = None
        self.forced = False
        self.signalled = False

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Installed with signal.signal: runs on the main thread between bytecodes, so it
        # only sets flags and hands work to the loop through its thread-safe door.
        self.signalled = True
        if self.forced:  # a third signal: stop waiting for anything
            self.force_exit = True
            self.should_exit = True
        elif self._drain_requested:
            self.forced = True
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._force)
        elif self._loop is None or not self.started:
            self.should_exit = True  # nothing to drain yet
        else:
            self._drain_requested = True
            self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        assert self._loop is not None
        self._drain_task = self._loop.create_task(self._drain.run(), name="drain")
        self._drain_task.add_done_callback(self._drained)

    def _force(self) -> None:
        """Cut the drain short: cancel the calls (recorded as `server_shutdown`) and exit.

        uvicorn's own shutdown still runs (the cancelled calls unwind and close their
        recordings, Redis state is flushed) unless a third signal forces it.
        """
        calls = self._drain.services.active_calls
        log.warning("drain.interrupted", active_calls=len(calls))
        if self._drain_task is not None:
            self._drain_task.cancel()
        for task in calls.values():
            task.cancel("server shutdown forced")
        self.should_exit = True

    def _drained(self, task: asyncio.Task[bool]) -> None:
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("drain.failed", error=repr(error), exc_info=error)
        self.should_exit = True


def serve(services: Services, app: Starlette, **config: Any) -> int:
    """Run `app` until a signal and a drain end it: the process's exit code.

    0 after a drain, 1 when a second signal cut it short, 3 when start-up failed.
    """
    settings = services.settings
    server = DrainingServer(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_config=None,
            ws_max_size=1 << 20,
            # Media Streams frames are small JSON with base64 audio: permessage-deflate
            # (if a client offers it) would cost zlib work on every 20 ms frame for
            # little gain. `ws` stays "auto": websockets' sans-I/O implementation.
            ws_per_message_deflate=False,
            proxy_headers=settings.trust_proxy_headers,
            # After the drain, connections that are still open (a stream that never
            # sent `start`) get this long before uvicorn cancels them.
            timeout_graceful_shutdown=10,
            **config,
        ),
        Drain.for_services(services),
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started and not server.signalled:
        return STARTUP_FAILED  # uvicorn has logged why (the lifespan failed)
    return 1 if server.forced else 0
