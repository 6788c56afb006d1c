"""The simulated caller against a small Twilio-facing server that speaks the real wire protocol.

The server answers the signed webhook with TwiML, checks the signed WebSocket upgrade, records
every frame the caller sends (with its arrival time) and plays a per-test script of audio,
marks and clears back. Assertions are about behaviour; pacing-derived positions get generous
tolerances.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np
import pytest
import trustme
import uvicorn
from numpy.typing import NDArray
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from app.dev.fakes.twilio_caller import (
    CallOptions,
    CallReport,
    simulate_call,
    simulate_calls,
)
from telephony.messages import (
    Media,
    Start,
    Stop,
    TwilioMessage,
    clear_message,
    mark_message,
    media_message,
    parse_message,
)
from telephony.mulaw import pcm16_to_ulaw, ulaw_to_pcm16
from telephony.signatures import is_valid_signature, websocket_url

TOKEN = "test-auth-token-0123456789abcdef"
PARAMS = {"token": "stream-token-1", "lang": "en"}
RATE = 8000


def tone(seconds: float, freq: float = 440.0, amplitude: float = 8000.0) -> NDArray[np.int16]:
    t = np.arange(int(RATE * seconds)) / RATE
    return np.rint(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def silence(seconds: float) -> NDArray[np.int16]:
    return np.zeros(int(RATE * seconds), np.int16)


def voiced_seconds(audio: NDArray[np.int16]) -> float:
    frames = audio[: audio.size - audio.size % 160].reshape(-1, 160).astype(np.float64)
    return float((np.sqrt((frames**2).mean(axis=1)) > 200).sum() * 0.02)


# --- the Twilio-facing test server ----------------------------------------------------


@dataclass
class Session:
    """One WebSocket: frames in (with arrival times), helpers to send audio/marks/clear."""

    ws: WebSocket
    stream_sid: str = ""
    received: list[tuple[float, TwilioMessage]] = field(default_factory=list)
    sent_at: dict[str, float] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    raw: list[str] = field(default_factory=list)

    @staticmethod
    def now() -> float:
        return asyncio.get_running_loop().time()

    async def read(self) -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                text = await self.ws.receive_text()
                self.raw.append(text)
                message = parse_message(text)
                if isinstance(message, Start):
                    self.stream_sid = message.stream_sid
                self.received.append((self.now(), message))
                self.changed.set()

    async def until(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    def of(self, kind: type[Any]) -> list[Any]:
        return [m for _, m in self.received if isinstance(m, kind)]

    def media_count(self) -> int:
        return len(self.of(Media))

    async def send_audio(self, pcm: NDArray[np.int16], frame: int = 160) -> None:
        ulaw = pcm16_to_ulaw(pcm)
        for i in range(0, len(ulaw), frame):
            await self.ws.send_text(media_message(self.stream_sid, ulaw[i : i + frame]))

    async def send_mark(self, name: str) -> None:
        self.sent_at[name] = self.now()
        await self.ws.send_text(mark_message(self.stream_sid, name))

    async def send_clear(self) -> None:
        self.sent_at["<clear>"] = self.now()
        await self.ws.send_text(clear_message(self.stream_sid))

    def mark_echo_time(self, name: str) -> float:
        return next(t for t, m in self.received if getattr(m, "name", None) == name)


Script = Callable[[Session], Awaitable[None]]


@dataclass
class Peer:
    script: Script
    close_after_script: bool = False
    base_url: str = ""
    sessions: list[Session] = field(default_factory=list)
    webhooks: list[dict[str, str]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    async def voice(self, request: Request) -> Response:
        # Parsed by hand: starlette's request.form() needs python-multipart.
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        url = f"{self.base_url}/twilio/voice"
        if not is_valid_signature(TOKEN, url, form, request.headers.get("X-Twilio-Signature")):
            self.rejected.append("webhook")
            return Response("forbidden", status_code=403)
        self.webhooks.append(form)
        stream_url = websocket_url(f"{self.base_url}/twilio/media")
        params = "".join(f'<Parameter name="{k}" value="{v}"/>' for k, v in PARAMS.items())
        twiml = (
            f'<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="{stream_url}">'
            f"{params}</Stream></Connect><Hangup/></Response>"
        )
        return Response(twiml, media_type="text/xml")

    async def media(self, ws: WebSocket) -> None:
        url = websocket_url(f"{self.base_url}/twilio/media")
        if not is_valid_signature(TOKEN, url, {}, ws.headers.get("X-Twilio-Signature")):
            self.rejected.append("websocket")
            await ws.close(code=1008)
            return
        await ws.accept()
        session = Session(ws)
        self.sessions.append(session)
        reader = asyncio.create_task(session.read())
        await session.until(lambda: bool(session.stream_sid))
        await self.script(session)
        if self.close_after_script:
            await ws.close(code=1000)
            reader.cancel()
        else:
            await reader  # until the caller hangs up


@contextlib.asynccontextmanager
async def serve(peer: Peer, tls: Path | None = None) -> AsyncIterator[Peer]:
    """Run the peer on 127.0.0.1; `tls` is a directory holding cert.pem and key.pem."""
    app = Starlette(
        routes=[
            Route("/twilio/voice", peer.voice, methods=["POST"]),
            WebSocketRoute("/twilio/media", peer.media),
        ]
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    scheme = "https" if tls else "http"
    peer.base_url = f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"
    certs: dict[str, Any] = {}
    if tls:
        certs = {"ssl_certfile": str(tls / "cert.pem"), "ssl_keyfile": str(tls / "key.pem")}
    config = uvicorn.Config(
        app, lifespan="off", log_level="warning", ws="websockets-sansio", access_log=False, **certs
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no "started" event
            await asyncio.sleep(0.01)
        yield peer
    finally:
        server.should_exit = True
        await task
        sock.close()


def options(peer: Peer, **overrides: Any) -> CallOptions:
    values: dict[str, Any] = {
        "base_url": peer.base_url,
        "audio": tone(0.2),
        "auth_token": TOKEN,
        "listen_seconds": 1.0,
        "max_seconds": 10.0,
    }
    values.update(overrides)
    return CallOptions(**values)


# --- end to end ------------------------------------------------------------------------

REPLY = tone(0.4, freq=1000.0)


async def test_call_flow_marks_echo_after_playback() -> None:
    async def script(s: Session) -> None:
        await s.until(lambda: s.media_count() >= 15)  # caller spoke 0.2 s, then 0.1 s quiet
        await s.send_audio(REPLY)  # 0.4 s, sent far ahead of real time
        await s.send_mark("reply-end")

    async with serve(Peer(script)) as peer:
        report = await simulate_call(options(peer))
    assert report.error is None, report.error
    assert report.ended_by == "caller_hangup"
    session = peer.sessions[0]

    # Webhook: signed form params as Twilio posts them.
    assert peer.webhooks[0]["CallSid"] == report.call_sid
    assert peer.webhooks[0]["CallStatus"] == "ringing"
    assert not peer.rejected

    # Frames: connected, start (with the TwiML's parameters), media..., mark echo, stop.
    assert session.raw[0] == '{"event":"connected","protocol":"Call","version":"1.0.0"}'
    start = session.of(Start)[0]
    assert dict(start.custom_parameters) == PARAMS
    assert start.call_sid == report.call_sid and start.stream_sid.startswith("MZ")
    sequenced = [m for _, m in session.received if hasattr(m, "sequence_number")]
    assert [m.sequence_number for m in sequenced] == list(range(1, len(sequenced) + 1))
    media = session.of(Media)
    assert [m.chunk for m in media] == list(range(1, len(media) + 1))
    assert [m.timestamp for m in media] == [20 * i for i in range(len(media))]
    assert all(len(m.payload) == 160 and m.track == "inbound" for m in media)
    assert isinstance(sequenced[-1], Stop) and sequenced[-1].call_sid == report.call_sid

    # The mark comes back only once its 0.4 s of audio has played.
    echo_delay = session.mark_echo_time("reply-end") - session.sent_at["reply-end"]
    assert echo_delay >= 0.3
    assert [(m.name, m.played) for m in report.marks] == [("reply-end", True)]

    # The caller heard exactly the reply, frame-aligned, after mu-law.
    expected = ulaw_to_pcm16(pcm16_to_ulaw(REPLY))
    heard = report.heard
    first = int(np.flatnonzero(heard)[0]) // 160 * 160
    assert np.array_equal(heard[first : first + expected.size], expected)
    assert voiced_seconds(heard) == pytest.approx(0.4, abs=0.03)
    assert report.frames_received == 20

    # Measurements.
    assert report.utterance_ends_ms == [200.0]
    assert report.first_audio_ms is not None and report.first_audio_ms >= 300
    latency = report.response_latencies_ms[0]
    assert latency is not None and 100 <= latency < 2000
    assert report.underruns == 0
    assert report.sent.size == report.heard.size == len(media) * 160
    assert voiced_seconds(report.sent) == pytest.approx(0.2, abs=0.03)
    # Hung up after listen_seconds of quiet following the caller's audio.
    assert report.duration_ms == pytest.approx(1200, abs=40)
    assert report.to_dict()["ended_by"] == "caller_hangup"


async def test_clear_echoes_pending_marks_as_discarded() -> None:
    async def script(s: Session) -> None:
        await s.send_audio(tone(2.0, freq=1000.0))
        await s.send_mark("long")
        await asyncio.sleep(0.3)
        await s.send_clear()
        await s.until(lambda: any(getattr(m, "name", "") == "long" for _, m in s.received))
        await s.send_mark("idle")  # nothing queued: echoed at once

    async with serve(Peer(script)) as peer:
        report = await simulate_call(options(peer, audio=silence(0.1)))
    assert report.error is None, report.error
    session = peer.sessions[0]
    assert session.mark_echo_time("long") - session.sent_at["<clear>"] < 1.0
    assert [(m.name, m.played) for m in report.marks] == [("long", False), ("idle", True)]
    assert report.clears == 1
    # About 0.3 s of the 2 s played before the clear; none after it.
    assert 0.1 <= voiced_seconds(report.heard) <= 0.8


async def test_marks_wait_at_their_position_in_the_buffer() -> None:
    async def script(s: Session) -> None:
        await s.send_audio(tone(0.2))
        await s.send_mark("first")
        await s.send_audio(tone(0.4))
        await s.send_mark("second")

    async with serve(Peer(script)) as peer:
        report = await simulate_call(options(peer, audio=silence(0.1)))
    assert [(m.name, m.played) for m in report.marks] == [("first", True), ("second", True)]
    first, second = report.marks
    assert second.at_ms - first.at_ms == pytest.approx(400, abs=40)  # position, in ticks
    session = peer.sessions[0]
    assert session.mark_echo_time("second") - session.mark_echo_time("first") >= 0.3


async def test_server_close_ends_the_call() -> None:
    async def script(s: Session) -> None:
        await s.until(lambda: s.media_count() >= 5)

    async with serve(Peer(script, close_after_script=True)) as peer:
        report = await simulate_call(options(peer, listen_seconds=5.0))
    assert report.ended_by == "server_closed"
    assert report.error is None
    assert report.close_code == 1000
    assert not peer.sessions[0].of(Stop)
    assert report.duration_ms < 3000


async def test_follow_up_is_said_after_the_reply() -> None:
    def caller_voiced(s: Session) -> list[bool]:
        return [
            np.sqrt(np.mean(ulaw_to_pcm16(m.payload).astype(float) ** 2)) > 200 for m in s.of(Media)
        ]

    def utterances_ended(s: Session) -> int:
        v = caller_voiced(s)
        return sum(1 for a, b in itertools.pairwise(v) if a and not b)

    async def script(s: Session) -> None:
        def ended(count: int) -> Callable[[], bool]:
            return lambda: utterances_ended(s) >= count

        for n in (1, 2):
            await s.until(ended(n))
            await s.send_audio(tone(0.3, freq=1000.0))
            await s.send_mark(f"reply-{n}")

    async with serve(Peer(script)) as peer:
        report = await simulate_call(
            options(peer, follow_up=tone(0.2), reply_gap_seconds=0.3, listen_seconds=1.0)
        )
    assert report.error is None, report.error
    assert len(report.utterance_ends_ms) == 2
    first_end, second_end = report.utterance_ends_ms
    # The follow-up waited for the 0.3 s reply and 0.3 s of quiet after it.
    assert second_end - first_end >= 200 + 300 + 300
    assert all(lat is not None and lat >= 0 for lat in report.response_latencies_ms)
    assert [m.name for m in report.marks] == ["reply-1", "reply-2"]
    assert voiced_seconds(report.heard) == pytest.approx(0.6, abs=0.05)


async def test_tls_webhook_and_wss_stream(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async def script(s: Session) -> None:
        await s.send_audio(tone(0.1))
        await s.send_mark("secure")

    async with serve(Peer(script), tls=tmp_path) as peer:
        report = await simulate_call(
            options(peer, audio=silence(0.1), listen_seconds=0.3, ssl_context=client_ctx)
        )
    assert report.error is None, report.error
    assert report.stream_url is not None and report.stream_url.startswith("wss://")
    assert [(m.name, m.played) for m in report.marks] == [("secure", True)]


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ('{"event":"media","streamSid":"SID","media":{}}', "media.payload"),
        ('{"event":"mark","streamSid":"MZother","mark":{"name":"x"}}', "another streamSid"),
        ('{"event":"hello","streamSid":"SID"}', "unknown event"),
    ],
)
async def test_malformed_server_message_ends_the_call_with_an_error(bad: str, needle: str) -> None:
    async def script(s: Session) -> None:
        await s.ws.send_text(bad.replace("SID", s.stream_sid))

    async with serve(Peer(script)) as peer:
        report = await simulate_call(options(peer, listen_seconds=3.0))
    assert report.ended_by == "error"
    assert report.error is not None and needle in report.error
    assert report.duration_ms < 2000


async def test_no_reply_means_no_follow_up() -> None:
    async def script(s: Session) -> None:
        return None

    async with serve(Peer(script)) as peer:
        report = await simulate_call(options(peer, follow_up=tone(0.2), listen_seconds=0.5))
    assert report.ended_by == "caller_hangup"
    assert len(report.utterance_ends_ms) == 1
    assert report.response_latencies_ms == [None]
    assert report.first_audio_ms is None


async def test_wrong_token_is_refused_and_never_leaks() -> None:
    async def script(s: Session) -> None:
        return None

    secret = "wrong-token-must-not-leak"
    async with serve(Peer(script)) as peer:
        opts = options(peer, auth_token=secret)
        report = await simulate_call(opts)
    assert report.ended_by == "error"
    assert report.error is not None and "403" in report.error
    assert peer.rejected == ["webhook"]
    assert secret not in repr(opts) and secret not in str(report.to_dict())


async def test_server_that_is_not_there() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    report = await simulate_call(CallOptions(f"http://127.0.0.1:{port}", tone(0.1)))
    assert report.ended_by == "error" and report.error


async def test_concurrent_calls_are_independent() -> None:
    async def script(s: Session) -> None:
        await s.send_audio(tone(0.2))
        await s.send_mark("done")

    events: list[tuple[str, dict[str, Any]]] = []
    async with serve(Peer(script)) as peer:
        good = options(peer, audio=silence(0.1), listen_seconds=0.5)
        good.on_event = lambda kind, detail: events.append((kind, dict(detail)))
        bad = options(peer, auth_token="forged")
        reports: list[CallReport] = await simulate_calls([good, bad, good_copy(good)])
    assert [r.ended_by for r in reports] == ["caller_hangup", "error", "caller_hangup"]
    assert reports[0].call_sid != reports[2].call_sid
    assert all(
        [(m.name, m.played) for m in r.marks] == [("done", True)] for r in (reports[0], reports[2])
    )
    kinds = [k for k, _ in events]
    for expected in ("webhook", "twiml", "connected", "start", "first_audio", "mark", "hangup"):
        assert expected in kinds


def good_copy(opts: CallOptions) -> CallOptions:
    return CallOptions(opts.base_url, opts.audio, opts.auth_token, listen_seconds=0.5)
