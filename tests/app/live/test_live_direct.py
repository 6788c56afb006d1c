"""The direct Live client (app.live.direct) against the fake Live server, next to the SDK adapter.

Everything goes over real TLS WebSockets to `FakeLiveServer`; nothing of the SDK is mocked.
The parity tests run the same thing through `GeminiConnector` (google-genai) and
`DirectConnector` and compare what the server recorded or what the bridge would see.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, cast

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve

from app.dev.fakes.live import FakeLiveServer, ThrowawayCA, clip_text
from app.errors import ConfigError, LiveClosedError, LiveSetupError
from app.live.direct import (
    DirectConnector,
    decode_b64,
    live_url,
    setup_message,
    translate_message,
)
from app.live.events import (
    AgentAudio,
    AgentTranscript,
    CallerTranscript,
    GenerationComplete,
    GoAway,
    Interrupted,
    LiveConnector,
    LiveEvent,
    LiveSession,
    ResumptionUpdate,
    ToolCall,
    ToolCallCancellation,
    ToolResponse,
    TurnComplete,
    Usage,
)
from app.live.options import INPUT_MIME, ActivityDetection, LiveOptions
from app.live.sdk import GeminiConnector
from app.server import gemini_connector
from app.settings import load_settings
from tests.app.dev.fakes.test_fake_live import pcm24, silence, tone, utterance
from tests.app.live.conftest import Client
from tests.support.fake_live import FAKE_API_KEY, FakeLiveFactory
from tools.loader import build_registry

MODEL = "gemini-live-test"

FRAME_BYTES = 640  # 20 ms at 16 kHz, PCM16
Until = Callable[[list[LiveEvent]], bool]


# --- helpers ------------------------------------------------------------------------------


def options_for(server: FakeLiveServer, **overrides: Any) -> LiveOptions:
    values: dict[str, Any] = {
        "api_key": FAKE_API_KEY,
        "model": MODEL,
        "voice": "Puck",
        "instructions": "You are a test agent. Be brief.",
        "base_url": server.base_url,
        "ssl_context": server.client_ssl_context(),
        "connect_timeout": 5.0,
    }
    values.update(overrides)
    return LiveOptions(**values)


def declarations() -> list[dict[str, Any]]:
    """The real tool declarations the service sends (built-ins plus the example set)."""
    registry = build_registry(
        ["end_call", "transfer_call", "appointments"], None, frozenset({"+15550100100"})
    )
    return registry.declarations()


@contextlib.asynccontextmanager
async def opened(
    connector: LiveConnector, resume_handle: str | None = None
) -> AsyncIterator[LiveSession]:
    session = await connector.connect(resume_handle=resume_handle)
    try:
        yield session
    finally:
        await session.close()


async def collect(
    session: LiveSession,
    until: Until,
    on_event: Callable[[LiveEvent], Awaitable[None]] | None = None,
) -> list[LiveEvent]:
    """Events until `until(events)` is true."""
    events: list[LiveEvent] = []
    stream = cast(AsyncGenerator[LiveEvent, None], session.events())
    async with asyncio.timeout(15), contextlib.aclosing(stream):
        async for event in stream:
            events.append(event)
            if on_event is not None:
                await on_event(event)
            if until(events):
                break
    return events


def seen(kind: type) -> Until:
    return lambda events: any(isinstance(e, kind) for e in events)


async def send_pcm(session: LiveSession, pcm: bytes) -> int:
    for i in range(0, len(pcm), FRAME_BYTES):
        await session.send_audio(pcm[i : i + FRAME_BYTES])
    return -(-len(pcm) // FRAME_BYTES)


def audio_of(events: list[LiveEvent]) -> bytes:
    return b"".join(e.pcm for e in events if isinstance(e, AgentAudio))


def text_of(events: list[LiveEvent], kind: type[CallerTranscript | AgentTranscript]) -> str:
    return "".join(e.text for e in events if isinstance(e, kind))


_SNAKE = re.compile(r"_([a-z0-9])")
# Values under these keys are the caller's data (JSON schemas, tool results): keep as is.
_OPAQUE = {"parametersJsonSchema", "response", "args"}


def camel_keys(value: Any) -> Any:
    """Keys snake_case -> camelCase, recursively, except inside user data."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            name = _SNAKE.sub(lambda m: m.group(1).upper(), key)
            out[name] = item if name in _OPAQUE else camel_keys(item)
        return out
    if isinstance(value, list):
        return [camel_keys(v) for v in value]
    return value


