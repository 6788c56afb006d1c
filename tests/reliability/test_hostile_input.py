"""Hostile input on the Twilio side: the parser, then the real media endpoint.

The parser never raises anything but `ProtocolError`, and what it accepts is well typed
(tests/telephony/test_messages.py fuzzes text, bytes and JSON; here: 1 MB frames and the
types of accepted messages). The endpoint, driven over real sockets: every hostile frame
gets a logged rejection or a close with a reason, a concurrent good call is unaffected,
and the server keeps serving.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs
from websockets.asyncio.client import connect

from telephony.errors import ProtocolError
from telephony.messages import (
    MAX_MESSAGE_BYTES,
    Connected,
    Dtmf,
    Mark,
    Media,
    Start,
    Stop,
    connected_message,
    dtmf_message,
    inbound_media_message,
    mark_echo_message,
    parse_message,
    start_message,
    stop_message,
)
from telephony.mulaw import pcm16_to_ulaw
from tests.reliability.conftest import (
    ACCOUNT,
    RawStream,
    StackFactory,
    call_sid,
    eventually,
    place_call,
    speech,
    stream_sid,
    upgrade_headers,
    wait_for_record,
)

RawStreamFactory = Callable[..., AbstractAsyncContextManager[RawStream]]
ONE_MB = 1_000_000
GOOD_FRAME = pcm16_to_ulaw(speech()[:160])

# --- the parser ------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=12,
)


@given(st.sampled_from(["text", "bytes", "json"]), st.binary(min_size=1, max_size=64))
@settings(max_examples=20, deadline=None)
def test_parser_refuses_1mb_frames_of_any_shape(kind: str, seed: bytes) -> None:
    body = (seed * (ONE_MB // len(seed) + 1))[:ONE_MB]
    if kind == "text":
        raw: str | bytes = body.decode("latin-1")
    elif kind == "bytes":
        raw = body
    else:  # a well-formed media frame, just enormous
        raw = inbound_media_message("MZ1", 1, 1, 0, body)
    with pytest.raises(ProtocolError, match="too large"):
        parse_message(raw)


def _media_doc() -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(inbound_media_message("MZ1", 2, 1, 0, GOOD_FRAME))
    return doc


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_whatever_the_parser_accepts_is_well_typed(data: st.DataObject) -> None:
    doc = data.draw(
        st.sampled_from(
            [
                _media_doc(),
                orjson.loads(start_message("MZ1", "CA1", ACCOUNT, {"k": "v"})),
                orjson.loads(mark_echo_message("MZ1", 3, "m")),
                orjson.loads(dtmf_message("MZ1", 4, "1")),
                orjson.loads(stop_message("MZ1", 5, ACCOUNT, "CA1")),
            ]
        )
    )
    # Replace or delete one field, top level or nested.
    target = doc
    nested = [k for k, v in doc.items() if isinstance(v, dict)]
    if nested and data.draw(st.booleans()):
        target = doc[data.draw(st.sampled_from(nested))]
    key = data.draw(st.sampled_from(sorted(target)))
    if data.draw(st.booleans()):
        del target[key]
    else:
        target[key] = data.draw(_json)
    try:
        message = parse_message(json.dumps(doc))
    except ProtocolError:
        return
    _assert_well_typed(message)


def _assert_well_typed(message: Any) -> None:
    assert isinstance(message, Connected | Start | Media | Dtmf | Mark | Stop)
    for name in message.__dataclass_fields__:
        value = getattr(message, name)
        if name in ("sequence_number", "chunk", "timestamp", "sample_rate", "channels"):
            assert isinstance(value, int) and not isinstance(value, bool) and value >= 0
        elif name == "payload":
            assert isinstance(value, bytes)
        elif name == "tracks":
            assert all(isinstance(t, str) for t in value)
        elif name == "custom_parameters":
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        else:
            assert isinstance(value, str), (name, value)


# --- the media endpoint, fuzzed over real sockets --------------------------------------


_DELETE = object()  # a field to remove rather than replace


def _hostile_frames(sid: str) -> st.SearchStrategy[str | bytes]:
    """Frames a broken or hostile peer might send on a started stream."""
    media = _media_doc() | {"streamSid": sid}

    def mutate(doc: dict[str, Any], key_path: tuple[str, ...], value: Any) -> str:
        doc = json.loads(json.dumps(doc))
        target = doc
        for key in key_path[:-1]:
            target = target[key]
        if value is _DELETE:
            target.pop(key_path[-1], None)
        else:
            target[key_path[-1]] = value
        return json.dumps(doc)

    paths = st.sampled_from(
        [
            ("sequenceNumber",),
            ("streamSid",),
            ("media",),
            ("media", "payload"),
            ("media", "chunk"),
            ("media", "timestamp"),
            ("media", "track"),
        ]
    )
    payloads = st.binary(max_size=400).map(lambda b: base64.b64encode(b).decode())
    return st.one_of(
        st.text(max_size=200),
        st.binary(max_size=200),
        _json.map(json.dumps),
        st.builds(mutate, st.just(media), paths, _json | st.just(_DELETE)),
        st.builds(mutate, st.just(media), st.just(("media", "payload")), payloads),
        st.builds(
            mutate,
            st.just(media),
            st.just(("media", "timestamp")),
            st.integers(0, 10**17).map(str),
        ),
        st.sampled_from(
            [
                connected_message(),  # out of order
                start_message(sid, call_sid(), ACCOUNT, {}),  # a second start
                inbound_media_message(stream_sid(), 9, 1, 0, GOOD_FRAME),  # another stream
                mark_echo_message(sid, 9, "never-sent"),  # an echo of no mark
                dtmf_message(sid, 9, "#"),
                '{"event":"clear","streamSid":"' + sid + '"}',  # server -> Twilio only
            ]
        ),
    )


async def test_fuzzed_frames_on_the_real_endpoint_never_hurt_the_server_or_a_good_call(
    stack: StackFactory, raw_stream: RawStreamFactory
) -> None:
    loop = asyncio.get_running_loop()
    outcomes: list[tuple[int | None, str]] = []
    sid_for_frames = "MZ" + "f" * 32

    @given(st.lists(_hostile_frames(sid_for_frames), min_size=1, max_size=30))
    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    def fuzz(frames: list[str | bytes]) -> None:
        # Hypothesis drives from a worker thread; the sockets live on the test's loop.
        future = asyncio.run_coroutine_threadsafe(_fuzz_one(frames), loop)
        code, sid = future.result(timeout=60)
        outcomes.append((code, sid))
        # Asserted here too, so Hypothesis shrinks a failure to its smallest frame list.
        assert code in (1000, 1007), (code, frames)

    async def _fuzz_one(frames: list[str | bytes]) -> tuple[int | None, str]:
        async with raw_stream(s) as raw:
            # Frames name our stream: rebuild them with this stream's sid.
            fixed = [
                f.replace(sid_for_frames, raw.stream_sid) if isinstance(f, str) else f
                for f in frames
            ]
            await raw.ws.send(raw.start())
            for frame in fixed:
                await raw.ws.send(frame)
            with contextlib.suppress(Exception):
                await raw.ws.send(inbound_media_message(raw.stream_sid, 50, 50, 1000, GOOD_FRAME))
                await raw.ws.send(stop_message(raw.stream_sid, 51, ACCOUNT, raw.call_sid))
            return await raw.close_code(), raw.call_sid

    with capture_logs() as logs:
        async with stack({"audio": {"speed": 0}}, greeting="") as s:
            good = asyncio.create_task(place_call(s, listen_seconds=2.0))
            await asyncio.to_thread(fuzz)
            report = await good
            good_record = await wait_for_record(s, report.call_sid)
            records = [await wait_for_record(s, sid) for _, sid in outcomes]
            async with httpx.AsyncClient(trust_env=False) as client:
                health = await client.get(s.base_url + "/healthz")
            assert s.services.active_calls == {}
    # Each hostile stream was closed by the server: normally after its stop, or 1007 for
    # a flood of bad frames. Never 1011 (a server error), never left hanging.
    assert len(outcomes) >= 10  # Hypothesis ran its examples (a subset check passes on none)
    assert {code for code, _ in outcomes} <= {1000, 1007}
    assert len(records) == len(outcomes)
    assert all(r["recording"]["status"] == "complete" for r in records)
    assert not [e for e in logs if e["event"] in ("bridge.failed", "recording.failed")]
    # The good call, concurrent with all of it, went as it always does.
    assert report.error is None and report.ended_by == "caller_hangup"
    # One utterance, answered (a bare all() would also pass on no utterance at all).
    assert len(report.response_latencies_ms) == 1
    assert all(latency is not None for latency in report.response_latencies_ms)
    assert good_record["end_reason"] == "caller_hangup"
    assert health.status_code == 200


# --- named hostile cases on the real server, next to a good call ------------------------


async def test_named_hostile_streams_each_get_a_clear_close_or_rejection(
    stack: StackFactory, raw_stream: RawStreamFactory
) -> None:
    async def oversized_1mb(r: RawStream) -> None:
        # Within the server's 1 MiB WebSocket limit, over the 64 KiB message limit:
        # rejected as a bad frame; the call goes on to its stop.
        await r.ws.send(r.start())
        await r.ws.send("x" * ONE_MB)
        huge = inbound_media_message(r.stream_sid, 2, 1, 0, bytes(ONE_MB * 3 // 4 - 200))
        assert MAX_MESSAGE_BYTES < len(huge) <= ONE_MB
        await r.ws.send(huge)
        await r.ws.send(stop_message(r.stream_sid, 3, ACCOUNT, r.call_sid))

    async def over_the_socket_limit(r: RawStream) -> None:
        await r.ws.send(r.start())
        await eventually(lambda: r.call_sid in s.services.active_calls)  # mid-call
        await r.ws.send(b"\x00" * (2 << 20))  # 2 MiB: refused by the WebSocket layer

    async def binary_garbage(r: RawStream) -> None:
        await r.ws.send(r.start())
        for i in range(10):
            await r.ws.send(bytes(range(i, 256)))
        await r.ws.send(stop_message(r.stream_sid, 3, ACCOUNT, r.call_sid))

    async def media_before_start(r: RawStream) -> None:
        for i in range(5):
            await r.ws.send(inbound_media_message(r.stream_sid, i + 1, i + 1, 20 * i, GOOD_FRAME))
        await r.ws.send(r.start(sequence_number=6))
        await r.ws.send(stop_message(r.stream_sid, 7, ACCOUNT, r.call_sid))

    async def second_start(r: RawStream) -> None:
        await r.ws.send(r.start())
        await r.ws.send(start_message(stream_sid(), call_sid(), ACCOUNT, {}))
        await r.ws.send(r.start())  # even the same start again
        await r.ws.send(stop_message(r.stream_sid, 4, ACCOUNT, r.call_sid))

    async def frames_after_stop(r: RawStream) -> None:
        await r.ws.send(r.start())
        await r.ws.send(stop_message(r.stream_sid, 2, ACCOUNT, r.call_sid))
        with contextlib.suppress(Exception):
            for i in range(20):
                await r.ws.send(inbound_media_message(r.stream_sid, i + 3, i, 20 * i, GOOD_FRAME))
            await r.ws.send(r.start())

    async def flood(r: RawStream) -> None:
        await r.ws.send(r.start())
        with contextlib.suppress(Exception):
            for _ in range(40):
                await r.ws.send("{not json")

    cases: dict[str, tuple[Callable[[RawStream], Any], set[int | None]]] = {
        "oversized_1mb": (oversized_1mb, {1000}),
        "over_the_socket_limit": (over_the_socket_limit, {1009}),
        "binary_garbage": (binary_garbage, {1000}),
        "media_before_start": (media_before_start, {1000}),
        "second_start": (second_start, {1000}),
        "frames_after_stop": (frames_after_stop, {1000}),
        "flood": (flood, {1007}),
    }

    async def run(case: Callable[[RawStream], Any]) -> tuple[int | None, str]:
        async with raw_stream(s) as r:
            await case(r)
            return await r.close_code(seconds=20), r.call_sid

    with capture_logs() as logs:
        async with stack({"audio": {"speed": 0}}, greeting="") as s:
            good = asyncio.create_task(place_call(s, listen_seconds=2.0))
            results = await asyncio.gather(*(run(case) for case, _ in cases.values()))
            report = await good
            good_record = await wait_for_record(s, report.call_sid)
            calls = {
                name: await wait_for_record(s, sid)
                for name, (_, sid) in zip(cases, results, strict=True)
            }
            async with httpx.AsyncClient(trust_env=False) as client:
                assert (await client.get(s.base_url + "/healthz")).status_code == 200
    codes = {name: code for name, (code, _) in zip(cases, results, strict=True)}
    assert codes == {name: next(iter(expected)) for name, (_, expected) in cases.items()}
    # Every started call, however hostile, was wound down and recorded.
    assert {name: r["end_reason"] for name, r in calls.items()} == {
        "oversized_1mb": "caller_hangup",
        "over_the_socket_limit": "caller_hangup",
        "binary_garbage": "caller_hangup",
        "media_before_start": "caller_hangup",
        "second_start": "caller_hangup",
        "frames_after_stop": "caller_hangup",
        "flood": "caller_hangup",
    }
    events = [e["event"] for e in logs]
    assert "twilio.bad_frame" in events and "twilio.bad_frame_flood" in events
    assert "twilio.before_start" in events and "twilio.unexpected" in events
    assert "bridge.failed" not in events
    assert report.error is None and good_record["end_reason"] == "caller_hangup"
    assert len(report.response_latencies_ms) == 1  # one utterance, answered
    assert all(latency is not None for latency in report.response_latencies_ms)


async def test_unsigned_and_wrongly_signed_upgrades_are_closed_1008(stack: StackFactory) -> None:
    async with stack({}, greeting="") as s:
        url = s.base_url.replace("http", "ws") + "/twilio/media"
        for headers in ({}, upgrade_headers(s, url, token="not-the-token")):
            async with connect(url, additional_headers=headers, proxy=None) as ws:
                with contextlib.suppress(Exception):  # closed before or after this send
                    await ws.send(connected_message())
                    async for _ in ws:
                        pass
                assert ws.close_code == 1008
        assert s.fake is not None and s.fake.sessions == []  # no Live session was opened


@pytest.mark.slow
async def test_a_stream_that_never_starts_is_closed_1008_after_the_start_timeout(
    stack: StackFactory, raw_stream: RawStreamFactory
) -> None:
    with capture_logs() as logs:
        async with stack({}, greeting="") as s, raw_stream(s) as r:
            with contextlib.suppress(Exception):
                for _ in range(10):  # fewer than a flood: each is logged and skipped
                    await r.ws.send("{not json either")
                await r.ws.send(inbound_media_message(r.stream_sid, 1, 1, 0, GOOD_FRAME))
            assert await r.close_code(seconds=30) == 1008
            assert s.services.active_calls == {}
            assert not (s.settings.recordings_dir / f"{r.call_sid}.json").exists()
    events = [e["event"] for e in logs]
    assert events.count("twilio.bad_frame") == 10 and "twilio.before_start" in events
