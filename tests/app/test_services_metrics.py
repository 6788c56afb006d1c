"""The metrics docs/operations.md tells operators to alert on move when their event happens
in the service as assembled by `build_services` (not only when called by hand)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from app.call.bridge import CallBridge
from app.call.info import BridgeConfig, CallInfo, EndReason
from app.live.events import ResumptionUpdate
from app.metrics import Metrics
from app.server import build_services
from app.settings import Settings, load_settings
from tests.app.call.bridge_fakes import FakeTwilioSocket, ScriptedConnector

# Nothing listens on port 1: every Redis call fails at once (connection refused).
DEAD_REDIS = "redis://127.0.0.1:1/0"


def sample(metrics: Metrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    return 0.0 if value is None else value


def settings(tmp_path: Path, **overrides: object) -> Settings:
    return load_settings(
        env_file=None,
        twilio_auth_token="t" * 32,
        public_base_url="http://127.0.0.1:9",
        recordings_dir=tmp_path,
        **overrides,
    )


async def test_every_failed_redis_call_counts_as_a_redis_error(tmp_path: Path) -> None:
    services = build_services(
        settings(tmp_path, redis_url=DEAD_REDIS), connector=ScriptedConnector()
    )
    try:
        assert sample(services.metrics, "voicebot_redis_errors_total") == 0
        # The state store: a read falls back to this process's copy, and counts.
        assert await services.state_store.load("CA" + "1" * 32) == {}
        assert sample(services.metrics, "voicebot_redis_errors_total") == 1
        # The stream-token ledger: the token is still redeemed (in process), and counts.
        token = services.stream_tokens.issue("CA" + "2" * 32)
        await services.stream_tokens.redeem("CA" + "2" * 32, token)
        assert sample(services.metrics, "voicebot_redis_errors_total") == 2
        # A readiness probe that cannot reach Redis is a Redis error too.
        assert not await services.state_store.ping()
        assert sample(services.metrics, "voicebot_redis_errors_total") == 3
    finally:
        await services.state_store.aclose()
        assert services.redis is not None
        await services.redis.aclose()


async def test_live_setup_is_timed_for_prewarmed_sessions(tmp_path: Path) -> None:
    connector = ScriptedConnector()
    services = build_services(settings(tmp_path), connector=connector)
    services.prewarm.start("CA" + "3" * 32)
    task = services.prewarm.take("CA" + "3" * 32)
    assert task is not None
    await task
    assert sample(services.metrics, "voicebot_live_setup_seconds_count") == 1


async def test_live_setup_is_timed_on_connect_and_on_every_reconnect() -> None:
    connector, sock, metrics = ScriptedConnector(), FakeTwilioSocket(), Metrics()
    bridge = CallBridge(
        CallInfo(call_sid="CA" + "0" * 32, stream_sid=sock.stream_sid),
        sock,
        connector,
        config=BridgeConfig(),
        metrics=metrics,
    )
    run = asyncio.create_task(bridge.run(sock.messages()))
    await connector.connected.wait()
    await asyncio.sleep(0.05)
    assert sample(metrics, "voicebot_live_setup_seconds_count") == 1
    connector.sessions[0].emit(ResumptionUpdate("h-1", True))
    await asyncio.sleep(0.05)
    connector.sessions[0].drop()
    for _ in range(200):
        if len(connector.sessions) == 2 and bridge.stats.reconnects == 1:
            break
        await asyncio.sleep(0.01)
    assert bridge.stats.reconnects == 1
    assert sample(metrics, "voicebot_live_setup_seconds_count") == 2
    sock.hang_up()
    assert await asyncio.wait_for(run, 5) is EndReason.CALLER_HANGUP