async def first_handle(server: FakeLiveServer) -> str:
    """A resumption handle the server will accept (one greeting turn on a direct session)."""
    async with opened(DirectConnector(options_for(server))) as session:
        await session.send_text("hi")
        events = await collect(session, seen(ResumptionUpdate))
    (update,) = [e for e in events if isinstance(e, ResumptionUpdate)]
    assert update.handle and update.resumable
    return update.handle


# --- setup fidelity --------------------------------------------------------------------------


@pytest.mark.parametrize("resume", [False, True])
async def test_setup_message_matches_the_sdk(
    fake_live_factory: FakeLiveFactory, resume: bool
) -> None:
    server = await fake_live_factory({"audio": {"speed": 0}})
    handle = await first_handle(server) if resume else None
    options = options_for(server, tool_declarations=declarations())
    for connector in (GeminiConnector(options), DirectConnector(options)):
        async with opened(connector, handle) as session:
            assert session.info.session_id and session.info.resumed_from == handle
    sdk, direct = server.sessions[-2:]
    assert sdk.setup is not None and direct.setup is not None
    assert camel_keys(direct.setup) == camel_keys(sdk.setup)
    # Not required by the server, but true today: the same casing as google-genai 3.4.
    assert direct.setup == sdk.setup
    assert direct.setup["tools"][0]["functionDeclarations"][0]["name"] == "end_call"
    assert direct.setup["sessionResumption"] == ({"handle": handle} if handle else {})
    assert (direct.resumed, sdk.resumed) == (resume, resume)
    assert direct.path == sdk.path
    assert direct.api_key_present and direct.api_key_valid
    google = {"authorization", "x-goog-api-client", "x-goog-user-project", "x-goog-api-key"}
    assert sdk.header_names & google == direct.header_names & google


def test_setup_message_shape() -> None:
    options = LiveOptions(
        api_key="k",
        model="models/already-qualified",
        voice="Kore",
        instructions="Hi.",
        compression_trigger_tokens=1000,
        compression_target_tokens=500,
    )
    setup = setup_message(options, "h-1")["setup"]
    assert setup["model"] == "models/already-qualified"
    assert setup["generationConfig"]["responseModalities"] == ["AUDIO"]
    assert "tools" not in setup
    assert setup["sessionResumption"] == {"handle": "h-1"}
    assert setup["contextWindowCompression"] == {
        "trigger_tokens": 1000,
        "sliding_window": {"target_tokens": 500},
    }
    plain = setup_message(LiveOptions(api_key="k", model="m", voice="v", instructions=""), None)
    assert plain["setup"]["model"] == "models/m"


def test_live_url() -> None:
    path = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
    assert live_url(None, "v1beta") == "wss://generativelanguage.googleapis.com" + path
    assert live_url("http://127.0.0.1:9/", "v1beta") == "wss://127.0.0.1:9" + path
    assert live_url("https://proxy.example/prefix/", "v1beta") == (
        "wss://proxy.example/prefix" + path
    )
    assert live_url("https://h", "v1alpha", constrained=True).endswith(
        "v1alpha.GenerativeService.BidiGenerateContentConstrained"
    )


# --- conversations ---------------------------------------------------------------------------


async def test_greeting_gives_audio_then_turn_complete(
    client: Client, fake_live_factory: FakeLiveFactory
) -> None:
    server = await fake_live_factory({"audio": {"speed": 0}})
    async with opened(client(options_for(server))) as session:
        assert session.info.session_id == server.sessions[0].session_id
        assert session.info.setup_seconds > 0
        await session.send_text("The caller is on the line. Greet them.")
        events = await collect(session, seen(TurnComplete))
    assert isinstance(events[0], AgentAudio) and events[0].rate == 24_000
    assert isinstance(events[-1], TurnComplete)
    assert audio_of(events) == pcm24("greeting")
    assert text_of(events, AgentTranscript) == clip_text("greeting")
    assert server.sessions[0].texts == ["The caller is on the line. Greet them."]


