"""`WS /twilio/media`: the Media Stream endpoint.

Checks the signed upgrade and the stream token before any audio flows (close 1008),
parses frames (a bad frame is logged and skipped; a flood closes with 1007), and hands
the call to `app.call.assembly.run_call`: this module owns only the socket.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import structlog
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from app.call.assembly import call_info_from_start, run_call
from app.call.info import CallEnded, EndReason
from app.errors import SignatureError
from app.logs import bind_call
from app.services import Services
from app.twilio.public_url import public_base
from app.twilio.stream_tokens import CALL_SID_PARAM, TOKEN_PARAM
from telephony.errors import ProtocolError
from telephony.messages import Connected, Media, Start, TwilioMessage, parse_message
from telephony.signatures import is_valid_signature, public_url, websocket_url

log = structlog.get_logger()

POLICY_VIOLATION = 1008
INVALID_DATA = 1007
START_TIMEOUT_S = 10.0
# One bad frame must not end a good call; this many within a second is not a glitch.
BAD_FRAME_BURST = 25


class StreamSink:
    """The socket's outbound side; a send to a gone caller ends the call, not the server."""

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws

    async def send_text(self, data: str) -> None:
        if self._ws.application_state is not WebSocketState.CONNECTED:
            raise CallEnded(EndReason.CALLER_HANGUP)
        try:
            await self._ws.send_text(data)
        except (WebSocketDisconnect, RuntimeError, OSError):
            raise CallEnded(EndReason.CALLER_HANGUP) from None

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        if self._ws.application_state is WebSocketState.CONNECTED:
            # The caller may be gone already; there is nothing left to tell them.
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self._ws.close(code, reason)


class FrameReader:
    """Parsed Twilio messages from the socket, tolerating bad frames."""

    def __init__(self, ws: WebSocket, services: Services, log: Any) -> None:
        self._ws = ws
        self._services = services
        self._log = log
        self._bad: collections.deque[float] = collections.deque(maxlen=BAD_FRAME_BURST)
        self.stream_sid: str | None = None
        self.received_at = 0.0
        self.close_code = 1000
        self.close_reason = "call ended"

    async def next(self) -> TwilioMessage | None:
        """The next well-formed message, or None when the socket is done."""
        while True:
            message = await self._ws.receive()
            self.received_at = time.perf_counter()  # start of the caller->model timing
            if message["type"] == "websocket.disconnect":
                return None
            raw = message.get("text")
            if raw is None:
                raw = message.get("bytes") or b""
            try:
                parsed = parse_message(raw)
            except ProtocolError as exc:
                if await self._reject(str(exc)):
                    return None
                continue
            if isinstance(parsed, Media) and self.stream_sid not in (None, parsed.stream_sid):
                if await self._reject("media for another streamSid"):
                    return None
                continue
            return parsed

    async def _reject(self, why: str) -> bool:
        """Log a bad frame; True when the burst limit closed the stream."""
        self._services.observe_malformed_frame()
        self._log.warning("twilio.bad_frame", error=why[:200])
        now = time.monotonic()
        self._bad.append(now)
        if len(self._bad) == BAD_FRAME_BURST and now - self._bad[0] < 1.0:
            # The socket is closed with 1007 once the call has been wound down.
            self._log.error("twilio.bad_frame_flood")
            self.close_code, self.close_reason = INVALID_DATA, "too many malformed frames"
            return True
        return False

    async def wait_for_start(self) -> Start | None:
        while True:
            message = await self.next()
            if message is None or isinstance(message, Start):
                return message
            if not isinstance(message, Connected):
                self._log.warning("twilio.before_start", message_type=type(message).__name__)

    async def messages(self) -> AsyncIterator[TwilioMessage]:
        while (message := await self.next()) is not None:
            if isinstance(message, Start | Connected):
                self._log.warning("twilio.unexpected", message_type=type(message).__name__)
                continue
            yield message


def signed_upgrade(services: Services, ws: WebSocket) -> bool:
    settings = services.settings
    if not settings.verify_signatures:
        return True
    token = settings.secret("twilio_auth_token")
    # Twilio signs the upgrade as wss://HOST/PATH with empty params (not the https form).
    url = websocket_url(public_url(public_base(services, ws), ws.url.path, ws.url.query))
    signature = ws.headers.get("x-twilio-signature")
    return token is not None and is_valid_signature(token, url, {}, signature)


async def media_endpoint(ws: WebSocket) -> None:
    services: Services = ws.app.state.services
    if not signed_upgrade(services, ws):
        services.observe_signature_failure("media")
        log.warning("media.bad_signature")
        await ws.accept()
        await ws.close(POLICY_VIOLATION, "invalid Twilio signature")
        return
    await ws.accept()
    reader = FrameReader(ws, services, log)
    start = await read_start(ws, reader)
    if start is None:
        return
    bound = log.bind(call_sid=start.call_sid, stream_sid=start.stream_sid)
    try:
        await _check_token(services, start)
    except SignatureError as exc:
        services.observe_signature_failure("stream_token")
        bound.warning("media.bad_stream_token", error=str(exc))
        await StreamSink(ws).close(POLICY_VIOLATION, str(exc))
        return
    await bridge_stream(services, ws, reader, start, bound)


async def bridge_stream(
    services: Services, ws: WebSocket, reader: FrameReader, start: Start, bound: Any
) -> None:
    """Run the call of a checked stream (Twilio's, or a console web call's) to its end."""
    reader.stream_sid = start.stream_sid
    # Every log line of this call's task (and the tasks it starts) carries its ids.
    bind_call(start.call_sid, start.stream_sid)
    try:
        await run_call(
            services,
            call_info_from_start(start),
            StreamSink(ws),
            reader.messages(),
            log=bound,
            received_at=lambda: reader.received_at,
        )
    finally:
        # Last: the stream closes only once the call is fully wound down (recording
        # closed), so whoever watches the socket sees a finished call.
        await StreamSink(ws).close(reader.close_code, reader.close_reason)


async def read_start(ws: WebSocket, reader: FrameReader) -> Start | None:
    """The stream's `start`; None once the stream was closed for want of one in time."""
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            start = await reader.wait_for_start()
    except TimeoutError:
        start = None
    if start is None:
        code = POLICY_VIOLATION if reader.close_code == 1000 else reader.close_code
        await StreamSink(ws).close(code, "no start message")
    return start


async def _check_token(services: Services, start: Start) -> None:
    params = start.custom_parameters
    if params.get(CALL_SID_PARAM) != start.call_sid:
        raise SignatureError("stream parameters do not belong to this call")
    covered = {k: v for k, v in params.items() if k != TOKEN_PARAM}
    await services.stream_tokens.redeem(start.call_sid, params.get(TOKEN_PARAM), covers=covered)
