"""Two instances behind real nginx, sharing one Redis and one (fake) Gemini Live.

nginx runs with the production includes (deploy/nginx/) and round-robins requests, so
Twilio's webhook goes to one instance and the media stream that follows to the other
(the access log says which). The instances know their public URL only from nginx's
forwarded headers (TRUST_PROXY_HEADERS=true, no PUBLIC_BASE_URL), so the signature checks
prove those headers are right. The call must work with nothing shared but the
configuration and Redis: the stream's instance accepts the token the webhook's issued,
tool state is the same from both, the unused pre-warmed Live session is closed after
PREWARM_TIMEOUT, and a replay of the stream is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
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
from tests.support.nginx import Nginx, Routed, StartNginx, Upstream

pytestmark = pytest.mark.redis

AUTH_TOKEN = "shared-auth-token-" + secrets.token_hex(8)
PREWARM_TIMEOUT = 2.0


@contextlib.asynccontextmanager
async def instance(
    name: str, fake: FakeLiveServer, redis_url: str, tmp_path: Path
) -> AsyncIterator[tuple[str, Services]]:
    settings = load_settings(
        env_file=None,
        gemini_api_key="fake-live-key",
        gemini_base_url=fake.base_url,
        ssl_cert_file=fake.ca_pem_path,
        twilio_auth_token=AUTH_TOKEN,
        trust_proxy_headers=True,  # the public URL comes from nginx's X-Forwarded-*
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


async def test_webhook_on_one_instance_stream_on_another(
    redis_url: str, tmp_path: Path, start_nginx: StartNginx
) -> None:
    fake = FakeLiveServer(demo_scenario())
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(fake)
        url_a, a = await stack.enter_async_context(instance("a", fake, redis_url, tmp_path))
        url_b, b = await stack.enter_async_context(instance("b", fake, redis_url, tmp_path))
        by_port = {_port(url_a): ("a", a, url_a), _port(url_b): ("b", b, url_b)}
        lb = await start_nginx([Upstream(_port(url_a)), Upstream(_port(url_b))])
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

        # The call went through: webhook on one instance, stream on the other (nginx's
        # access log says which), the agent hung up.
        assert report.error is None, report.to_dict()
        assert report.ended_by == "server_closed" and report.first_audio_ms is not None
        assert report.stream_url == websocket_url(lb.url) + "/twilio/media"
        routed = await _wait_for_routes(lb, 2)
        [webhook] = [r for r in routed if r.method == "POST" and r.path == "/twilio/voice"]
        [stream] = [r for r in routed if r.path == "/twilio/media"]
        assert (webhook.status, stream.status) == (200, 101)
        assert webhook.port != stream.port
        name_a, a, url_a = by_port[webhook.port]  # from here on: A took the webhook
        name_b, b, url_b = by_port[stream.port]  # and B the stream
        record_b = await _wait_for_json(tmp_path / name_b / f"{call_sid}.json")
        assert record_b["end_reason"] == "agent_hangup"
        assert not (tmp_path / name_a / f"{call_sid}.json").exists()

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

        # Replaying the captured stream (same signed upgrade, same token): refused by
        # whichever instance nginx picks.
        parameters = dict(report.custom_parameters)
        assert parameters[TOKEN_PARAM]
        refused = await replay_stream(lb.url, report, parameters)
        assert refused == (1008, "stream token already used")
        assert len(fake.sessions) == 2  # refused before any Live session was opened

    await _forget(redis_url, call_sid)


def _port(url: str) -> int:
    return httpx.URL(url).port or 0


async def _wait_for_routes(lb: Nginx, count: int) -> list[Routed]:
    """nginx logs a WebSocket when it closes: wait until `count` requests are logged."""

    async def logged() -> bool:
        return len(await asyncio.to_thread(lb.routed)) >= count

    await eventually(logged, 20)
    return await asyncio.to_thread(lb.routed)


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
