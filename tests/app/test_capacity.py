"""Capacity limits: per instance, across instances in a real Redis, and at the webhook."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from app.capacity import PENDING_S, Capacity, GlobalSlots
from app.dev.local_server import free_port, serving
from app.server import build_services, create_app
from app.settings import load_settings
from telephony.signatures import compute_signature
from telephony.twiml import parse_stream_twiml
from tests.app.call.bridge_fakes import ScriptedConnector
from tests.support.redis_server import RedisServer

TOKEN = "capacity-auth-token"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sid() -> str:
    return "CA" + uuid.uuid4().hex


async def test_instance_cap_counts_bridged_and_just_admitted_calls() -> None:
    clock = Clock()
    registry = CollectorRegistry()
    capacity = Capacity(max_calls=2, registry=registry, clock=clock)
    active: set[str] = set()
    first, second = sid(), sid()
    assert await capacity.admit(first, active) is None
    assert await capacity.admit(second, active) is None
    # Both admitted, neither stream started yet: the third is refused politely.
    refusal = await capacity.admit(sid(), active)
    assert refusal is not None and refusal.scope == "instance"
    assert "<Say>" in refusal.twiml and "busy" in refusal.twiml and "<Hangup" in refusal.twiml
    assert capacity.full(active)
    # The first call's stream started here: it counts once, not twice.
    active.add(first)
    assert capacity.in_use(active) == 2
    # The second call's stream went to another instance: its reservation lapses.
    clock.now += PENDING_S + 0.1
    assert capacity.in_use(active) == 1 and not capacity.full(active)
    assert await capacity.admit(sid(), active) is None
    assert registry.get_sample_value("voicebot_calls_refused_total", {"scope": "instance"}) == 1
    assert registry.get_sample_value("voicebot_call_capacity", {"scope": "instance"}) == 2


async def test_no_cap_admits_everything_and_overflow_dials() -> None:
    unlimited = Capacity()
    active = {sid() for _ in range(500)}
    assert await unlimited.admit(sid(), active) is None and not unlimited.full(active)
    overflow = Capacity(max_calls=1, overflow_number="+15550100")
    refusal = await overflow.admit(sid(), {sid()})
    assert refusal is not None
    assert "<Dial>+15550100</Dial>" in refusal.twiml and "<Say>" not in refusal.twiml


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.mark.redis
async def test_global_cap_across_instances_heals_when_one_dies(
    redis_client: aioredis.Redis,
) -> None:
    key = f"voicebot-test-{uuid.uuid4().hex[:12]}:capacity"
    try:
        registry = CollectorRegistry()
        a = Capacity(
            global_slots=GlobalSlots(redis_client, 2, key=key, entry_ttl=1.5), registry=registry
        )
        b = Capacity(global_slots=GlobalSlots(redis_client, 2, key=key, entry_ttl=1.5))
        on_a, on_b = sid(), sid()
        assert await a.admit(on_a, set()) is None
        assert await b.admit(on_b, set()) is None
        refused = await b.admit(sid(), set())
        assert refused is not None and refused.scope == "global"
        # A Twilio retry of an admitted webhook is the same call, not a new one.
        assert await a.admit(on_a, set()) is None
        # Both instances keep their calls alive past the entries' TTL with heartbeats...
        for _ in range(3):
            await a.heartbeat({on_a})
            await b.heartbeat({on_b})
            await asyncio.sleep(0.6)
        assert (await a.admit(sid(), {on_a})) is not None
        assert registry.get_sample_value("voicebot_global_active_calls") == 2
        # ...the call on A ends: its slot is given back at once.
        release = a.call_ended(on_a)
        assert release is not None
        await release
        freed = sid()
        assert await b.admit(freed, {on_b}) is None
        await a.heartbeat(set())  # and a heartbeat after it re-arms nothing
        # B dies (no more heartbeats): its two entries expire and the cap heals.
        assert await a.admit(sid(), set()) is not None
        await asyncio.sleep(1.7)
        assert await a.admit(sid(), set()) is None
    finally:
        await redis_client.delete(key)


async def test_global_cap_without_redis_admits_and_counts_the_error() -> None:
    dead = aioredis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    registry = CollectorRegistry()
    capacity = Capacity(global_slots=GlobalSlots(dead, 1), registry=registry)
    try:
        assert await capacity.admit(sid(), set()) is None
        assert registry.get_sample_value("voicebot_capacity_errors_total") == 1
        await capacity.heartbeat({sid()})  # logged, not raised
    finally:
        await dead.aclose()


def test_global_cap_needs_redis() -> None:
    from app.errors import ConfigError

    with pytest.raises(ConfigError, match="GLOBAL_MAX_ACTIVE_CALLS needs REDIS_URL"):
        load_settings(env_file=None, global_max_active_calls=5, redis_url="")


async def test_webhook_over_the_cap_speaks_busy_and_readyz_says_full(tmp_path: Path) -> None:
    port = free_port()
    settings = load_settings(
        env_file=None,
        twilio_auth_token=TOKEN,
        public_base_url=f"http://127.0.0.1:{port}",
        recordings_dir=tmp_path,
        greeting="",
        tools="end_call",
        max_active_calls=1,
    )
    services = build_services(settings, connector=ScriptedConnector())
    base = f"http://127.0.0.1:{port}"

    async def call() -> httpx.Response:
        form = {"CallSid": sid(), "AccountSid": "AC" + "0" * 32, "From": "+1555", "To": "+1556"}
        headers = {
            "content-type": "application/x-www-form-urlencoded",
            "x-twilio-signature": compute_signature(TOKEN, f"{base}/twilio/voice", form),
        }
        return await http.post(f"{base}/twilio/voice", content=urlencode(form), headers=headers)

    async with serving(create_app(services), port), httpx.AsyncClient(trust_env=False) as http:
        assert (await http.get(base + "/readyz")).json()["capacity"] == "ok"
        first = await call()
        assert parse_stream_twiml(first.text).url.endswith("/twilio/media")
        ready = await http.get(base + "/readyz")
        assert ready.status_code == 503 and ready.json()["capacity"] == "full"
        second = await call()
        assert second.status_code == 200 and second.headers["content-type"].startswith("text/xml")
        assert "all our agents are busy" in second.text and "<Stream" not in second.text
        metrics = (await http.get(base + "/metrics")).text
        assert 'voicebot_calls_refused_total{scope="instance"} 1.0' in metrics
        assert 'voicebot_call_capacity{scope="instance"} 1.0' in metrics
        assert len(services.prewarm) <= 1  # the refused call opened no Live session


def test_overflow_number_must_be_dialable() -> None:
    from app.errors import ConfigError

    with pytest.raises(ConfigError, match="OVERFLOW_NUMBER"):
        load_settings(env_file=None, overflow_number="555-0100")
    assert load_settings(env_file=None, overflow_number="+15550100300").overflow_number


@pytest.mark.redis
async def test_global_cap_at_the_webhooks_of_two_instances(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    """GLOBAL_MAX_ACTIVE_CALLS=1: a call admitted by A's webhook fills the line for B's."""
    urls, apps = [], []
    for name in ("a", "b"):
        port = free_port()
        settings = load_settings(
            env_file=None,
            twilio_auth_token=TOKEN,
            public_base_url=f"http://127.0.0.1:{port}",
            recordings_dir=tmp_path / name,
            greeting="",
            tools="end_call",
            redis_url=private_redis.url,
            global_max_active_calls=1,
            overflow_number="+15550100300",
        )
        services = build_services(settings, connector=ScriptedConnector())
        apps.append((create_app(services), port))
        urls.append(f"http://127.0.0.1:{port}")

    async def call(base: str) -> str:
        form = {"CallSid": sid(), "AccountSid": "AC" + "0" * 32, "From": "+1555", "To": "+1556"}
        headers = {
            "content-type": "application/x-www-form-urlencoded",
            "x-twilio-signature": compute_signature(TOKEN, f"{base}/twilio/voice", form),
        }
        async with httpx.AsyncClient(trust_env=False) as http:
            response = await http.post(f"{base}/twilio/voice", content=urlencode(form),
                                       headers=headers)  # fmt: skip
        assert response.status_code == 200
        return response.text

    async with serving(*apps[0]), serving(*apps[1]):
        assert "<Stream" in await call(urls[0])
        busy = await call(urls[1])
        assert "<Dial>+15550100300</Dial>" in busy and "<Stream" not in busy
        async with httpx.AsyncClient(trust_env=False) as http:
            metrics = (await http.get(urls[1] + "/metrics")).text
        assert 'voicebot_calls_refused_total{scope="global"} 1.0' in metrics
