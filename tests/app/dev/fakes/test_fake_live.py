"""The fake Live server, driven by the real google-genai SDK over TLS, plus its pure parts."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pytest
import websockets
from google import genai
from google.genai import errors, types

from app.dev.fakes.live import CLIPS, FakeLiveServer, Scenario, clip_text, load_clip, wire
from app.dev.fakes.live.__main__ import serve_forever
from app.dev.fakes.live.vad import EnergyVad, VadEvent
from tests.support.fake_live import FAKE_API_KEY, FakeLiveFactory, live_http_options

MODEL = "gemini-live-test"
RATE = 16_000
PCM_MIME = "audio/pcm;rate=16000"
REPO = Path(__file__).resolve().parents[4]

CONFIG = types.LiveConnectConfig(
    response_modalities=[types.Modality.AUDIO],
    input_audio_transcription=types.AudioTranscriptionConfig(),
    output_audio_transcription=types.AudioTranscriptionConfig(),
)


# --- helpers ----------------------------------------------------------------------------


def client_for(server: FakeLiveServer, key: str = FAKE_API_KEY, **kw: Any) -> genai.Client:
    return genai.Client(api_key=key, http_options=http_options(server, **kw))


def http_options(server: FakeLiveServer, api_version: str = "v1beta") -> types.HttpOptions:
    return types.HttpOptions(**live_http_options(server, api_version))


@contextlib.asynccontextmanager
async def connect(
    server: FakeLiveServer, config: types.LiveConnectConfig = CONFIG, model: str = MODEL
) -> AsyncIterator[genai.live.AsyncSession]:
    async with client_for(server).aio.live.connect(model=model, config=config) as session:
        yield session


def tone(ms: int, freq: float = 440.0, amplitude: float = 6000.0) -> bytes:
    t = np.arange(RATE * ms // 1000) / RATE
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


def silence(ms: int) -> bytes:
    return bytes(RATE * ms // 1000 * 2)


def utterance(speech_ms: int = 400, quiet_ms: int = 700) -> bytes:
    return tone(speech_ms) + silence(quiet_ms)


async def send_pcm(session: genai.live.AsyncSession, pcm: bytes, chunk_ms: int = 20) -> int:
    step = RATE * chunk_ms // 1000 * 2
    for i in range(0, len(pcm), step):
        blob = types.Blob(data=pcm[i : i + step], mime_type=PCM_MIME)
        await session.send_realtime_input(audio=blob)
    return -(-len(pcm) // step)


@dataclass
class Heard:
    """Everything received from the server until a stop condition."""

    messages: list[types.LiveServerMessage] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    input_text: str = ""
    output_text: str = ""
    turn_completes: int = 0
    generation_completes: int = 0
    interrupted: bool = False
    tool_calls: list[types.FunctionCall] = field(default_factory=list)
    cancelled_ids: list[str] = field(default_factory=list)
    handles: list[str] = field(default_factory=list)
    go_away: types.LiveServerGoAway | None = None

    def add(self, m: types.LiveServerMessage) -> None:
        self.messages.append(m)
        if (sc := m.server_content) is not None:
            for part in (sc.model_turn.parts or []) if sc.model_turn else []:
                if part.inline_data and part.inline_data.data:
                    assert part.inline_data.mime_type == "audio/pcm;rate=24000"
                    self.audio += part.inline_data.data
            if sc.input_transcription and sc.input_transcription.text:
                self.input_text += sc.input_transcription.text
            if sc.output_transcription and sc.output_transcription.text:
                self.output_text += sc.output_transcription.text
            self.turn_completes += bool(sc.turn_complete)
            self.generation_completes += bool(sc.generation_complete)
            self.interrupted |= bool(sc.interrupted)
        if m.tool_call:
            self.tool_calls += m.tool_call.function_calls or []
        if m.tool_call_cancellation:
            self.cancelled_ids += m.tool_call_cancellation.ids or []
        if m.session_resumption_update and m.session_resumption_update.new_handle:
            self.handles.append(m.session_resumption_update.new_handle)
        if m.go_away:
            self.go_away = m.go_away


async def hear(
    session: genai.live.AsyncSession,
    until: Callable[[Heard], bool],
    on_tool_call: Callable[[types.LiveServerToolCall], Awaitable[None]] | None = None,
) -> Heard:
    """Receive until `until(heard)`; `session.receive()` ends at each turnComplete."""
    heard = Heard()
    async with asyncio.timeout(15):
        while not until(heard):
            stream = cast(AsyncGenerator[types.LiveServerMessage, None], session.receive())
            async with contextlib.aclosing(stream):
                async for m in stream:
                    heard.add(m)
                    if m.tool_call and on_tool_call:
                        await on_tool_call(m.tool_call)
                    if until(heard):
                        break
    return heard


def turn_done(h: Heard) -> bool:
    return h.turn_completes > 0


def pcm24(name: str) -> bytes:
    return load_clip(name, 24_000).tobytes()


# --- setup and refusals ---------------------------------------------------------------


async def test_setup_complete_and_record(fake_live_factory: FakeLiveFactory) -> None:
    server = await fake_live_factory({"api_key": FAKE_API_KEY, "models": [MODEL]})
    async with connect(server) as session:
        assert session.session_id and session.session_id.startswith("fake-")
    (record,) = await server.wait_for_sessions(1)
    async with asyncio.timeout(5):
        await record.wait_closed()
    assert re.fullmatch(
        r"/ws/google\.ai\.generativelanguage\.v1beta\.GenerativeService\.BidiGenerateContent",
        record.path,
    )
    assert record.api_version == "v1beta"
    assert record.api_key_present and record.api_key_valid
    assert FAKE_API_KEY not in repr(record)  # only whether it matched is kept
    assert record.model == f"models/{MODEL}"
    assert record.setup is not None
    assert record.setup["generationConfig"]["responseModalities"] == ["AUDIO"]
    assert record.session_id == session.session_id
    assert (record.ended, record.close_code) == ("client_closed", 1000)


async def test_trailing_slash_base_url_and_v1(fake_live_factory: FakeLiveFactory) -> None:
    server = await fake_live_factory()
    options = http_options(server, api_version="v1")
    options.base_url = f"{options.base_url}/"
    client = genai.Client(api_key="any", http_options=options)
    async with client.aio.live.connect(model=MODEL, config=CONFIG) as session:
        assert session.session_id
    (record,) = server.sessions
    assert record.path.startswith("//ws/") and record.api_version == "v1"


async def test_ssl_cert_file_is_enough(
    fake_live_factory: FakeLiveFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await fake_live_factory()
    monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_pem_path))
    client = genai.Client(
        api_key="any", http_options={"base_url": server.base_url, "api_version": "v1beta"}
    )
    async with client.aio.live.connect(model=MODEL, config=CONFIG) as session:
        assert session.session_id


async def test_unknown_path_is_404(fake_live: FakeLiveServer) -> None:
    url = f"wss://127.0.0.1:{fake_live.port}/ws/something.else"
    with pytest.raises(websockets.InvalidStatus) as info:
        async with websockets.connect(url, ssl=fake_live.client_ssl_context()):
            pass
    assert info.value.response.status_code == 404
    assert fake_live.rejected_paths == ["/ws/something.else"]


async def test_refused_setup_raises_api_error(fake_live_factory: FakeLiveFactory) -> None:
    server = await fake_live_factory({"refuse_setup": {"code": 1013, "reason": "Try later."}})
    with pytest.raises(errors.APIError) as info:
        async with connect(server):
            pass
    assert info.value.code == 1013 and "Try later." in str(info.value)
    assert server.sessions[0].ended == "refused"


async def test_wrong_key_closes_1007(fake_live_factory: FakeLiveFactory) -> None:
    server = await fake_live_factory({"api_key": FAKE_API_KEY})
    client = genai.Client(api_key="wrong-key", http_options=http_options(server))
    with pytest.raises(errors.APIError) as info:
        async with client.aio.live.connect(model=MODEL, config=CONFIG):
            pass
    assert info.value.code == 1007
    assert "API key not valid. Please pass a valid API key." in str(info.value)
    record = server.sessions[0]
    assert record.api_key_present and not record.api_key_valid
    assert record.setup is not None  # refused after setup, before setupComplete
    assert "wrong-key" not in repr(record)


async def test_unknown_model_closes_1008(fake_live_factory: FakeLiveFactory) -> None:
    server = await fake_live_factory({"models": [MODEL]})
    with pytest.raises(errors.APIError) as info:
        async with connect(server, model="gemini-nope"):
            pass
    assert info.value.code == 1008
    assert "models/gemini-nope is not found for API version v1beta" in str(info.value)


# --- greeting and caller turns -----------------------------------------------------------


async def test_greeting_on_realtime_text(fake_live_factory: FakeLiveFactory) -> None:
    server = await fake_live_factory({"audio": {"speed": 0}})
    async with connect(server) as session:
        await session.send_realtime_input(text="The caller is on the line. Greet them.")
        heard = await hear(session, turn_done)
    assert bytes(heard.audio) == pcm24("greeting")
    assert heard.output_text == clip_text("greeting")
    assert heard.input_text == ""
    last = heard.messages[-1]
    assert last.usage_metadata and last.usage_metadata.total_token_count
    assert server.sessions[0].texts == ["The caller is on the line. Greet them."]


async def test_greeting_on_client_content(fake_live_factory: FakeLiveFactory) -> None:
    server = await fake_live_factory({"audio": {"speed": 0}})
    async with connect(server) as session:
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="Say hello.")]),
            turn_complete=True,
        )
        heard = await hear(session, turn_done)
    assert heard.output_text == clip_text("greeting")
    assert server.sessions[0].texts == ["Say hello."]


@pytest.mark.parametrize("bundle", [True, False])
async def test_caller_turn_gets_reply_and_audio_is_recorded(
    fake_live_factory: FakeLiveFactory, bundle: bool
) -> None:
    server = await fake_live_factory(
        {
            "turns": [{"caller_text": "I need some help.", "clip": "reply_generic"}],
            "audio": {"speed": 0, "bundle": bundle},
        }
    )
    sent = utterance(speech_ms=600, quiet_ms=700)
    async with connect(server) as session:
        frames = await send_pcm(session, sent)
        heard = await hear(session, turn_done)

    assert heard.input_text == "I need some help."
    assert heard.output_text == clip_text("reply_generic")
    assert bytes(heard.audio) == pcm24("reply_generic")
    assert heard.generation_completes == 1 and heard.turn_completes == 1
    last = heard.messages[-1].server_content
    assert last is not None
    if bundle:  # the last chunk, its transcript and the end of turn ride together
        assert last.model_turn and last.output_transcription and last.turn_complete
    else:
        assert last.model_turn is None and last.turn_complete

    record = server.sessions[0]
    assert record.audio_bytes == sent  # URL-safe base64 from the SDK decoded intact
    assert len(record.audio_frames) == frames
    assert {f.rate for f in record.audio_frames} == {RATE}
    speech = record.audio_array()[: RATE * 600 // 1000].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(speech))
    assert abs(np.argmax(spectrum) * RATE / len(speech) - 440) < 3
    assert np.sqrt(np.mean(speech**2)) == pytest.approx(6000 / np.sqrt(2), rel=0.01)
    assert record.turns_completed == 1


async def test_audio_stream_end_ends_the_turn(fake_live_factory: FakeLiveFactory) -> None:
    server = await fake_live_factory({"audio": {"speed": 0}})
    async with connect(server) as session:
        await send_pcm(session, tone(300))  # no trailing silence
        await session.send_realtime_input(audio_stream_end=True)
        heard = await hear(session, turn_done)
    assert heard.output_text == clip_text("reply_generic")
    assert [s for _, s in server.sessions[0].signals] == ["audio_stream_end"]


async def test_manual_activity_signals(fake_live_factory: FakeLiveFactory) -> None:
    server = await fake_live_factory({"audio": {"speed": 0}})
    config = CONFIG.model_copy(
        update={
            "realtime_input_config": types.RealtimeInputConfig(
                automatic_activity_detection=types.AutomaticActivityDetection(disabled=True)
            )
        }
    )
    async with connect(server, config=config) as session:
        await session.send_realtime_input(activity_start=types.ActivityStart())
        await send_pcm(session, silence(200))  # energy is ignored when VAD is manual
        await session.send_realtime_input(activity_end=types.ActivityEnd())
        heard = await hear(session, turn_done)
    assert heard.output_text == clip_text("reply_generic")
    names = [s for _, s in server.sessions[0].signals]
    assert names == ["activity_start", "activity_end"]


async def test_turns_then_default_reply(fake_live_factory: FakeLiveFactory) -> None:
    server = await fake_live_factory(
        {
            "turns": [{"clip": "reply_booking"}],
            "audio": {"speed": 0},
            "barge_in": {"enabled": False},
        }
    )
    async with connect(server) as session:
        texts = []
        for _ in range(2):
            await send_pcm(session, utterance())
            texts.append((await hear(session, turn_done)).output_text)
    assert texts == [clip_text("reply_booking"), clip_text("reply_generic")]


async def test_pacing_is_faster_than_real_time(fake_live_factory: FakeLiveFactory) -> None:
    server = await fake_live_factory({"audio": {"speed": 4.0}})
    async with connect(server) as session:
        await session.send_realtime_input(text="hi")
        loop = asyncio.get_running_loop()
        start = loop.time()
        await hear(session, lambda h: len(h.audio) > 0)
        first = loop.time() - start
        await hear(session, turn_done)
        total = loop.time() - start
    duration = len(load_clip("greeting", 24_000)) / 24_000
    assert first < 0.5
    assert duration / 4 * 0.8 < total < duration * 0.75  # ~4x faster than real time


# --- tools and barge-in -------------------------------------------------------------------


async def test_tool_call_round_trip(fake_live_factory: FakeLiveFactory) -> None:
    server = await fake_live_factory(
        {
            "turns": [
                {
                    "caller_text": "Book me in tomorrow at ten.",
                    "tool_calls": [
                        {
                            "name": "book",
                            "args": {"when": "tomorrow 10:00"},
                            "expect": {"ok": True, "slot": {"time": "10:00"}},
                        },
                        {"name": "notify", "args": {}, "expect": {"sent": True}},
                    ],
                    "clip": "reply_booking",
                }
            ],
            "audio": {"speed": 0},
        }
    )
    answers = {"book": {"ok": True, "slot": {"day": "tue", "time": "10:00"}}, "notify": {}}

    async with connect(server) as session:

        async def answer(call: types.LiveServerToolCall) -> None:
            await session.send_tool_response(
                function_responses=[
                    types.FunctionResponse(id=fc.id, name=fc.name, response=answers[fc.name or ""])
                    for fc in call.function_calls or []
                ]
            )

        await send_pcm(session, utterance())
        heard = await hear(session, turn_done, on_tool_call=answer)

    assert [(fc.name, fc.args) for fc in heard.tool_calls] == [
        ("book", {"when": "tomorrow 10:00"}),
        ("notify", {}),
    ]
    assert all(fc.id for fc in heard.tool_calls)
    assert heard.output_text == clip_text("reply_booking")
    checks = {c.name: c for c in server.sessions[0].tool_checks}
    assert checks["book"].passed and checks["book"].outcome == "answered"
    assert not checks["notify"].passed and checks["notify"].response == {}
    assert [r["name"] for r in server.sessions[0].tool_responses] == ["book", "notify"]


async def test_barge_in_interrupts_the_reply(fake_live_factory: FakeLiveFactory) -> None:
    server = await fake_live_factory(
        {"turns": [{"clip": "reply_booking"}, {"clip": "goodbye"}], "audio": {"speed": 1.0}}
    )
    async with connect(server) as session:
        await send_pcm(session, utterance())
        first = await hear(session, lambda h: len(h.audio) > 0)
        await send_pcm(session, tone(300))
        cut = await hear(session, lambda h: h.interrupted)
        await send_pcm(session, silence(700))
        after = await hear(session, turn_done)

    heard_bytes = len(first.audio) + len(cut.audio)
    assert 0 < heard_bytes < len(pcm24("reply_booking")) // 2
    assert cut.turn_completes == 0  # the interrupted turn never completes
    assert after.output_text == clip_text("goodbye")
    record = server.sessions[0]
    assert record.interruptions == 1
    conv = server.conversations[record.conversation_id or ""]
    assert [(t.text, t.interrupted) for t in conv.transcript if t.role == "model"] == [
        (clip_text("reply_booking"), True),
        (clip_text("goodbye"), False),
    ]


async def test_barge_in_while_audio_still_plays_after_turn_complete(
    fake_live_factory: FakeLiveFactory,
) -> None:
    # All audio is sent at once, but the caller hears it for the clip's duration:
    # speech in that time is still a barge-in, after turnComplete.
    server = await fake_live_factory({"audio": {"speed": 0}})
    async with connect(server) as session:
        await session.send_realtime_input(text="hi")
        await hear(session, turn_done)
        await send_pcm(session, tone(300))
        heard = await hear(session, lambda h: h.interrupted)
    assert heard.interrupted and server.sessions[0].interruptions == 1


async def test_barge_in_cancels_pending_tool_calls(fake_live_factory: FakeLiveFactory) -> None:
    server = await fake_live_factory(
        {"turns": [{"tool_calls": [{"name": "slow_lookup", "id": "call-slow"}]}]}
    )
    async with connect(server) as session:
        await send_pcm(session, utterance())
        await hear(session, lambda h: bool(h.tool_calls))  # and never answer it
        await send_pcm(session, tone(300))
        heard = await hear(session, lambda h: bool(h.cancelled_ids))
    assert heard.interrupted and heard.cancelled_ids == ["call-slow"]
    (check,) = server.sessions[0].tool_checks
    assert (check.id, check.outcome, check.passed) == ("call-slow", "cancelled", False)


async def test_tool_response_timeout_is_recorded(fake_live_factory: FakeLiveFactory) -> None:
    server = await fake_live_factory(
        {
            "turns": [{"tool_calls": [{"name": "lookup"}]}],
            "tool_response_timeout": 0.2,
            "audio": {"speed": 0},
        }
    )
    async with connect(server) as session:
        await send_pcm(session, utterance())
        heard = await hear(session, turn_done)
    assert heard.output_text == clip_text("reply_generic")
    (check,) = server.sessions[0].tool_checks
    assert check.outcome == "timeout" and not check.passed


# --- resumption and faults ------------------------------------------------------------------


async def test_go_away_then_resume_continues_the_conversation(
    fake_live_factory: FakeLiveFactory,
) -> None:
    server = await fake_live_factory(
        {
            "turns": [
                {"caller_text": "first", "clip": "reply_generic"},
                {"caller_text": "second", "clip": "goodbye"},
            ],
            "go_away_after_turns": 1,
            "go_away_time_left": 0.3,
            "audio": {"speed": 0},
        }
    )
    config = CONFIG.model_copy(update={"session_resumption": types.SessionResumptionConfig()})
    async with connect(server, config=config) as session:
        await send_pcm(session, utterance())
        first = await hear(session, lambda h: h.go_away is not None)
        with pytest.raises(errors.APIError) as info:
            await hear(session, lambda h: False)
    assert info.value.code == 1000
    assert first.input_text == "first" and first.go_away and first.go_away.time_left == "0.3s"
    handle = first.handles[-1]

    resumed = config.model_copy(
        update={"session_resumption": types.SessionResumptionConfig(handle=handle)}
    )
    async with connect(server, config=resumed) as session:
        await send_pcm(session, utterance())
        second = await hear(session, turn_done)
    assert second.input_text == "second"
    assert second.output_text == clip_text("goodbye")

    old, new = server.sessions
    assert old.ended == "go_away" and old.close_code == 1000
    assert new.resumption_handle == handle and new.resumed
    assert new.conversation_id == old.conversation_id
    conv = server.conversations[new.conversation_id or ""]
    assert [t.text for t in conv.transcript] == [
        "first",
        clip_text("reply_generic"),
        "second",
        clip_text("goodbye"),
    ]


@pytest.mark.parametrize("scenario", [{"resume_refused": True}, {}])
async def test_resumption_refused_or_unknown_handle(
    fake_live_factory: FakeLiveFactory, scenario: dict[str, Any]
) -> None:
    server = await fake_live_factory(scenario)
    config = CONFIG.model_copy(
        update={"session_resumption": types.SessionResumptionConfig(handle="h-unknown")}
    )
    with pytest.raises(errors.APIError) as info:
        async with connect(server, config=config):
            pass
    assert info.value.code == 1008
    assert server.sessions[0].resumption_handle == "h-unknown"
    assert not server.sessions[0].resumed


async def test_close_after_turns(fake_live_factory: FakeLiveFactory) -> None:
    server = await fake_live_factory({"close_after_turns": 1, "audio": {"speed": 0}})
    async with connect(server) as session:
        await session.send_realtime_input(text="hi")
        await hear(session, turn_done)
        with pytest.raises(errors.APIError) as info:
            await hear(session, lambda h: False)
    assert info.value.code == 1011
    # The fault fires once per server: a new connection is served normally.
    async with connect(server) as session:
        await session.send_realtime_input(text="hi")
        assert (await hear(session, turn_done)).output_text == clip_text("greeting")


async def test_close_mid_reply_with_tcp_drop(fake_live_factory: FakeLiveFactory) -> None:
    server = await fake_live_factory(
        {"faults": {"close_after_turns": 0, "close_mid_reply": True, "drop_tcp": True}}
    )
    async with connect(server) as session:
        await session.send_realtime_input(text="hi")
        with pytest.raises(errors.APIError) as info:
            await hear(session, lambda h: False)
    assert info.value.code == 1006
    assert server.sessions[0].ended == "dropped"


async def test_stall_delays_the_reply(fake_live_factory: FakeLiveFactory) -> None:
    server = await fake_live_factory(
        {"stall_after_turns": 0, "stall_seconds": 0.6, "audio": {"speed": 0}}
    )
    async with connect(server) as session:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await session.send_realtime_input(text="hi")
        await hear(session, lambda h: len(h.audio) > 0)
        assert loop.time() - start >= 0.6
        # Read the rest: a client that stops reading stalls its own close handshake
        # (websockets pauses the socket when its queue is full) for close_timeout.
        await hear(session, turn_done)
    assert "stall" in server.sessions[0].event_names()


async def test_instant_mode_replies_on_speech_onset(fake_live_factory: FakeLiveFactory) -> None:
    server = await fake_live_factory({"instant": True, "audio": {"speed": 0}})
    async with connect(server) as session:
        await send_pcm(session, tone(100))  # no silence: no end of turn needed
        heard = await hear(session, turn_done)
    assert bytes(heard.audio) == pcm24("reply_generic")


async def test_continuous_mode_talks_from_the_first_audio_through_caller_speech(
    fake_live_factory: FakeLiveFactory,
) -> None:
    clip = "tone:440:0.2"
    server = await fake_live_factory(
        {"continuous": {"clip": clip, "chunk_ms": 20, "lead_ms": 40}, "vad": {"silence_ms": 40}}
    )
    async with connect(server) as session:
        await session.send_realtime_input(text="hi")  # no greeting in this mode
        await send_pcm(session, utterance(200, 100))  # speech and a pause: no turn, no barge-in
        heard = await hear(session, lambda h: h.turn_completes >= 2)
    # The clip twice over, in whole 20 ms messages (24 kHz: 960 bytes), never interrupted.
    assert bytes(heard.audio) == pcm24(clip) * 2
    sizes = [
        len(part.inline_data.data)
        for m in heard.messages
        if m.server_content and m.server_content.model_turn
        for part in m.server_content.model_turn.parts or []
        if part.inline_data and part.inline_data.data
    ]
    assert sizes == [960] * 20
    assert not heard.interrupted
    assert heard.generation_completes == 2


# --- pure parts ---------------------------------------------------------------------------


async def test_server_stop_closes_sessions_1001(fake_live_factory: FakeLiveFactory) -> None:
    server = await fake_live_factory()
    async with connect(server) as session:
        await server.stop()
        with pytest.raises(errors.APIError) as info:
            await hear(session, lambda h: False)
    assert info.value.code == 1001
    assert server.sessions[0].ended == "server_stopped"


def test_base64_both_alphabets() -> None:
    raw = bytes(range(256))
    assert wire.decode_b64(base64.b64encode(raw).decode()) == raw
    assert wire.decode_b64(base64.urlsafe_b64encode(raw).decode()) == raw
    assert wire.decode_b64(base64.urlsafe_b64encode(raw).decode().rstrip("=")) == raw
    with pytest.raises(wire.WireError):
        wire.decode_b64("not base64!")


@pytest.mark.parametrize(
    "frame",
    [
        '{"realtime_input":{"audio":{"data":"AAD_fw==","mime_type":"audio/pcm;rate=8000"}}}',
        '{"realtimeInput":{"audio":{"data":"AAD/fw==","mimeType":"audio/pcm;rate=8000"}}}',
        '{"realtimeInput":{"mediaChunks":[{"data":"AAD/fw==","mimeType":"audio/pcm;rate=8000"}]}}',
    ],
)
def test_parse_realtime_audio_any_casing(frame: str) -> None:
    msg = wire.parse_client_message(frame)
    assert isinstance(msg, wire.RealtimeInput)
    (chunk,) = msg.audio
    assert chunk.pcm == b"\x00\x00\xff\x7f" and chunk.rate == 8000


@pytest.mark.parametrize(
    "frame",
    [
        '{"tool_response":{"function_responses":[{"id":"c1","name":"f","response":{"a":1}}]}}',
        '{"toolResponse":{"functionResponses":[{"id":"c1","name":"f","response":{"a":1}}]}}',
    ],
)
def test_parse_tool_response_any_casing(frame: str) -> None:
    msg = wire.parse_client_message(frame)
    assert isinstance(msg, wire.ToolResponse)
    assert [(r.id, r.name, r.response) for r in msg.responses] == [("c1", "f", {"a": 1})]


def test_parse_client_content_and_signals() -> None:
    cc = wire.parse_client_message(
        b'{"clientContent":{"turns":[{"parts":[{"text":"hi"}]}],"turnComplete":true}}'
    )
    assert isinstance(cc, wire.ClientContent) and cc.texts == ("hi",) and cc.turn_complete
    rt = wire.parse_client_message('{"realtime_input":{"audio_stream_end":true}}')
    assert isinstance(rt, wire.RealtimeInput) and rt.audio_stream_end
    rt = wire.parse_client_message('{"realtimeInput":{"activityStart":{}}}')
    assert isinstance(rt, wire.RealtimeInput) and rt.activity_start
    with pytest.raises(wire.WireError):
        wire.parse_client_message("{nope")


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        ("/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent", True),
        ("//ws/google.ai.generativelanguage.v1.GenerativeService.BidiGenerateContent", True),
        (
            "/ws/google.ai.generativelanguage.v1alpha.GenerativeService."
            "BidiGenerateContentConstrained",
            True,
        ),
        ("/ws/google.ai.generativelanguage.v2.GenerativeService.BidiGenerateContent", False),
        ("/v1beta/models", False),
    ],
)
def test_path_matching(path: str, ok: bool) -> None:
    assert bool(wire.PATH_RE.match(path)) is ok


def test_vad_events_in_audio_time() -> None:
    vad = EnergyVad(rms_threshold=500, min_speech_ms=60, silence_ms=500)

    def as_array(pcm: bytes) -> npt.NDArray[np.int16]:
        return np.frombuffer(pcm, dtype="<i2").astype(np.int16)

    assert vad.feed(as_array(silence(300)), RATE) == []
    # Odd-sized pieces: windows span calls.
    speech = as_array(tone(200))
    events = vad.feed(speech[:77], RATE) + vad.feed(speech[77:], RATE)
    assert events == [VadEvent.SPEECH_START]
    assert vad.feed(as_array(silence(480)), RATE) == []
    assert vad.feed(as_array(silence(20)), RATE) == [VadEvent.SPEECH_END]
    assert vad.feed(as_array(tone(40)), RATE) == []  # shorter than min_speech_ms
    assert vad.flush() == []


def test_scenario_fault_shorthand_and_validation(tmp_path: Path) -> None:
    sc = Scenario.from_dict({"go_away_after_turns": 2, "faults": {"close_code": 1013}})
    assert sc.faults.go_away_after_turns == 2 and sc.faults.close_code == 1013
    path = tmp_path / "s.json"
    path.write_text('{"turns": [{"clip": "goodbye"}], "when_exhausted": "cycle"}')
    loaded = Scenario.from_file(path)
    assert [loaded.reply_for_turn(i).clip for i in range(2)] == ["goodbye", "goodbye"]
    with pytest.raises(ValueError, match="unknown clip"):
        Scenario.from_dict({"turns": [{"clip": "nope"}]})
    with pytest.raises(ValueError):
        Scenario.from_dict({"no_such_field": 1})
    assert Scenario(models=("models/a",)).model_allowed("a")


def test_clips_load_and_match_render_script() -> None:
    script = (REPO / "scripts" / "render_clips.sh").read_text()
    rendered = dict(re.findall(r'^render (\w+)\s+\S+\s+"(.*)"$', script, re.MULTILINE))
    assert rendered == CLIPS
    for name in CLIPS:
        at16, at24 = load_clip(name), load_clip(name, 24_000)
        assert at16.dtype == np.int16 and 1.0 < len(at16) / 16_000 < 6.0
        assert abs(len(at24) - len(at16) * 3 // 2) <= 1
        assert np.sqrt(np.mean(at16.astype(np.float64) ** 2)) > 1000  # not silent


async def test_cli_serve_forever_prints_url_and_ca(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = asyncio.create_task(serve_forever(None, "127.0.0.1", 0, tmp_path))
    out = ""
    try:
        async with asyncio.timeout(5):
            while "CA certificate" not in out:
                await asyncio.sleep(0.05)
                out += capsys.readouterr().out
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert re.search(r"https://127\.0\.0\.1:\d+", out)
    assert str(tmp_path / "ca.pem") in out and (tmp_path / "ca.pem").exists()


# --- Vertex AI path, OAuth tokens, refusals and raw messages ------------------------------

VERTEX_PATH = "/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent"


async def test_vertex_path_needs_a_valid_bearer_token() -> None:
    from websockets.exceptions import InvalidStatus

    valid = {"good-token"}
    async with FakeLiveServer(token_check=valid.__contains__) as server:
        url = f"wss://127.0.0.1:{server.port}{VERTEX_PATH}"
        ssl_ctx = server.client_ssl_context()
        for headers in ({}, {"Authorization": "Bearer stale-token"}):
            with pytest.raises(InvalidStatus, match="401"):
                await websockets.connect(url, ssl=ssl_ctx, additional_headers=headers)
        model = "projects/p/locations/l/publishers/google/models/gemini-live-test"
        async with websockets.connect(
            url, ssl=ssl_ctx, additional_headers={"Authorization": "Bearer good-token"}
        ) as ws:
            await ws.send(wire.encode({"setup": {"model": model}}))
            assert "setupComplete" in json.loads(await ws.recv())
            await ws.send(wire.encode({"realtime_input": {"text": "hi"}}))
            usage = None
            while usage is None:
                usage = json.loads(await ws.recv()).get("usageMetadata")
    assert server.rejected_tokens == 2
    (record,) = server.sessions
    assert record.vertex and record.bearer_fingerprint and record.model == model
    assert "candidatesTokenCount" in usage and "responseTokenCount" not in usage  # as Vertex


def test_vertex_models_are_matched_by_name() -> None:
    scenario = Scenario(models=("gemini-live-test",))
    assert scenario.model_allowed(
        "projects/p/locations/l/publishers/google/models/gemini-live-test"
    )
    assert not scenario.model_allowed("projects/p/locations/l/publishers/google/models/other")


def test_token_server_mints_for_trusted_keys_only(tmp_path: Path) -> None:
    from google.auth.exceptions import RefreshError
    from google.auth.transport.requests import Request
    from google.oauth2 import service_account

    from app.dev.fakes.oauth import FakeTokenServer, service_account_key

    tokens = FakeTokenServer(lifetime_s=120)
    tokens.start()
    try:
        trusted, public = service_account_key(tokens.token_uri)
        tokens.trust(trusted["private_key_id"], public)
        stranger, _ = service_account_key(tokens.token_uri)
        scopes = ["https://www.googleapis.com/auth/cloud-platform"]
        good = service_account.Credentials.from_service_account_info(trusted, scopes=scopes)
        good.refresh(Request())
        assert tokens.is_valid(good.token) and not tokens.is_valid("ya29.made-up")
        bad = service_account.Credentials.from_service_account_info(stranger, scopes=scopes)
        with pytest.raises(RefreshError, match="invalid_grant"):
            bad.refresh(Request())
    finally:
        tokens.stop()
    assert [ok for _, ok in tokens.requests] == [True, False]


async def test_resume_refusal_and_refuse_setup_after(fake_live_factory: FakeLiveFactory) -> None:
    server = await fake_live_factory(
        {
            "resume_refused": True,
            "resume_refusal": {"code": 1007, "reason": "Request contains an invalid argument."},
            "refuse_setup": {"code": 1011, "reason": "Internal error occurred."},
            "refuse_setup_after": 2,
        }
    )
    client = client_for(server)
    config = types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        session_resumption=types.SessionResumptionConfig(handle="h-any"),
    )
    async with client.aio.live.connect(model="gemini-live-test") as session:
        assert session.session_id
    with pytest.raises(errors.APIError) as refused:
        async with client.aio.live.connect(model="gemini-live-test", config=config):
            pass
    with pytest.raises(errors.APIError) as later:
        async with client.aio.live.connect(model="gemini-live-test"):
            pass
    assert (refused.value.code, later.value.code) == (1007, 1011)
    assert [s.ended for s in server.sessions] == ["client_closed", "refused", "refused"]


async def test_raw_messages_and_id_less_tool_calls(fake_live_factory: FakeLiveFactory) -> None:
    raw = [{"voiceActivity": {"voiceActivityType": "ACTIVITY_START"}}]
    server = await fake_live_factory(
        {
            "audio": {"speed": 0},
            "greeting": {
                "clip": "greeting",
                "raw": raw,
                "tool_calls": [{"name": "lookup", "omit_id": True}],
            },
        }
    )
    async with websockets.connect(
        f"wss://127.0.0.1:{server.port}/ws/google.ai.generativelanguage.v1beta."
        "GenerativeService.BidiGenerateContent",
        ssl=server.client_ssl_context(),
    ) as ws:
        await ws.send(wire.encode({"setup": {"model": "models/x"}}))
        await ws.recv()
        await ws.send(wire.encode({"realtime_input": {"text": "hi"}}))
        assert json.loads(await ws.recv()) == raw[0]
        call = json.loads(await ws.recv())["toolCall"]["functionCalls"][0]
        assert call == {"name": "lookup", "args": {}}
        response = {"name": "lookup", "response": {"ok": True}}
        await ws.send(wire.encode({"tool_response": {"functionResponses": [response]}}))
        while "turnComplete" not in json.loads(await ws.recv()).get("serverContent", {}):
            pass
    (check,) = server.sessions[0].tool_checks
    assert check.outcome == "answered" and check.name == "lookup"
