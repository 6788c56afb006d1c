"""Two instances behind a load balancer, sharing one Redis and one (fake) Gemini Live.

A stand-in load balancer (a TCP proxy choosing a backend per connection) sends Twilio's
webhook to instance A and the media stream that follows to instance B: both run with
PUBLIC_BASE_URL set to the balancer's address, as in production. The call must work
with nothing shared but the configuration and Redis: B accepts the stream token that A
issued, the tool state written on B is visible from A, A's pre-warmed Live session is
closed after PREWARM_TIMEOUT, and a replay of the stream is refused by A.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.assets import load_clip_8k
from app.dev.demo import demo_scenario
from app.dev.fakes.live import FakeLiveServer
from app.dev.fakes.twilio_caller import CallOptions, CallReport, simulate_call
from app.dev.local_server import free_port, serving
from app.server import build_services, create_app
from app.services import Services
from app.settings import load_settings
from app.twilio.stream_tokens import TOKEN_PARAM
from telephony.messages import connected_message, start_message
from telephony.signatures import SIGNATURE_HEADER, compute_signature, websocket_url
from tests.ops.process import eventually

pytestmark = pytest.mark.redis

AUTH_TOKEN = "shared-auth-token-" + secrets.token_hex(8)
PREWARM_TIMEOUT = 2.0


class ConnectionRouter:
    """A load balancer in miniature: each TCP connection goes to the port `route` picks
    from the request line (e.g. b"GET /twilio/media HTTP/1.1"). Bytes pass untouched."""

    def __init__(self, route: Callable[[bytes], int]) -> None:
        self._route = route
        self._server: asyncio.Server | None = None
        self.routed: list[tuple[str, int]] = []
        self.port = 0

    async def __aenter__(self) -> ConnectionRouter:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n")
            port = self._route(head)
            self.routed.append((head.decode("latin-1").strip(), port))
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        except (OSError, asyncio.IncompleteReadError):
            writer.close()
            return
        up_writer.write(head)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except OSError:
        pass
    finally:
        sink.close()


@contextlib.asynccontextmanager
async def instance(
    name: str, fake: FakeLiveServer, redis_url: str, public: str, tmp_path: Path
) -> AsyncIterator[tuple[str, Services]]:
    settings = load_settings(
        env_file=None,
        gemini_api_key="fake-live-key",
        gemini_base_url=fake.base_url,
        ssl_cert_file=fake.ca_pem_path,
        twilio_auth_token=AUTH_TOKEN,
        public_base_url=public,
        redis_url=redis_url,
        tools="end_call,appointments",
        prewarm_timeout=PREWARM_TIMEOUT,
        recordings_dir=tmp_path / name,
    )
    services = build_services(settings)
    async with serving(create_app(services), free_port()) as url:
        yield url, services


async def replay_stream(
    url: str, report: CallReport, parameters: dict[str, str]
) -> tuple[int | None, str | None]:
    """Replay the call's captured upgrade and `start` straight to an instance: how it closed."""
    public_stream_url = report.stream_url
    assert public_stream_url is not None
    signature = compute_signature(AUTH_TOKEN, public_stream_url, {})
    async with connect(
        websocket_url(url) + "/twilio/media",
        additional_headers={SIGNATURE_HEADER: signature},
        proxy=None,
    ) as ws:
        await ws.send(connected_message())
        stream_sid = "MZ" + secrets.token_hex(16)
        account = "AC" + "0" * 32
        await ws.send(start_message(stream_sid, report.call_sid, account, parameters, 1))
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(10):
                async for _ in ws:
                    pass
        return ws.close_code, ws.close_reason


async def test_webhook_on_one_instance_stream_on_another(redis_url: str, tmp_path: Path) -> None:
    ports: dict[str, int] = {}

    def route(request_line: bytes) -> int:
        return ports["b"] if request_line.startswith(b"GET /twilio/media") else ports["a"]

    fake = FakeLiveServer(demo_scenario())
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(fake)
        lb = await stack.enter_async_context(ConnectionRouter(route))
        url_a, a = await stack.enter_async_context(instance("a", fake, redis_url, lb.url, tmp_path))
        url_b, b = await stack.enter_async_context(instance("b", fake, redis_url, lb.url, tmp_path))
        ports |= {"a": httpx.URL(url_a).port or 0, "b": httpx.URL(url_b).port or 0}
        async with httpx.AsyncClient(trust_env=False) as client:
            for url in (url_a, url_b):
                assert (await client.get(url + "/readyz")).json()["redis"] == "ok"

        report = await simulate_call(
            CallOptions(
                base_url=lb.url,
                auth_token=AUTH_TOKEN,
                audio=load_clip_8k("caller_booking"),
                follow_up=load_clip_8k("caller_goodbye"),
                wait_for_greeting_seconds=10.0,
                listen_seconds=6.0,
                max_seconds=90.0,
            )
        )
        call_sid = report.call_sid

        # The call went through: webhook on A, stream on B, the agent hung up.
        assert report.error is None, report.to_dict()
        assert report.ended_by == "server_closed" and report.first_audio_ms is not None
        assert [port for line, port in lb.routed if line.startswith("POST")] == [ports["a"]]
        assert [port for line, port in lb.routed if "/twilio/media" in line] == [ports["b"]]
        record_b = await _wait_for_json(tmp_path / "b" / f"{call_sid}.json")
        assert record_b["end_reason"] == "agent_hangup"
        assert not (tmp_path / "a" / f"{call_sid}.json").exists()

        # The booking made on B (ToolContext -> Redis) is the same from either instance.
        [booked] = [t for t in record_b["tool_calls"] if t["name"] == "book_appointment"]
        assert booked["ok"], booked
        state_a = await a.state_store.load(call_sid)
        state_b = await b.state_store.load(call_sid)
        assert state_a == state_b
        assert state_a["call_sid"] == call_sid
        [appointment] = state_a["appointments"]["items"].values()
        assert appointment == booked["result"]["result"] | {"id": appointment["id"]}
        assert all(check.passed for s in fake.sessions for check in s.tool_checks)

        # Two Live sessions: A's pre-warmed one (never used), B's for the call. A's is
        # closed by its own timeout.
        assert len(fake.sessions) == 2
        [used] = [s for s in fake.sessions if s.audio]  # only B's session heard the caller
        [prewarmed] = [s for s in fake.sessions if not s.audio]
        async with asyncio.timeout(PREWARM_TIMEOUT + 20):
            await prewarmed.wait_closed()
        assert prewarmed.ended == "client_closed"
        assert used.ended == "client_closed"
        assert len(a.prewarm) == 0 and len(b.prewarm) == 0

        # Replaying the captured stream (same signed upgrade, same token) on A: refused.
        parameters = dict(report.custom_parameters)
        assert parameters[TOKEN_PARAM]
        assert await replay_stream(url_a, report, parameters) == (1008, "stream token already used")
        assert len(fake.sessions) == 2  # refused before any Live session was opened

    await _forget(redis_url, call_sid)


async def _wait_for_json(path: Path, seconds: float = 20.0) -> dict[str, Any]:
    async def written() -> bool:
        return await asyncio.to_thread(path.is_file)

    await eventually(written, seconds)
    data: dict[str, Any] = json.loads(await asyncio.to_thread(path.read_text, "utf-8"))
    return data


async def _forget(redis_url: str, call_sid: str) -> None:
    client = aioredis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"voicebot:*{call_sid}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