@pytest.mark.parametrize("bundle", [True, False])
async def test_caller_turn_gets_reply_with_transcripts(
    client: Client, fake_live_factory: FakeLiveFactory, bundle: bool
) -> None:
    server = await fake_live_factory(
        {
            "turns": [{"caller_text": "I need some help.", "clip": "reply_generic"}],
            "audio": {"speed": 0, "bundle": bundle},
        }
    )
    sent = utterance(speech_ms=600, quiet_ms=700)
    async with opened(client(options_for(server))) as session:
        frames = await send_pcm(session, sent)
        events = await collect(session, seen(Usage))
    assert isinstance(events[0], CallerTranscript)
    assert text_of(events, CallerTranscript) == "I need some help."
    assert text_of(events, AgentTranscript) == clip_text("reply_generic")
    assert audio_of(events) == pcm24("reply_generic")
    tail = [type(e) for e in events if not isinstance(e, AgentAudio | AgentTranscript)]
    assert tail[-3:] == [GenerationComplete, TurnComplete, Usage]
    usage = events[-1]
    assert isinstance(usage, Usage) and usage.total_tokens == (
        usage.prompt_tokens + usage.response_tokens
    )
    record = server.sessions[0]
    assert record.audio_bytes == sent  # standard base64 decoded intact
    assert len(record.audio_frames) == frames
    assert {f.rate for f in record.audio_frames} == {16_000}


async def test_audio_stream_end_ends_the_turn(
    client: Client, fake_live_factory: FakeLiveFactory
) -> None:
    server = await fake_live_factory({"audio": {"speed": 0}})
    async with opened(client(options_for(server))) as session:
        await send_pcm(session, tone(300))
        await session.send_audio_stream_end()
        events = await collect(session, seen(TurnComplete))
    assert text_of(events, AgentTranscript) == clip_text("reply_generic")
    assert [s for _, s in server.sessions[0].signals] == ["audio_stream_end"]


async def test_tool_call_round_trip(client: Client, fake_live_factory: FakeLiveFactory) -> None:
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
                        {"name": "notify", "args": {}, "blocking": False},
                    ],
                    "clip": "reply_booking",
                }
            ],
            "audio": {"speed": 0},
        }
    )
    answers: dict[str, ToolResponse] = {
        "book": ToolResponse("", "book", {"ok": True, "slot": {"day": "tue", "time": "10:00"}}),
        "notify": ToolResponse("", "notify", {"sent": 1}, "WHEN_IDLE", False),
    }
    async with opened(client(options_for(server))) as session:

        async def answer(event: LiveEvent) -> None:
            if isinstance(event, ToolCall):
                a = answers[event.name]
                response = ToolResponse(event.call_id, a.name, a.response, *_rest(a))
                await session.send_tool_responses([response])

        await send_pcm(session, utterance())
        events = await collect(session, seen(TurnComplete), on_event=answer)

    calls = [e for e in events if isinstance(e, ToolCall)]
    assert [(c.name, dict(c.args)) for c in calls] == [
        ("book", {"when": "tomorrow 10:00"}),
        ("notify", {}),
    ]
    assert all(c.call_id for c in calls)
    assert text_of(events, AgentTranscript) == clip_text("reply_booking")
    record = server.sessions[0]
    checks = {c.name: c for c in record.tool_checks}
    assert checks["book"].passed and checks["book"].outcome == "answered"
    book, notify = record.tool_responses
    assert book == {"id": calls[0].call_id, "name": "book", "response": answers["book"].response}
    assert notify == {
        "id": calls[1].call_id,
        "name": "notify",
        "response": {"sent": 1},
        "scheduling": "WHEN_IDLE",
        "will_continue": False,
    }


def _rest(r: ToolResponse) -> tuple[str | None, bool | None]:
    return r.scheduling, r.will_continue


async def test_tool_responses_match_the_sdk(client: Client, fake_live: FakeLiveServer) -> None:
    responses = [
        ToolResponse("c1", "f", {"order_id": "42", "nested": {"a_b": [1, 2]}}),
        ToolResponse("c2", "g", {}, "SILENT", True),
        ToolResponse("c3", "h", {"x": None}, "INTERRUPT", None),
    ]
    options = options_for(fake_live)
    for connector in (GeminiConnector(options), client(options)):
        async with opened(connector) as session:
            await session.send_tool_responses(responses)
        # The server reads every frame before it sees our close.
        async with asyncio.timeout(5):
            await fake_live.sessions[-1].wait_closed()
    sdk, direct = fake_live.sessions
    assert camel_keys(direct.tool_responses) == camel_keys(sdk.tool_responses)
    assert len(direct.tool_responses) == 3


