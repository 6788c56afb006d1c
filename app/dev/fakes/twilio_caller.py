"""A phone caller that behaves as Twilio does, for tests, the demo and load runs.

It posts the signed voice webhook, follows the `<Connect><Stream>` TwiML, opens the signed
WebSocket and then plays Twilio's part of Media Streams (docs/protocols.md §1-3):
`connected`, `start`, 20 ms `media` frames paced at real time by an absolute clock, `stop`.
The server's audio goes into a model of Twilio's outbound buffer (`Player`), which plays
160 bytes every 20 ms, echoes a `mark` only when playback reaches it, and on `clear` drops
the buffer and echoes every pending mark at once. What was played is what the caller heard.

`telephony.playback` holds the pure bookkeeping (`Player`, `Ear`); this module is the I/O.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any
from urllib.parse import urlencode

import httpx
import numpy as np
import websockets
from numpy.typing import NDArray
from websockets.asyncio.client import ClientConnection, connect

from app.dev.fakes.caller_report import (
    CallOptions,
    CallReport,
    EndedBy,
    EventCallback,
    MarkRecord,
    new_sid,
)
from telephony.errors import ProtocolError
from telephony.messages import (
    MAX_MESSAGE_BYTES,
    OutboundClear,
    OutboundMark,
    OutboundMedia,
    connected_message,
    dtmf_message,
    inbound_media_message,
    mark_echo_message,
    parse_outbound,
    start_message,
    stop_message,
)
from telephony.mulaw import pcm16_to_ulaw, ulaw_to_pcm16
from telephony.playback import FRAME_BYTES, SILENCE_FRAME, Ear, Player, frame_rms
from telephony.signatures import SIGNATURE_HEADER, compute_signature
from telephony.twiml import StreamInstruction, parse_stream_twiml

__all__ = [
    "CallOptions",
    "CallReport",
    "EventCallback",
    "MarkRecord",
    "simulate_call",
    "simulate_calls",
]

FRAME_MS = 20
FRAME_SECONDS = FRAME_MS / 1000
WEBHOOK_PATH = "/twilio/voice"
API_VERSION = "2010-04-01"

# --- the call ------------------------------------------------------------------------


def _frames(audio: NDArray[np.int16]) -> list[bytes]:
    ulaw = pcm16_to_ulaw(np.asarray(audio, dtype=np.int16))
    padded = ulaw + SILENCE_FRAME[: -len(ulaw) % FRAME_BYTES]
    return [padded[i : i + FRAME_BYTES] for i in range(0, len(padded), FRAME_BYTES)]


def _voiced_frames_end(frames: list[bytes], silence_rms: float) -> int:
    """Frames up to and including the last voiced one: where the utterance ends."""
    for i in range(len(frames) - 1, -1, -1):
        if frame_rms(frames[i]) > silence_rms:
            return i + 1
    return len(frames)


class _Call:
    """One simulated call: state shared by the pacing loop and the receive task."""

    def __init__(self, options: CallOptions) -> None:
        self.o = options
        self._keys = sorted(options.dtmf)
        self.report = CallReport(call_sid=options.call_sid, ended_by="error")
        self.player = Player()
        ticks = max(1, round(options.underrun_window_seconds / FRAME_SECONDS))
        self.ear = Ear(options.silence_rms, ticks)
        self.sent = bytearray()
        self.ws: ClientConnection | None = None
        self.stream_sid = new_sid("MZ")
        self._seq = 0
        self._lock = asyncio.Lock()
        self._t0 = 0.0
        self.closed = asyncio.Event()
        self.utterances = [_frames(options.audio)]
        if options.follow_up is not None:
            self.utterances.append(_frames(options.follow_up))
        self._utterance = 0  # index being spoken; == len() once all are said
        self._frame = 0
        self._last_speech_tick = 0  # tick after the caller's latest utterance
        self._heard_tick = 0  # tick after the latest agent speech heard

    # events and clock

    def emit(self, kind: str, **detail: Any) -> None:
        if self.o.on_event is not None:
            self.o.on_event(kind, detail)

    def now_ms(self) -> float:
        return (asyncio.get_running_loop().time() - self._t0) * 1000

    async def send(self, make: Callable[[int], str]) -> None:
        """Send one sequenced event; the lock keeps sequenceNumbers in wire order."""
        assert self.ws is not None
        async with self._lock:
            self._seq += 1
            await self.ws.send(make(self._seq))

    async def echo(self, names: Iterable[str], played: bool, at_ms: float) -> None:
        sid = self.stream_sid
        for name in names:
            self.report.marks.append(MarkRecord(name, played, at_ms))
            self.emit("mark", name=name, played=played, at_ms=at_ms)
            await self.send(partial(mark_echo_message, sid, name=name))

    # webhook and TwiML

    async def post_webhook(self) -> StreamInstruction:
        url = self.o.base_url.rstrip("/") + WEBHOOK_PATH
        if self.o.webhook_query:
            url += "?" + urlencode(self.o.webhook_query)
        params = {
            "CallSid": self.o.call_sid,
            "AccountSid": self.o.account_sid,
            "From": self.o.from_number,
            "To": self.o.to_number,
            "CallStatus": "ringing",
            "Direction": "inbound",
            "ApiVersion": API_VERSION,
        }
        headers = {}
        if self.o.auth_token:
            headers[SIGNATURE_HEADER] = compute_signature(self.o.auth_token, url, params)
        verify: ssl.SSLContext | bool = self.o.ssl_context or True
        async with httpx.AsyncClient(verify=verify, trust_env=False, timeout=10) as client:
            response = await client.post(url, data=params, headers=headers)
        self.emit("webhook", status=response.status_code)
        if response.status_code != 200:
            raise ProtocolError(f"voice webhook answered HTTP {response.status_code}")
        instruction = parse_stream_twiml(response.text)
        self.report.stream_url = instruction.url
        self.report.custom_parameters = dict(instruction.parameters)
        self.emit("twiml", url=instruction.url, parameters=dict(instruction.parameters))
        return instruction

    # receiving: Twilio's side of the server's messages

    async def receive(self) -> None:
        assert self.ws is not None
        try:
            async for raw in self.ws:
                await self.handle(parse_outbound(raw))
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed.set()

    async def handle(self, message: OutboundMedia | OutboundMark | OutboundClear) -> None:
        if message.stream_sid != self.stream_sid:
            raise ProtocolError("server message names another streamSid")
        if isinstance(message, OutboundMedia):
            self.report.media_messages += 1
            self.report.bytes_received += len(message.payload)
            self.report.frames_received = self.report.bytes_received // FRAME_BYTES
            self.player.push_audio(message.payload)
        elif isinstance(message, OutboundMark):
            await self.echo(self.player.push_mark(message.name), True, self.now_ms())
        else:
            at = self.now_ms()
            self.report.clears += 1
            self.report.clear_times_ms.append(at)
            self.emit("clear", at_ms=at, discarded=list(self.player.pending_marks))
            await self.echo(self.player.clear(), False, at)

    # sending: the caller's script

    def next_frame(self, k: int) -> bytes | None:
        """The caller's frame for tick `k`, or None to hang up."""
        if k * FRAME_SECONDS >= self.o.max_seconds:
            return None
        if self._utterance >= len(self.utterances):
            return self._wait_or_hang_up(k, self._last_speech_tick)
        if self._utterance == 0 and self._frame == 0 and self._greeting_pending(k):
            return SILENCE_FRAME
        if self._frame == 0:
            # A follow-up waits until the agent has answered the previous utterance.
            if self._utterance > 0 and not self._reply_done():
                # ... but not forever: listen_seconds of quiet on both sides ends the call.
                return self._wait_or_hang_up(k, max(self._last_speech_tick, self._heard_tick))
            self._begin_utterance(k)
        frames = self.utterances[self._utterance]
        if self._frame < len(frames):
            self._frame += 1
            return frames[self._frame - 1]
        self._utterance += 1
        self._frame = 0
        self._last_speech_tick = k
        return self._wait_or_hang_up(k, k)

    def _begin_utterance(self, k: int) -> None:
        frames = self.utterances[self._utterance]
        end_ms = float((k + _voiced_frames_end(frames, self.o.silence_rms)) * FRAME_MS)
        self.report.utterance_ends_ms.append(end_ms)
        self.emit("utterance", index=self._utterance, ends_at_ms=end_ms)

    def _wait_or_hang_up(self, k: int, since: int) -> bytes | None:
        waited = (k - since) * FRAME_SECONDS
        return None if waited >= self.o.listen_seconds else SILENCE_FRAME

    def _greeting_pending(self, k: int) -> bool:
        if k * FRAME_SECONDS >= self.o.wait_for_greeting_seconds:
            return False
        quiet = self.ear.quiet_ticks_since_voice(0)
        return quiet is None or quiet * FRAME_SECONDS < self.o.reply_gap_seconds

    def _reply_done(self) -> bool:
        end_tick = int(self.report.utterance_ends_ms[-1] // FRAME_MS)
        quiet = self.ear.quiet_ticks_since_voice(end_tick)
        return quiet is not None and quiet * FRAME_SECONDS >= self.o.reply_gap_seconds

    async def pace(self) -> EndedBy:
        """Send a frame and play one every 20 ms on an absolute clock (no drift)."""
        loop = asyncio.get_running_loop()
        sid, k = self.stream_sid, 0
        while True:
            delay = self._t0 + k * FRAME_SECONDS - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.closed.is_set():
                return "server_closed"
            frame = self.next_frame(k)
            if frame is None:
                return "caller_hangup"
            ts = k * FRAME_MS
            await self.send(
                partial(inbound_media_message, sid, chunk=k + 1, timestamp_ms=ts, payload=frame)
            )
            self.sent += frame
            while self._keys and self._keys[0][0] * 1000 <= ts:
                digit = self._keys.pop(0)[1]
                await self.send(partial(dtmf_message, sid, digit=digit))
                self.emit("dtmf", digit=digit, at_ms=float(ts))
            tick = self.player.tick()
            if self.ear.hear(tick):
                self._heard_tick = k + 1
                if self.report.first_audio_ms is None:
                    self.report.first_audio_ms = float(ts)
                    self.emit("first_audio", at_ms=float(ts))
            await self.echo(tick.marks, True, float(ts))
            k += 1

    async def stream(self, instruction: StreamInstruction) -> EndedBy:
        headers = {}
        if self.o.auth_token:  # the upgrade is signed over the wss:// URL, empty params
            headers[SIGNATURE_HEADER] = compute_signature(self.o.auth_token, instruction.url, {})
        kwargs: dict[str, Any] = {}
        if instruction.url.startswith("wss:") and self.o.ssl_context is not None:
            kwargs["ssl"] = self.o.ssl_context
        async with connect(
            instruction.url,
            additional_headers=headers,
            proxy=None,
            compression=None,
            max_size=4 * MAX_MESSAGE_BYTES,  # let parse_outbound name an oversized message
            ping_interval=None,
            **kwargs,
        ) as ws:
            self.ws = ws
            await ws.send(connected_message())
            self.emit("connected")
            acct, call = self.o.account_sid, self.o.call_sid
            params = instruction.parameters
            await self.send(partial(start_message, self.stream_sid, call, acct, params))
            self._t0 = asyncio.get_running_loop().time()
            self.report.stream_sid = self.stream_sid
            self.emit("start", stream_sid=self.stream_sid)
            receiver = asyncio.create_task(self.receive())
            try:
                ended_by = await self._pace_until_closed()
                if ended_by == "caller_hangup":
                    await self.send(
                        partial(stop_message, self.stream_sid, account_sid=acct, call_sid=call)
                    )
                    self.emit("hangup", at_ms=self.now_ms())
                    await ws.close()
                await receiver  # raises the receiver's error, if any
            finally:
                receiver.cancel()
                if receiver.done() and not receiver.cancelled():
                    receiver.exception()  # retrieved: the error already raised wins
            self.report.close_code = ws.close_code
            if ended_by == "server_closed":
                self.emit("server_closed", code=ws.close_code)
            return ended_by

    async def _pace_until_closed(self) -> EndedBy:
        try:
            return await self.pace()
        except websockets.ConnectionClosed:
            return "server_closed"

    def finish(self, ended_by: EndedBy, error: str | None) -> CallReport:
        r = self.report
        r.ended_by, r.error = ended_by, error
        r.heard = ulaw_to_pcm16(bytes(self.ear.frames))
        r.sent = ulaw_to_pcm16(bytes(self.sent))
        r.frames_sent = len(self.sent) // FRAME_BYTES
        r.duration_ms = float(len(self.ear.voiced) * FRAME_MS)
        r.underruns, r.underrun_ms = self.ear.underruns, float(self.ear.underrun_ticks * FRAME_MS)
        for end_ms in r.utterance_ends_ms:
            k = self.ear.first_voiced_at(int(end_ms // FRAME_MS))
            r.response_latencies_ms.append(None if k is None else k * FRAME_MS - end_ms)
        return r


async def simulate_call(options: CallOptions) -> CallReport:
    """Place one call against the service; failures end up in the report, not raised."""
    call = _Call(options)
    try:
        # Stream time is capped by max_seconds; the margin covers webhook and handshakes.
        async with asyncio.timeout(options.max_seconds + 30):
            instruction = await call.post_webhook()
            ended_by = await call.stream(instruction)
    except (
        ProtocolError,
        OSError,
        TimeoutError,
        httpx.HTTPError,
        websockets.WebSocketException,
    ) as exc:
        return call.finish("error", f"{type(exc).__name__}: {exc}")
    return call.finish(ended_by, None)


async def simulate_calls(options_list: Iterable[CallOptions]) -> list[CallReport]:
    """Run calls concurrently; one call's failure never stops the others."""
    options = list(options_list)
    results = await asyncio.gather(*(simulate_call(o) for o in options), return_exceptions=True)
    reports: list[CallReport] = []
    for opts, result in zip(options, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, Exception):
                raise result  # cancellation and friends belong to the caller
            result = CallReport(opts.call_sid, "error", f"{type(result).__name__}: {result}")
        reports.append(result)
    return reports
