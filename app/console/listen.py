"""`WS /console/ws/listen/{call_sid}`: a supervisor hears a live call, read-only.

Both sides' audio comes from the call's recorder tee in batches (caller audio as
received, agent audio at the position it is scheduled to play) and goes out as binary
frames the page's mixer places on the call clock:

    byte 0      0 = caller, 1 = agent, 2 = agent audio cleared from `at` on (barge-in)
    bytes 1-4   `at`: call-clock sample (8 kHz), uint32 little-endian
    bytes 5-    PCM16LE mono 8 kHz (absent for a clear)

The socket never carries anything from the page to the call: whatever the page sends
is read and discarded. A listener that cannot keep up loses batches (bounded queue);
the call never waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

import structlog
from starlette.websockets import WebSocket, WebSocketDisconnect

from app.console.auth import ConsoleAuth
from app.console.events import Event, EventBus, Watcher
from app.console.watch import audio_channel
from app.recording import is_call_sid

log = structlog.get_logger()

POLICY_VIOLATION = 1008
# 200 ms batches: about 10 s of both sides before a stuck listener starts losing audio.
LISTEN_QUEUE = 100
SIDES = {"caller": 0, "agent": 1}
CLEARED = 2


def frame(event: Event) -> bytes:
    if event["type"] == "audio.cleared":
        return struct.pack("<BI", CLEARED, int(event["at"]))
    return struct.pack("<BI", SIDES[event["side"]], int(event["at"])) + bytes(event["pcm"])


async def listen_socket(ws: WebSocket) -> None:
    console = ws.app.state.console
    auth: ConsoleAuth = console.auth
    bus: EventBus = console.bus
    call_sid = str(ws.path_params["call_sid"])
    if not (auth.authenticated(ws) and auth.same_origin(ws)) or not is_call_sid(call_sid):
        log.warning("listen.refused", origin=ws.headers.get("origin", "")[:200])
        await ws.close(POLICY_VIOLATION)
        return
    await ws.accept()
    if not any(call.get("call_sid") == call_sid for call in bus.active()):
        await ws.close(1000, "call not in progress")
        return
    log.info("listen.started", call_sid=call_sid)
    with (
        bus.subscribe(audio_channel(call_sid), LISTEN_QUEUE) as audio,
        bus.subscribe(call_sid, 16) as calls,
    ):
        # Stop when the page goes away or the call ends, whichever comes first.
        stoppers = {
            asyncio.create_task(_discard_incoming(ws)),
            asyncio.create_task(_until_ended(calls)),
        }
        try:
            while True:
                getter = asyncio.create_task(audio.get())
                done, _ = await asyncio.wait(
                    {getter, *stoppers}, return_when=asyncio.FIRST_COMPLETED
                )
                if getter not in done:
                    getter.cancel()
                    break
                await ws.send_bytes(frame(getter.result()))
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            for task in stoppers:
                task.cancel()
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await ws.close(1000, "call ended")
            log.info("listen.stopped", call_sid=call_sid, dropped=audio.dropped)


async def _until_ended(calls: Watcher) -> None:
    while (await calls.get()).get("type") != "call.ended":
        pass


async def _discard_incoming(ws: WebSocket) -> None:
    """Read (and drop) what the page sends; returns when the page goes away."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        while (await ws.receive())["type"] != "websocket.disconnect":
            pass