async def test_barge_in_interrupts_and_cancels_tool_calls(
    client: Client,
    fake_live_factory: FakeLiveFactory,
) -> None:
    server = await fake_live_factory(
        {"turns": [{"tool_calls": [{"name": "slow_lookup", "id": "call-slow"}]}]}
    )
    async with opened(client(options_for(server))) as session:
        await send_pcm(session, utterance())
        await collect(session, seen(ToolCall))  # and never answer it
        await send_pcm(session, tone(300))
        events = await collect(session, seen(ToolCallCancellation))
    assert any(isinstance(e, Interrupted) for e in events)
    assert [e.call_ids for e in events if isinstance(e, ToolCallCancellation)] == [("call-slow",)]
    assert server.sessions[0].interruptions == 1


async def test_barge_in_during_playback(client: Client, fake_live_factory: FakeLiveFactory) -> None:
    server = await fake_live_factory(
        {"turns": [{"clip": "reply_booking"}, {"clip": "goodbye"}], "audio": {"speed": 1.0}}
    )
    async with opened(client(options_for(server))) as session:
        await send_pcm(session, utterance())
        first = await collect(session, seen(AgentAudio))
        await send_pcm(session, tone(300))
        cut = await collect(session, seen(Interrupted))
        await send_pcm(session, silence(700))
        after = await collect(session, seen(TurnComplete))
    heard = len(audio_of(first)) + len(audio_of(cut))
    assert 0 < heard < len(pcm24("reply_booking")) // 2
    assert not any(isinstance(e, TurnComplete) for e in cut)
    assert text_of(after, AgentTranscript) == clip_text("goodbye")


