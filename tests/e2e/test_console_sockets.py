"""The console over real sockets, without a browser: access rules, web-call sockets
(bad frames, floods, a lost socket, a replayed token), listen-in and the event streams.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app.dev.fakes.twilio_caller import simulate_call
from app.dev.local_stack import LocalStack
from telephony.mulaw import pcm16_to_ulaw
from tests.e2e.conftest import StackFactory, call_options, call_record

ADMIN = "console-socket-test-token"
SCENARIO = {"greeting": {"clip": "tone:440:0.4", "text": "Hi."}}


@contextlib.asynccontextmanager
async def logged_in(s: LocalStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=s.base_url, headers={"Origin": s.base_url}) as client:
        response = await client.post("/console/login", data={"token": ADMIN})
        assert response.status_code == 200, response.text
        yield client


def ws_url(s: LocalStack, path: str) -> str:
    return s.base_url.replace("http://", "ws://") + path


async def connect(
    s: LocalStack, client: httpx.AsyncClient | None, path: str, origin: str | None = None
) -> Any:
    headers = {"Origin": origin or s.base_url}
    if client is not None:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    return await websockets.connect(ws_url(s, path), additional_headers=headers)


async def start_web_call(s: LocalStack, client: httpx.AsyncClient) -> tuple[Any, dict[str, Any]]:
    created = (await client.post("/console/api/webcall", json={"from": "+15550002222"})).json()
    ws = await connect(s, client, created["socket"])
    await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
    await ws.send(json.dumps(start_message(created)))
    return ws, created


def start_message(created: dict[str, Any]) -> dict[str, Any]:
    return {
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": created["stream_sid"],
        "start": {
            "accountSid": created["account_sid"],
            "streamSid": created["stream_sid"],
            "callSid": created["call_sid"],
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": created["parameters"],
        },
    }


def media(created: dict[str, Any], n: int, amplitude: int = 0) -> str:
    pcm = np.full(160, amplitude, dtype=np.int16)
    payload = base64.b64encode(pcm16_to_ulaw(pcm)).decode()
    chunk = {"track": "inbound", "chunk": str(n), "timestamp": str(20 * n), "payload": payload}
    sid = created["stream_sid"]
    return json.dumps(
        {"event": "media", "sequenceNumber": str(n + 1), "streamSid": sid, "media": chunk}
    )


async def until_active(client: httpx.AsyncClient, call_sid: str) -> None:
    """The call is in progress on the server (its stream started, its bridge runs)."""
    for _ in range(100):
        calls = (await client.get("/console/api/active")).json()["calls"]
        if call_sid in {call["call_sid"] for call in calls}:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{call_sid} never became active")


@pytest.fixture
async def console_stack(stack: StackFactory) -> LocalStack:
    return await stack(SCENARIO, admin_token=ADMIN)


async def test_without_admin_token_there_is_no_console(stack: StackFactory) -> None:
    s = await stack(SCENARIO)
    async with httpx.AsyncClient(base_url=s.base_url) as client:
        for path in (
            "/console/",
            "/console/login",
            "/console/static/login.js",
            "/console/api/calls",
        ):
            assert (await client.get(path)).status_code == 404, path
    with pytest.raises(InvalidStatus):
        await connect(s, None, "/console/ws/call")


async def test_nothing_answers_without_a_session(console_stack: LocalStack) -> None:
    s = console_stack
    async with httpx.AsyncClient(base_url=s.base_url, headers={"Origin": s.base_url}) as client:
        page = await client.get("/console/talk")
        assert page.status_code == 303 and "/console/login" in page.headers["location"]
        for path in (
            "/console/api/calls",
            "/console/api/active",
            "/console/api/events",
            f"/console/api/calls/CA{'0' * 32}/recording",
            "/console/static/talk.js",
            "/console/static/audio/capture-worklet.js",
        ):
            assert (await client.get(path)).status_code == 401, path
        assert (await client.post("/console/api/webcall", json={})).status_code == 401
        assert (await client.get("/console/static/login.js")).status_code == 200
        login = await client.get("/console/login")
        assert "frame-ancestors 'none'" in login.headers["content-security-policy"]
        assert (await client.post("/console/login", data={"token": "nope"})).status_code == 401
    for path in ("/console/ws/call", f"/console/ws/listen/CA{'0' * 32}"):
        with pytest.raises(InvalidStatus) as refused:
            await connect(s, None, path)
        assert refused.value.response.status_code == 403


async def test_session_cookie_and_cross_site_requests(console_stack: LocalStack) -> None:
    s = console_stack
    async with httpx.AsyncClient(base_url=s.base_url) as plain:
        cross = await plain.post(
            "/console/login", data={"token": ADMIN}, headers={"Origin": "https://evil.example"}
        )
        assert cross.status_code == 403
    async with logged_in(s) as client:
        cookie = (await client.post("/console/login", data={"token": ADMIN})).headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
        assert ADMIN not in cookie
        assert (await client.get("/console/api/calls")).status_code == 200
        forged = await client.post(
            "/console/api/webcall", json={}, headers={"Origin": "http://127.0.0.1:1"}
        )
        assert forged.status_code == 403
        # Cross-site WebSocket hijacking: the cookie is there, the Origin is not ours.
        for origin in ("https://evil.example", "http://127.0.0.1:1", "null"):
            with pytest.raises(InvalidStatus):
                await connect(s, client, "/console/ws/call", origin=origin)


async def test_bad_web_call_requests_are_refused(console_stack: LocalStack) -> None:
    async with logged_in(console_stack) as client:
        for body in (
            {"parameters": {"call_sid": "CA1"}},
            {"parameters": {"stream_token": "x"}},
            {"parameters": {"bad name": "x"}},
            {"parameters": {"k": "v" * 600}},
            {"parameters": {"k": 5}},
            {"from": "1" * 65},
            ["not", "an", "object"],
        ):
            response = await client.post("/console/api/webcall", json=body)
            assert response.status_code == 400, body


async def test_bad_frames_are_skipped_and_a_flood_closes_the_call(
    console_stack: LocalStack,
) -> None:
    s = console_stack
    async with logged_in(s) as client:
        ws, created = await start_web_call(s, client)
        for n in range(1, 6):
            await ws.send(media(created, n))
        await ws.send("{not json")
        await ws.send(json.dumps({"event": "media", "streamSid": created["stream_sid"]}))
        await ws.send(media(created, 6))
        await asyncio.sleep(0.3)
        assert created["call_sid"] in {
            c["call_sid"] for c in (await client.get("/console/api/active")).json()["calls"]
        }
        for _ in range(40):
            await ws.send("garbage")
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
        record = await call_record(s, created["call_sid"])
        assert record["direction"] == "web" and record["from"] == "+15550002222"
        assert record["agent"] == created["agent"] and created["parameters"]["direction"] == "web"


async def test_a_lost_socket_ends_as_a_caller_hangup_and_is_saved(
    console_stack: LocalStack,
) -> None:
    s = console_stack
    async with logged_in(s) as client:
        ws, created = await start_web_call(s, client)
        for n in range(1, 26):
            await ws.send(media(created, n, amplitude=2000))
        await asyncio.sleep(0.2)
        ws.transport.abort()  # no close frame, no stop: the browser tab died
        record = await call_record(s, created["call_sid"])
        assert record["end_reason"] == "caller_hangup" and record["direction"] == "web"
        assert record["recording"]["status"] == "complete"
        # The token was single-use: the same start on a new socket is refused.
        again = await connect(s, client, created["socket"])
        await again.send(json.dumps(start_message(created)))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(again.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_events_and_listen_in_follow_a_call(console_stack: LocalStack) -> None:
    s = console_stack
    async with logged_in(s) as client:
        ws, created = await start_web_call(s, client)
        sid = created["call_sid"]
        await until_active(client, sid)
        ears = await connect(s, client, f"/console/ws/listen/{sid}")
        async with client.stream("GET", f"/console/api/calls/{sid}/events") as stream:
            lines = stream.aiter_lines()
            first = [await anext(lines) for _ in range(2)]
            assert first[0] == "event: call.started"
            assert json.loads(first[1].removeprefix("data: "))["call"]["direction"] == "web"
            for n in range(1, 51):  # one second of (quiet) caller audio
                await ws.send(media(created, n))
            sides = set()
            while sides != {0, 1}:
                frame = await asyncio.wait_for(ears.recv(), 10)
                side, _at = struct.unpack_from("<BI", frame)
                assert side in (0, 1, 2) and (side == 2 or len(frame) > 5)
                sides.add(side)
            seen = []
            async for line in lines:
                seen.append(line)
                if line == "event: transcript":
                    await ws.close()
                if line == "event: call.ended":
                    break
            assert "event: transcript" in seen
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(ears.recv(), 10)
    assert (await call_record(s, sid))["direction"] == "web"


async def test_a_phone_call_is_watched_like_a_web_call(console_stack: LocalStack) -> None:
    """A Twilio call (the simulated caller) shows up in the active list and its events."""
    s = console_stack
    options = call_options(s, np.zeros(8000, dtype=np.int16), listen_seconds=1.5)
    async with logged_in(s) as client, client.stream("GET", "/console/api/events") as stream:
        lines = stream.aiter_lines()
        assert await anext(lines) == "event: snapshot"
        assert json.loads((await anext(lines)).removeprefix("data: "))["calls"] == []
        call = asyncio.create_task(simulate_call(options))
        seen: list[dict[str, Any]] = []
        async for line in lines:
            if line.startswith("data: "):
                seen.append(json.loads(line.removeprefix("data: ")))
                if seen[-1]["type"] == "call.ended":
                    break
        report = await call
    started = seen[0]
    assert started["type"] == "call.started" and started["call"]["call_sid"] == report.call_sid
    assert started["call"]["direction"] == "inbound"
    assert started["call"]["from"] == options.from_number
    assert seen[-1]["call_sid"] == report.call_sid
    record = await call_record(s, report.call_sid)
    assert record["direction"] == "inbound"
    assert started["call"]["agent"] == record["agent"] and record["agent"]