async def test_go_away_then_resume_with_the_handle(
    client: Client, fake_live_factory: FakeLiveFactory
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
    connector = client(options_for(server))
    async with opened(connector) as session:
        await send_pcm(session, utterance())
        events = await collect(session, seen(GoAway))
        with pytest.raises(LiveClosedError, match="code 1000"):
            await collect(session, lambda _: False)
    go_away = events[-1]
    assert isinstance(go_away, GoAway) and go_away.time_left_s == pytest.approx(0.3)
    updates = [e for e in events if isinstance(e, ResumptionUpdate)]
    assert updates and updates[-1].resumable and updates[-1].handle
    handle = updates[-1].handle

    async with opened(connector, handle) as session:
        assert session.info.resumed_from == handle
        await send_pcm(session, utterance())
        second = await collect(session, seen(TurnComplete))
    assert text_of(second, CallerTranscript) == "second"
    old, new = server.sessions
    assert new.resumed and new.resumption_handle == handle
    assert new.conversation_id == old.conversation_id


# --- refusals, closes and transport -------------------------------------------------------------


async def test_bad_key_is_a_setup_error_with_1007(
    client: Client, fake_live_factory: FakeLiveFactory
) -> None:
    server = await fake_live_factory({"api_key": FAKE_API_KEY})
    secret = "AIzaSy-not-the-right-key-0123456789"
    with pytest.raises(LiveSetupError) as info:
        await client(options_for(server, api_key=secret)).connect()
    message = str(info.value)
    assert "1007" in message and "API key not valid" in message
    assert secret not in message and secret not in repr(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert server.sessions[0].ended == "refused"


async def test_bad_model_is_a_setup_error_with_1008(
    client: Client, fake_live_factory: FakeLiveFactory
) -> None:
    server = await fake_live_factory({"models": [MODEL]})
    with pytest.raises(LiveSetupError, match="code 1008") as info:
        await client(options_for(server, model="gemini-nope")).connect()
    assert "models/gemini-nope is not found for API version v1beta" in str(info.value)


async def test_refusal_reason_never_carries_the_key(
    client: Client, fake_live_factory: FakeLiveFactory
) -> None:
    secret = "AIzaSy-echoed-back-by-a-proxy-0123456789"
    server = await fake_live_factory({"refuse_setup": {"code": 1013, "reason": f"no {secret}"}})
    with pytest.raises(LiveSetupError, match=r"code 1013: no \*\*\*$"):
        await client(options_for(server, api_key=secret)).connect()


async def test_unknown_handle_is_a_setup_error(client: Client, fake_live: FakeLiveServer) -> None:
    with pytest.raises(LiveSetupError, match="code 1008"):
        await client(options_for(fake_live)).connect(resume_handle="h-unknown")


@pytest.mark.parametrize(
    ("faults", "code"),
    [
        ({"close_after_turns": 1}, "code 1011: Internal error encountered."),
        ({"close_after_turns": 0, "close_mid_reply": True, "drop_tcp": True}, "code 1006"),
    ],
)
async def test_server_close_mid_session_raises_from_events(
    client: Client, fake_live_factory: FakeLiveFactory, faults: dict[str, Any], code: str
) -> None:
    server = await fake_live_factory({"faults": faults, "audio": {"speed": 0}})
    async with opened(client(options_for(server))) as session:
        await session.send_text("hi")
        with pytest.raises(LiveClosedError, match=f"Live connection closed: {re.escape(code)}"):
            await collect(session, lambda _: False)
        # Sends on the dead connection fail the same way.
        with pytest.raises(LiveClosedError, match="Live connection closed"):
            await session.send_audio(bytes(FRAME_BYTES))


async def test_server_stop_closes_with_1001(
    client: Client, fake_live_factory: FakeLiveFactory
) -> None:
    server = await fake_live_factory()
    async with opened(client(options_for(server))) as session:
        await server.stop()
        with pytest.raises(LiveClosedError, match="code 1001"):
            await collect(session, lambda _: False)


async def test_send_after_close_and_idempotent_close(
    client: Client, fake_live: FakeLiveServer
) -> None:
    session = await client(options_for(fake_live)).connect()
    await session.close()
    await session.close()
    for send in (
        session.send_audio(bytes(FRAME_BYTES)),
        session.send_text("hi"),
        session.send_audio_stream_end(),
        session.send_tool_responses([ToolResponse("c", "f", {})]),
    ):
        with pytest.raises(LiveClosedError):
            await send
    assert await collect(session, lambda _: False) == []  # closed by us: ends quietly
    record = fake_live.sessions[0]
    async with asyncio.timeout(5):
        await record.wait_closed()
    assert (record.ended, record.close_code) == ("client_closed", 1000)


async def test_close_while_reading_ends_events_quietly(
    client: Client, fake_live: FakeLiveServer
) -> None:
    session = await client(options_for(fake_live)).connect()
    reader = asyncio.create_task(collect(session, lambda _: False))
    await asyncio.sleep(0.05)
    await session.close()
    assert await asyncio.wait_for(reader, 5) == []


async def test_trailing_slash_base_url_and_v1(client: Client, fake_live: FakeLiveServer) -> None:
    options = options_for(fake_live, base_url=fake_live.base_url + "/", api_version="v1")
    async with opened(client(options)) as session:
        assert session.info.session_id
    (record,) = fake_live.sessions
    # google-genai keeps the slash ("//ws/..."); the direct client drops it.
    assert record.path.lstrip("/").startswith("ws/") and record.api_version == "v1"


async def test_ssl_cert_file_is_enough(
    client: Client, fake_live: FakeLiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(fake_live.ca_pem_path))
    async with opened(client(options_for(fake_live, ssl_context=None))) as session:
        assert session.info.session_id


async def test_untrusted_certificate_is_unreachable(
    client: Client, fake_live: FakeLiveServer
) -> None:
    with pytest.raises(LiveSetupError, match="Live unreachable: SSLCertVerificationError"):
        await client(options_for(fake_live, ssl_context=None)).connect()


async def test_wrong_path_is_unreachable_with_the_status(
    client: Client, fake_live: FakeLiveServer
) -> None:
    with pytest.raises(LiveSetupError, match=r"Live unreachable: InvalidStatus: .*HTTP 404"):
        await client(options_for(fake_live, api_version="v9")).connect()


async def test_nothing_listening_is_unreachable(client: Client) -> None:
    options = LiveOptions(
        api_key="k", model=MODEL, voice="Puck", instructions="x", base_url="https://127.0.0.1:9"
    )
    with pytest.raises(LiveSetupError, match="Live unreachable: ConnectionRefusedError"):
        await client(options).connect()


async def test_silent_server_times_out(client: Client) -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # hold the TCP connection open, say nothing

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    options = LiveOptions(
        api_key="k",
        model=MODEL,
        voice="Puck",
        instructions="x",
        base_url=f"https://127.0.0.1:{port}",
        connect_timeout=0.3,
    )
    try:
        with pytest.raises(LiveSetupError, match="Live setup timed out"):
            await client(options).connect()
    finally:
        server.close()
        await server.wait_closed()


# --- a scripted raw server for what the fake does not do ------------------------------------


@contextlib.asynccontextmanager
async def raw_server(
    frames: list[str | bytes],
    seen_requests: list[tuple[str, dict[str, str]]] | None = None,
    received: list[str | bytes] | None = None,
) -> AsyncIterator[tuple[str, ThrowawayCA]]:
    """Reads setup, sends `frames`, then keeps what the client sends until it closes."""
    ca = ThrowawayCA()

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        if seen_requests is not None:
            seen_requests.append((ws.request.path, dict(ws.request.headers.raw_items())))
        await ws.recv()
        for frame in frames:
            await ws.send(frame)
        with contextlib.suppress(Exception):
            async for message in ws:
                if received is not None:
                    received.append(message)

    async with serve(handler, "127.0.0.1", 0, ssl=ca.server_context()) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"https://127.0.0.1:{port}", ca


def raw_options(base_url: str, ca: ThrowawayCA, **overrides: Any) -> LiveOptions:
    values: dict[str, Any] = {
        "api_key": "k",
        "model": MODEL,
        "voice": "Puck",
        "instructions": "x",
        "base_url": base_url,
        "ssl_context": ca.client_context(),
        "connect_timeout": 5.0,
    }
    values.update(overrides)
    return LiveOptions(**values)


SETUP_COMPLETE = '{"setupComplete":{}}'


@pytest.mark.parametrize("garbage", ["not json", "[1, 2]", '{"serverContent": "oops"}'])
async def test_malformed_server_message_is_a_closed_error(client: Client, garbage: str) -> None:
    async with raw_server([SETUP_COMPLETE, garbage]) as (url, ca):
        session = await client(raw_options(url, ca)).connect()
        assert session.info.session_id is None
        with pytest.raises(LiveClosedError, match="Live sent a malformed message"):
            await collect(session, lambda _: False)
        with pytest.raises(LiveClosedError):
            await session.send_text("hi")


async def test_silence_after_the_upgrade_times_out_promptly(client: Client) -> None:
    async with raw_server([]) as (url, ca):
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(LiveSetupError, match="Live setup timed out"):
            await client(raw_options(url, ca, connect_timeout=0.3)).connect()
        assert loop.time() - started < 2.0


async def test_first_message_must_be_setup_complete(client: Client) -> None:
    async with raw_server(['{"goAway":{"timeLeft":"1s"}}']) as (url, ca):
        with pytest.raises(LiveSetupError, match="expected setupComplete, got goAway"):
            await client(raw_options(url, ca)).connect()


@pytest.mark.filterwarnings("ignore::google.genai.errors.ExperimentalWarning")
async def test_ephemeral_token_headers_and_extra_headers(client: Client) -> None:
    requests: list[tuple[str, dict[str, str]]] = []
    token = "auth_tokens/abc123"
    async with raw_server([SETUP_COMPLETE], requests) as (url, ca):
        options = raw_options(
            url, ca, api_key=f" {token} ", api_version="v1alpha", extra_headers={"x-extra": "1"}
        )
        async with opened(client(options)):
            pass
    ((path, headers),) = requests
    assert path.endswith("v1alpha.GenerativeService.BidiGenerateContentConstrained")
    lowered = {k.lower(): v for k, v in headers.items()}
    assert lowered["authorization"] == f"Token {token}"
    assert lowered["x-goog-api-key"] == token
    assert lowered["x-extra"] == "1"
    assert "permessage-deflate" not in lowered.get("sec-websocket-extensions", "")


async def test_client_frames_have_the_sdk_keys() -> None:
    received: list[str | bytes] = []
    pcm = bytes(range(256)) * 2 + b"\xfb\xff"  # standard base64 with '+' and '/'
    async with (
        raw_server([SETUP_COMPLETE], received=received) as (url, ca),
        opened(DirectConnector(raw_options(url, ca))) as session,
    ):
        await session.send_audio(pcm)
        await session.send_audio_stream_end()
        await session.send_text("héllo")
    assert all(isinstance(frame, str) for frame in received)  # text frames, as the SDK
    assert [orjson.loads(frame) for frame in received] == [
        {
            "realtime_input": {
                "audio": {"data": base64.b64encode(pcm).decode(), "mime_type": INPUT_MIME}
            }
        },
        {"realtime_input": {"audioStreamEnd": True}},
        {"realtime_input": {"text": "héllo"}},
    ]


# --- translation ------------------------------------------------------------------------------


def test_decode_b64_both_alphabets() -> None:
    raw = bytes(range(256)) * 3
    assert decode_b64(base64.b64encode(raw).decode()) == raw
    assert decode_b64(base64.urlsafe_b64encode(raw).decode()) == raw
    assert decode_b64(base64.urlsafe_b64encode(raw).decode().rstrip("=")) == raw
    assert decode_b64(base64.b64encode(raw[:7]).decode().rstrip("=")) == raw[:7]


def test_translate_bundled_message_in_adapter_order() -> None:
    pcm = b"\x01\x00\x02\x00"
    message = {
        "serverContent": {
            "turnComplete": True,
            "outputTranscription": {"text": "bye"},
            "modelTurn": {
                "parts": [
                    {"text": "thinking"},
                    {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": "AQACAA=="}},
                    {"inlineData": {"mimeType": "image/png", "data": "AAAA"}},
                ]
            },
            "inputTranscription": {"text": "hello"},
            "generationComplete": True,
            "interrupted": False,
        },
        "usageMetadata": {"promptTokenCount": 3, "responseTokenCount": 2, "totalTokenCount": 5},
        "somethingNew": {"ignored": True},
    }
    assert translate_message(message) == [
        CallerTranscript("hello"),
        AgentAudio(pcm, 24_000),
        AgentTranscript("bye"),
        GenerationComplete(),
        TurnComplete(),
        Usage(3, 2, 5),
    ]
    snake = {
        "tool_call": {"function_calls": [{"id": "c1", "name": "f", "args": {"a": 1}}]},
        "tool_call_cancellation": {"ids": ["c0"]},
        "session_resumption_update": {"new_handle": "h", "resumable": True},
        "go_away": {"time_left": "50s"},
    }
    assert translate_message(snake) == [
        ToolCall("c1", "f", {"a": 1}),
        ToolCallCancellation(("c0",)),
        ResumptionUpdate("h", True),
        GoAway(50.0),
    ]
    assert translate_message({"sessionResumptionUpdate": {}}) == [ResumptionUpdate(None, False)]
    assert translate_message({"setupComplete": {}}) == []


def summary(events: list[LiveEvent]) -> tuple[list[str], int, str, str]:
    """Event types (runs of audio collapsed), audio bytes, caller and agent transcripts."""
    kinds: list[str] = []
    for event in events:
        name = type(event).__name__
        if not (name == "AgentAudio" and kinds and kinds[-1] == name):
            kinds.append(name)
    return (
        kinds,
        len(audio_of(events)),
        text_of(events, CallerTranscript),
        text_of(events, AgentTranscript),
    )


@pytest.mark.parametrize(
    "scenario",
    [
        {"audio": {"speed": 0, "bundle": True}},
        {"audio": {"speed": 0, "bundle": False}, "frame_type": "text"},
    ],
)
async def test_same_events_as_the_sdk_adapter(
    fake_live_factory: FakeLiveFactory, scenario: dict[str, Any]
) -> None:
    server = await fake_live_factory(
        {
            **scenario,
            "turns": [
                {
                    "caller_text": "Book it.",
                    "tool_calls": [{"name": "book", "args": {"day": "mon"}}],
                    "clip": "reply_booking",
                }
            ],
            "go_away_after_turns": 2,
            "go_away_time_left": 5,
            "repeat": True,
        }
    )
    results = []
    options = options_for(server)
    for connector in (GeminiConnector(options), DirectConnector(options)):
        async with opened(connector) as session:

            async def answer(event: LiveEvent, session: LiveSession = session) -> None:
                if isinstance(event, ToolCall):
                    await session.send_tool_responses(
                        [ToolResponse(event.call_id, event.name, {"ok": True})]
                    )

            await session.send_text("Greet the caller.")
            events = await collect(session, seen(ResumptionUpdate))
            await send_pcm(session, utterance())
            events += await collect(session, seen(GoAway), on_event=answer)
        results.append(summary(events))
    sdk, direct = results
    assert direct == sdk
    assert direct[1] == len(pcm24("greeting")) + len(pcm24("reply_booking"))
    assert "ToolCall" in direct[0] and direct[0][-1] == "GoAway"


# --- settings ---------------------------------------------------------------------------------


def test_live_client_setting_picks_the_connector() -> None:
    base = {"gemini_api_key": "k", "tools": "end_call"}
    default = load_settings(env_file=None, **base)
    assert default.live_client == "direct"
    assert isinstance(gemini_connector(default, []), DirectConnector)
    sdk = load_settings(env_file=None, live_client="sdk", **base)
    assert isinstance(gemini_connector(sdk, []), GeminiConnector)


def test_live_client_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVE_CLIENT", "sdk")
    assert load_settings(env_file=None).live_client == "sdk"
    monkeypatch.setenv("LIVE_CLIENT", "grpc")
    with pytest.raises(ConfigError, match="LIVE_CLIENT"):
        load_settings(env_file=None)


# --- per-call Live options (issue 15) -------------------------------------------------


def every_live_option() -> dict[str, Any]:
    """Every optional Live setting the agents file can set, each to a non-default value."""
    return {
        "language": "de-DE",
        "activity_detection": ActivityDetection(
            disabled=False,
            start_of_speech_sensitivity="START_SENSITIVITY_LOW",
            end_of_speech_sensitivity="END_SENSITIVITY_HIGH",
            prefix_padding_ms=40,
            silence_duration_ms=700,
        ),
        "affective_dialog": True,
        "proactive_audio": True,
        "thinking_budget": 512,
        "compression_trigger_tokens": 64_000,
        "compression_target_tokens": 32_000,
    }


async def test_every_live_option_is_sent_as_the_sdk_names_it(
    fake_live_factory: FakeLiveFactory,
) -> None:
    """Per-call options given to `connect(options=...)`: both clients send what
    google-genai sends for the same LiveConnectConfig, field for field."""
    server = await fake_live_factory({"audio": {"speed": 0}})
    base = options_for(server)  # the connector's own options: none of the extras
    decls = declarations()
    decls[0] = {**decls[0], "behavior": "NON_BLOCKING"}
    per_call = options_for(
        server, voice="Kore", instructions="Agent two.", tool_declarations=decls,
        **every_live_option(),
    )  # fmt: skip
    for connector in (GeminiConnector(base), DirectConnector(base)):
        session = await connector.connect(options=per_call)
        await session.close()
    sdk, direct = server.sessions[-2:]
    assert sdk.setup is not None and direct.setup is not None
    assert direct.setup == sdk.setup
    setup = camel_keys(direct.setup)
    generation = setup["generationConfig"]
    assert generation["speechConfig"]["languageCode"] == "de-DE"
    assert generation["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"] == "Kore"
    assert generation["enableAffectiveDialog"] is True
    assert generation["thinkingConfig"] == {"thinkingBudget": 512}
    assert setup["proactivity"] == {"proactiveAudio": True}
    assert setup["realtimeInputConfig"] == {
        "automaticActivityDetection": {
            "disabled": False,
            "startOfSpeechSensitivity": "START_SENSITIVITY_LOW",
            "endOfSpeechSensitivity": "END_SENSITIVITY_HIGH",
            "prefixPaddingMs": 40,
            "silenceDurationMs": 700,
        }
    }
    assert setup["contextWindowCompression"] == {
        "triggerTokens": 64_000,
        "slidingWindow": {"targetTokens": 32_000},
    }
    assert setup["systemInstruction"]["parts"][0]["text"] == "Agent two."
    assert setup["tools"][0]["functionDeclarations"][0]["behavior"] == "NON_BLOCKING"


async def test_options_left_unset_are_not_sent(fake_live: FakeLiveServer) -> None:
    session = await DirectConnector(options_for(fake_live)).connect()
    await session.close()
    setup = camel_keys(fake_live.sessions[-1].setup)
    assert "languageCode" not in setup["generationConfig"]["speechConfig"]
    for absent in ("enableAffectiveDialog", "thinkingConfig"):
        assert absent not in setup["generationConfig"]
    assert "proactivity" not in setup and "realtimeInputConfig" not in setup


async def test_activity_marks_reach_the_server_from_both_clients(
    fake_live_factory: FakeLiveFactory,
) -> None:
    """With automatic activity detection off, activityStart/End delimit the caller's turn."""
    server = await fake_live_factory({"audio": {"speed": 0}, "greeting": {"clip": None}})
    off = options_for(server, activity_detection=ActivityDetection(disabled=True))
    for connector in (GeminiConnector(off), DirectConnector(off)):
        async with opened(connector) as session:
            await session.send_activity_start()
            await send_pcm(session, utterance(0.4))
            await session.send_activity_end()
            events = await collect(session, seen(TurnComplete))
            assert audio_of(events)  # the fake answered the marked turn
    for record in server.sessions[-2:]:
        assert [name for _, name in record.signals] == ["activity_start", "activity_end"]
